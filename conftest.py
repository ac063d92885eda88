"""Names every docstring example may use, as a notebook would have them (doctests of ``sas_lens``).

Beside ``sl`` and ``torch``: a tiny random model (``model``, 3 blocks of width 16) with an SAE at
``blocks.1.hook_resid_post`` (``sae``), a wider one (``wide_sae``, 96 latents), an SAS vector and a dense vector on the first (``vec``, ``dense``), its
residuals on two texts (``acts``, ``tokens``), the two pairs they were built from (``pairs``), vectors of three demo behaviours (``sentiment``, ``caution``, ``formality``), a VADER judge (``vader_mean``), a composition grid of two of them (``grid``), the three with a judge each and their cross-talk (``vectors``, ``judges``, ``talk``), a medicine topic alignment on 24 reference prompts (``topic``), a small ``corpus/`` folder in the working directory (a temporary one, with the cache) and a few prompts (``texts``, ``prompts``), so that examples
which need a model run on this one; examples that need the embedded Gemma 3 270M, a corpus or a hub stay
marked ``+SKIP``.
"""

import pytest

CORPUS = "the movie was good and the story was fun . i love this film but the ending was bad . " * 200


@pytest.fixture(scope="session")
def _tiny_notebook():
    import torch

    from sas_lens.analysis.composition import ABJudge, composition_grid
    from sas_lens.analysis.interference import cross_talk
    from sas_lens.evaluation.judges import sentiment_scores
    from sas_lens.loading.pairs import load_pairs
    from sas_lens.loading.prompts import reference_prompts
    from sas_lens.steering.build_vectors import sas_vector
    from sas_lens.steering.vectors import DenseVector
    from sas_lens.topic.alignment import demo_topic_texts, topic_scores
    from tests.helpers import HOOK, random_sae, tiny_model

    model, sae = tiny_model(), random_sae("jumprelu")
    pairs = [
        {"prompt": "the movie was", "positive": " good and fun", "negative": " bad"},
        {"prompt": "i", "positive": " love this story", "negative": " hate this boring story"},
    ]
    pairs = load_pairs(pairs, name="tiny-sentiment")
    vec = sas_vector(model, sae, pairs, selection="contrast", top_k=6)
    dense = DenseVector(
        torch.randn(16, generator=torch.Generator().manual_seed(0)),
        {"name": "dense", "hook_name": HOOK, "layer": 1, "model_name": "tiny-random"},
    )
    tokens = model.to_tokens(["the movie was good", "i love this story"])
    _, cache = model.run_with_cache(tokens, names_filter=HOOK)
    prompts = ["the movie was", "i love the music"]
    behaviours = {
        name: sas_vector(model, sae, f"demo:{name}", top_k=6) for name in ("sentiment", "caution", "formality")
    }
    vader_mean = lambda texts: sum(sentiment_scores(texts)) / len(texts)  # noqa: E731
    grid = composition_grid(
        model,
        sae,
        {behaviours["sentiment"]: [-4, 0, 4], behaviours["caution"]: [0, 4]},
        {"sentiment": vader_mean, "caution": ABJudge(load_pairs("demo:caution"))},
        prompts,
        max_new_tokens=4,
        progress=False,
    )
    vectors = dict(behaviours)
    judges = {  # a judge per behaviour, each any texts -> float
        "sentiment": vader_mean,
        "caution": lambda texts: sum(len(t) for t in texts) / len(texts),
        "formality": lambda texts: sum(t.count(" the") for t in texts) / len(texts),
    }
    talk = cross_talk(model, vectors, judges, prompts, sae=sae, strengths=dict.fromkeys(vectors, 4.0), max_new_tokens=4)
    topic = topic_scores(model, sae, demo_topic_texts("medicine"), reference_prompts()[:24], name="medicine")
    return dict(
        model=model,
        sae=sae,
        wide_sae=random_sae("jumprelu", d_sae=96),
        vec=vec,
        dense=dense,
        tokens=tokens,
        acts=cache[HOOK].detach(),
        texts=prompts,
        pairs=pairs,
        **behaviours,
        vader_mean=vader_mean,
        grid=grid,
        vectors=vectors,
        judges=judges,
        talk=talk,
        topic=topic,
        prompts=prompts,
    )


@pytest.fixture(autouse=True)
def _doctest_names(doctest_namespace, request, tmp_path, monkeypatch):
    import torch

    import sas_lens as sl

    doctest_namespace.update(sl=sl, torch=torch)
    if isinstance(request.node, pytest.DoctestItem):
        doctest_namespace.update(request.getfixturevalue("_tiny_notebook"))
        monkeypatch.chdir(tmp_path)  # examples that save a file write it there, and read corpus/ from there
        monkeypatch.setenv("SAS_LENS_CACHE", str(tmp_path / "cache"))
        (tmp_path / "corpus").mkdir()
        (tmp_path / "corpus" / "a.txt").write_text(CORPUS, encoding="utf-8")
