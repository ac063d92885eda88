"""Topic alignment: scores against hand computation, no NaN, amplify at 0 is the identity, swap equals a
literal reference of the original procedure."""

import math

import pytest
import torch

import sas_lens as sl
from sas_lens.steering.engine import steer
from sas_lens.topic.alignment import (
    TopicAlignment,
    latent_scores,
    reference_activations,
    reference_prompts,
    squared_distances,
    topic_scores,
)
from tests.helpers import HOOK, random_sae

REFERENCE = ["the movie was good", "the market price fell", "i love this story", "the team won"]
TOKENS = torch.tensor([[1, 5, 9, 12, 7, 30, 22], [1, 8, 8, 40, 41, 6, 10]])


def test_scores_by_hand():
    # 3 reference prompts with d² = 0, 1, 2; latent 0 fires on prompt 0 only (most aligned), latent 1 on
    # prompts 1 and 2 with weights 1 and 3 (mean d² = (1 + 6) / 4 = 1.75), latent 2 on prompt 2 (d² = 2,
    # least aligned), latent 3 never.
    weights = torch.tensor([[2.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 3.0, 5.0, 0.0]])
    scores = latent_scores(weights, torch.tensor([0.0, 1.0, 2.0]))
    torch.testing.assert_close(scores, torch.tensor([1.0, 1 - 1.75 / 2, 0.0, 0.0]))


def test_latents_that_never_fire_score_zero_and_nothing_is_nan():
    assert torch.equal(latent_scores(torch.zeros(3, 5), torch.tensor([0.1, 0.2, 0.3])), torch.zeros(5))
    one = latent_scores(torch.tensor([[0.0, 2.0], [0.0, 1.0]]), torch.tensor([0.5, 0.5]))
    assert not one.isnan().any() and one.tolist() == [0.0, 1.0]


def test_squared_distance_to_the_nearest_alignment_text():
    reference = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), dim=1)
    alignment = torch.nn.functional.normalize(torch.tensor([[1.0, 1.0], [1.0, 0.0]]), dim=1)
    # prompt 0 is the second alignment text (cos 1, d² 0); prompt 1 is nearest the first (cos 1/√2)
    torch.testing.assert_close(squared_distances(reference, alignment), torch.tensor([0.0, 2 - math.sqrt(2)]))


def hand_embeddings(texts):
    """A 3-d 'embedding' by hand: counts of film, market and sport words, normalised."""
    groups = [("movie", "story", "love", "film"), ("market", "price", "fell", "rose"), ("team", "won", "lost")]
    rows = [[sum(word in g for word in t.split()) + 1e-3 for g in groups] for t in texts]
    return torch.nn.functional.normalize(torch.tensor(rows), dim=1)


def test_topic_scores_equal_the_literal_computation(model, tmp_path, monkeypatch):
    monkeypatch.setenv("SAS_LENS_CACHE", str(tmp_path))
    sae = random_sae("jumprelu")
    topic = topic_scores(model, sae, ["a good film story"], REFERENCE, name="film", embed_fn=hand_embeddings)
    # literal: each prompt alone; the original's "avg" summary: each latent's activation sum over the prompt's
    # tokens after BOS, divided by the prompt's total activation over all latents
    codes = []
    for prompt in REFERENCE:
        _, cache = model.run_with_cache(model.to_tokens(prompt), names_filter=HOOK)
        codes.append(sae.encode(cache[HOOK][0, 1:]).detach())
    weights = torch.stack([c.sum(0) / c.sum() for c in codes])
    token_means = torch.stack([c.mean(0) for c in codes])
    d2 = 2 - 2 * (hand_embeddings(REFERENCE) @ hand_embeddings(["a good film story"]).T).max(1).values
    fired = weights.sum(0) > 0
    mean_d2 = (weights * d2[:, None]).sum(0)[fired] / weights.sum(0)[fired]
    expected = torch.zeros(sae.cfg.d_sae)
    expected[fired] = (mean_d2.max() - mean_d2) / (mean_d2.max() - mean_d2.min())
    torch.testing.assert_close(topic.scores, expected, atol=1e-5, rtol=1e-4)
    assert (~fired).any() and (topic.scores[~fired] == 0).all()
    assert torch.equal(topic.n_firing, (weights > 0).sum(0))
    assert topic.metadata["coverage"] == pytest.approx(float(fired.float().mean()))
    torch.testing.assert_close(
        reference_activations(model, sae, REFERENCE, summary="avg"), weights, atol=1e-5, rtol=1e-4
    )
    torch.testing.assert_close(reference_activations(model, sae, REFERENCE), token_means, atol=1e-5, rtol=1e-4)
    by_max = topic_scores(model, sae, ["a good film story"], REFERENCE, embed_fn=hand_embeddings, summary="max")
    torch.testing.assert_close(
        by_max.scores, latent_scores(torch.stack([c.max(0).values for c in codes]), d2), atol=1e-5, rtol=1e-4
    )
    with pytest.raises(ValueError, match="summary must be one of"):
        topic_scores(model, sae, ["a good film story"], REFERENCE, embed_fn=hand_embeddings, summary="mean")
    again = topic_scores(model, sae, ["a good film story"], REFERENCE, embed_fn=hand_embeddings)  # cached refs
    torch.testing.assert_close(again.scores, topic.scores)


@pytest.fixture
def topic(model, tmp_path, monkeypatch):
    monkeypatch.setenv("SAS_LENS_CACHE", str(tmp_path))
    sae = random_sae("jumprelu")
    return sae, topic_scores(model, sae, ["the team won"], REFERENCE, name="sport", embed_fn=hand_embeddings)


def test_amplify_is_the_literal_sas_edit_of_its_vector(model, topic):
    from tests.unit.test_steering import literal_edit, residual

    sae, alignment = topic
    vector = alignment.vector(n_latents=8, min_prompts=1)  # the tiny reference set is too small for 5
    assert len(vector) > 0 and vector.metadata["topic"]["mode"] == "amplify"
    clean = model(TOKENS)
    expected = model(literal_edit(sae, residual(model), 5.0 * vector.dense()), start_at_layer=2)
    with steer(model, {vector: 5.0}, sae=sae):
        steered = model(TOKENS)
    torch.testing.assert_close(steered, expected, atol=1e-4, rtol=1e-4)  # float32, other matmul shapes
    assert not torch.allclose(steered, clean, atol=1e-3)


def test_amplify_picks_latents_that_fire_on_enough_reference_prompts(topic):
    _, alignment = topic
    counts = alignment.n_firing
    by_score = alignment.vector(n_latents=10, min_prompts=1)
    assert set(by_score.indices.tolist()) == {latent for latent, _ in alignment.top(10)}
    rarest = min(by_score.indices.tolist(), key=lambda latent: int(counts[latent]))
    threshold = int(counts[rarest]) + 1
    assert (counts >= threshold).any()
    picked = alignment.vector(n_latents=10, min_prompts=threshold)
    assert len(picked) and (counts[picked.indices] >= threshold).all()
    assert rarest not in picked.indices.tolist()


def literal_swap(sae, a, scores, k):
    """The original procedure, token by token, written out: pre-activations × scores, the top-k mask of positive
    products, and the pre-activations there decoded (``swap_lats = preactivations * mask``)."""
    out = torch.empty_like(a)
    for b in range(a.shape[0]):
        for p in range(a.shape[1]):
            pre = (a[b, p] - sae.b_dec) @ sae.W_enc + sae.b_enc
            product = pre * scores
            keep = [i for i in torch.argsort(product, descending=True)[:k].tolist() if product[i] > 0]
            out[b, p] = pre[keep] @ sae.W_dec[keep] + sae.b_dec
    return out.detach()


def test_swap_brings_in_a_topic_latent_below_its_threshold():
    """A hand-built JumpReLU SAE: latent 1 is the topic's, its pre-activation 0.5 is under its threshold 1,
    so its code is 0. The original swap decodes its pre-activation; decoding codes (the old reading) cannot."""
    from sas_lens.testing import random_sae as make_sae
    from sas_lens.topic.swap import swap_reconstruction

    sae = make_sae("jumprelu", d_in=2, d_sae=3, hook_name=HOOK)
    with torch.no_grad():
        sae.W_enc.copy_(torch.eye(2, 3))  # latent i reads dimension i (latent 2 reads nothing)
        sae.b_enc.zero_(), sae.b_dec.zero_()
        sae.threshold.copy_(torch.tensor([0.1, 1.0, 0.1]))
        sae.W_dec.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
    a = torch.tensor([[2.0, 0.5]])
    assert sae.encode(a)[0, 1] == 0  # off: below its threshold
    scores = torch.tensor([0.0, 1.0, 0.0])
    swapped = swap_reconstruction(sae, a, scores, k=1)
    torch.testing.assert_close(swapped, torch.tensor([[0.0, 0.5]]))  # the topic latent's pre-activation, decoded
    torch.testing.assert_close(swapped, literal_swap(sae, a[None], scores, 1)[0])


def test_clamp_and_weight_equal_their_literal_transcriptions(model, topic):
    sae, alignment = topic
    a = residual_of(model)
    top5 = alignment.scores.topk(5).indices
    codes = sae.encode(a).detach()
    codes[..., top5] += 10.0
    clamped = sae.decode(codes).detach()
    with steer(model, {alignment.clamp(): 1.0}, sae=sae):
        torch.testing.assert_close(model(TOKENS), model(clamped, start_at_layer=2), atol=1e-4, rtol=1e-4)
    product = ((a - sae.b_dec) @ sae.W_enc + sae.b_enc) * alignment.scores
    weighted = sae.decode(product * (product > sae.threshold)).detach()
    with steer(model, {alignment.weight(): 1.0}, sae=sae):
        torch.testing.assert_close(model(TOKENS), model(weighted, start_at_layer=2), atol=1e-4, rtol=1e-4)


def residual_of(model):
    _, cache = model.run_with_cache(TOKENS, names_filter=HOOK)
    return cache[HOOK]


def test_swap_equals_the_literal_original_procedure(model, tmp_path, monkeypatch):
    monkeypatch.setenv("SAS_LENS_CACHE", str(tmp_path))
    sae = random_sae("jumprelu")
    with torch.no_grad():  # high thresholds: many sub-threshold pre-activations compete for the top k
        sae.threshold.fill_(0.6)
    # scored on the SAE as it steers (a threshold changed afterwards is another SAE, by its fingerprint)
    alignment = topic_scores(model, sae, ["the team won"], REFERENCE, name="sport", embed_fn=hand_embeddings)
    _, cache = model.run_with_cache(TOKENS, names_filter=HOOK)
    a = cache[HOOK]
    expected_full = model(literal_swap(sae, a, alignment.scores, 5), start_at_layer=2)
    with steer(model, {alignment.swap(k=5): 1.0}, sae=sae):
        torch.testing.assert_close(model(TOKENS), expected_full, atol=1e-4, rtol=1e-4)
    blend = 0.5 * a + 0.5 * literal_swap(sae, a, alignment.scores, 5)
    with steer(model, {alignment.swap(k=5): 0.5}, sae=sae):
        torch.testing.assert_close(model(TOKENS), model(blend, start_at_layer=2), atol=1e-4, rtol=1e-4)
    clean = model(TOKENS)
    with steer(model, {alignment.swap(k=5): 0.0}, sae=sae):  # a blend of nothing of the swap: the model itself
        assert torch.equal(model(TOKENS), clean)
    with pytest.raises(ValueError, match=r"λ in \[0, 1\]"):
        with steer(model, {alignment.swap(k=5): 2.0}, sae=sae):
            pass


def test_topic_composes_with_a_behaviour_vector_and_generates(model, topic):
    sae, alignment = topic
    behaviour = sl.dense_vector(
        model, sl.load_pairs([{"prompt": "i", "positive": " love", "negative": " hate"}]), layer=1
    )
    texts = sl.generate(
        model,
        ["the movie"],
        steering={alignment.vector(8, min_prompts=1): 3.0, behaviour: 2.0},
        sae=sae,
        max_new_tokens=3,
    )
    assert len(texts) == 1


def test_alignment_saves_and_refuses_another_sae(topic, tmp_path):
    sae, alignment = topic
    loaded = TopicAlignment.load(alignment.save(tmp_path / "sport"), sae=sae)
    assert torch.equal(loaded.scores, alignment.scores) and loaded.name == "sport"
    with pytest.raises(sl.errors.IncompatibleSAEError, match="another SAE"):
        TopicAlignment.load(tmp_path / "sport.safetensors", sae=random_sae("jumprelu", seed=7))


def test_shipped_reference_set_and_bad_input(model):
    prompts = reference_prompts()
    assert len(prompts) == 150 and len(set(prompts)) == 150
    with pytest.raises(sl.errors.DataError, match="non-empty alignment text"):
        topic_scores(model, random_sae("jumprelu"), ["", "  "], REFERENCE, embed_fn=hand_embeddings)


def test_a_topic_alignment_shows_its_top_latents_in_a_notebook(topic):
    _, alignment = topic
    page = alignment._repr_html_()
    latent, score = alignment.top(1)[0]
    assert f"<tr><td>{latent}</td><td>{score:.3f}</td>" in page and "coverage" in page
