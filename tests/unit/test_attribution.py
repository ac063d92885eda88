"""top_latents and trace_latents on the tiny model: order, logit lens, contexts, refusals."""

import pytest
import torch

from sas_lens.analysis.attribution import logit_lens, top_latents, trace_latents
from sas_lens.analysis.latent_index import build_latent_index
from sas_lens.errors import IncompatibleSAEError
from sas_lens.loading.saes import sae_fingerprint
from sas_lens.steering.vectors import SASVector
from tests.helpers import HOOK, WORDS, random_sae


def vector_on(sae, entries):
    indices = torch.tensor(sorted(entries), dtype=torch.long)
    values = torch.tensor([entries[i] for i in sorted(entries)], dtype=torch.float32)
    return SASVector(
        indices,
        values,
        sae.cfg.d_sae,
        {"name": "v", "hook_name": HOOK, "layer": 1, "sae_fingerprint": sae_fingerprint(sae)},
    )


def test_top_latents_are_ordered_by_magnitude_with_the_logit_lens(model):
    sae = random_sae("jumprelu")
    table = top_latents(vector_on(sae, {3: 0.5, 10: -2.0, 20: 1.0}), sae, model, k=2, n_tokens=3)
    assert table["latent"].tolist() == [10, 20] and table["sign"].tolist() == ["−", "+"]
    direction = sae.W_dec[10].detach()
    logits = (direction - direction.mean()) @ model.W_U.detach()  # the tiny model's LayerNorm centres; its weight is 1
    expected_up = model.tokenizer.convert_ids_to_tokens(logits.topk(3).indices.tolist())
    expected_down = model.tokenizer.convert_ids_to_tokens((-logits).topk(3).indices.tolist())
    assert table.loc[0, "promotes"] == expected_up and table.loc[0, "suppresses"] == expected_down
    assert "neuronpedia" not in table and "contexts" not in table


def test_top_latents_with_an_index_and_a_neuronpedia_id(model, tmp_path):
    sae = random_sae("jumprelu")
    sae.cfg.metadata.neuronpedia_id = "gemma-2-2b/12-gemmascope-res-16k"
    corpus = tmp_path / "c.txt"
    corpus.write_text(" ".join(WORDS * 6))
    index = build_latent_index(model, sae, corpus, n_tokens=1000, context_size=8, n_top=3, batch_size=2, progress=False)
    latent = int(index.values[:, 0].argmax())
    table = top_latents(vector_on(sae, {latent: 1.0}), sae, model, index=index, n_contexts=2)
    assert table.loc[0, "neuronpedia"].endswith(f"/12-gemmascope-res-16k/{latent}")
    assert table.loc[0, "frequency"] == pytest.approx(float(index.fire_counts[latent]) / index.n_tokens)
    assert len(table.loc[0, "contexts"]) == 2 and "«" in table.loc[0, "contexts"][0]
    with pytest.raises(IncompatibleSAEError, match="another SAE"):
        other = random_sae("jumprelu", seed=9)
        top_latents(vector_on(other, {1: 1.0}), other, model, index=index)


def test_top_latents_refuses_a_vector_of_another_sae(model):
    sae, other = random_sae("jumprelu"), random_sae("jumprelu", seed=4)
    with pytest.raises(IncompatibleSAEError):
        top_latents(vector_on(other, {1: 1.0}), sae, model)


def test_logit_lens_of_no_latents_is_empty(model):
    assert logit_lens(random_sae("jumprelu"), model, []) == []


def test_trace_latents_matches_encoding_the_cached_residual(model):
    sae = random_sae("jumprelu")
    tokens, acts = trace_latents(model, sae, "the movie was great", [1, 5, 7])
    _, cache = model.run_with_cache(model.to_tokens("the movie was great"), names_filter=HOOK)
    expected = sae.encode(cache[HOOK][0, 1:])[:, [1, 5, 7]].detach()
    assert len(tokens) == acts.shape[0] == expected.shape[0]
    torch.testing.assert_close(acts, expected)


def test_logit_lens_applies_the_final_norm_weight(model):
    sae = random_sae("jumprelu")
    latent = 5
    weight = torch.ones(model.cfg.d_model)
    weight[3] = 300.0  # one dimension the norm amplifies, as Gemma 3 270M's final norm does (0.19 to 301)
    weight[7] = 0.2
    with torch.no_grad():
        model.ln_final.w.copy_(weight)
    direction = sae.W_dec[latent].detach()
    literal = ((direction - direction.mean()) * weight) @ model.W_U.detach()  # LayerNorm: centre, then weight
    unnormed = direction @ model.W_U.detach()
    assert literal.topk(3).indices.tolist() != unnormed.topk(3).indices.tolist()  # the fix is visible here
    decode = model.tokenizer.convert_ids_to_tokens
    promotes, suppresses = logit_lens(sae, model, [latent], n_tokens=3)[0]
    assert promotes == decode(literal.topk(3).indices.tolist())
    assert suppresses == decode((-literal).topk(3).indices.tolist())


def test_logit_lens_among_a_vocabulary_ranks_only_those_tokens(model, tmp_path):
    sae = random_sae("jumprelu")
    corpus = tmp_path / "c.txt"
    corpus.write_text(" ".join(["good great movie"] * 30 + ["bad"]))
    index = build_latent_index(model, sae, corpus, n_tokens=60, context_size=8, n_top=3, batch_size=2, progress=False)
    common = index.common_tokens(min_count=3)
    assert sorted(model.tokenizer.convert_ids_to_tokens(common.tolist())) == ["good", "great", "movie"]
    promotes, suppresses = logit_lens(sae, model, [2], n_tokens=5, vocabulary=common)[0]
    assert sorted(promotes) == ["good", "great", "movie"] and promotes == suppresses[::-1]
    direction = sae.W_dec[2].detach()
    logits = ((direction - direction.mean()) * model.ln_final.w.detach()) @ model.W_U.detach()
    assert promotes[0] == max(
        ["good", "great", "movie"], key=lambda t: logits[model.tokenizer.convert_tokens_to_ids(t)]
    )
    table = top_latents(vector_on(sae, {2: 1.0}), sae, model, index=index, n_tokens=2)
    assert set(table.loc[0, "promotes"]) <= {"good", "great", "movie"}
    assert (
        len(
            top_latents(vector_on(sae, {2: 1.0}), sae, model, index=index, min_token_count=None, n_tokens=8).loc[
                0, "promotes"
            ]
        )
        == 8
    )
    with pytest.raises(ValueError, match="min_count"):
        index.common_tokens(0)
