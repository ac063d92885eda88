"""The output-side rules: the preference margin, the attribution rule, generic-latent filters, fitted vectors.

Each is checked against a literal reference written here without the library's batching: every pair run
alone through the whole model, the edit added by a TransformerLens hook.
"""

import pytest
import torch

import sas_lens as sl
from sas_lens.steering.build_vectors import candidate_latents, rebuild_settings, residual_difference
from sas_lens.steering.edits import decoder_directions
from sas_lens.steering.extraction import collect_residuals
from sas_lens.steering.fitting import PreferenceFit, fit_values
from sas_lens.steering.generic_latents import latent_density
from sas_lens.steering.preference import margin_gradient, margins, prepare_pairs
from tests.helpers import HOOK, random_sae, tiny_model

WORDS = "the a movie film was is it this that story plot music".split()


@pytest.fixture(scope="module")
def model():
    return tiny_model(positional_embedding_type="rotary")


@pytest.fixture(scope="module")
def pairs():
    return sl.load_pairs(
        [
            {"prompt": "the movie was", "positive": " good and fun", "negative": " bad"},
            {"prompt": "i", "positive": " love this story", "negative": " hate this boring story"},
            {"prompt": "the film", "positive": " was great", "negative": " was awful"},
        ],
        name="tiny",
    )


def literal_margin(model, pairs, hook: str, delta: torch.Tensor) -> float:
    """Mean over pairs of [Δ log p(y⁺) − Δ log p(y⁻)], each text alone, ``delta`` added at every position."""

    def completion_log_prob(prompt: str, completion: str, hooks) -> float:
        full = model.to_tokens(prompt + completion)
        n_new = full.shape[1] - model.to_tokens(prompt).shape[1]
        with torch.no_grad(), model.hooks(fwd_hooks=hooks):
            log_probs = model(full)[0].double().log_softmax(-1)
        targets = full[0, -n_new:]
        return float(log_probs[-n_new - 1 : -1].gather(1, targets[:, None]).sum())

    edit = [(hook, lambda a, hook: a + delta.to(a.dtype))]
    total = 0.0
    for pair in pairs:
        for sign, completion in ((1.0, pair.positive), (-1.0, pair.negative)):
            change = completion_log_prob(pair.prompt, completion, edit) - completion_log_prob(
                pair.prompt, completion, []
            )
            total += sign * change
    return total / len(pairs)


def test_the_batched_margin_equals_each_pair_run_alone_through_a_hook(model, pairs):
    delta = torch.randn(16, generator=torch.Generator().manual_seed(1)) * 0.5
    batches = prepare_pairs(model, pairs, 1, batch_size=2)  # 2 batches, left padding inside each
    with torch.no_grad():
        batched = torch.cat([margins(model, batch, 1, batch.residual + delta) for batch in batches]).mean()
    # float32 through two code paths (left-padded batches from block 2 against one sequence at a time)
    assert float(batched) == pytest.approx(literal_margin(model, pairs, HOOK, delta), abs=1e-4)
    assert float(batched) != pytest.approx(0.0, abs=1e-3)  # the edit does move the margin


def test_the_margin_gradient_is_the_derivative_of_the_literal_margin(model, pairs):
    gradient = margin_gradient(model, prepare_pairs(model, pairs, 1, batch_size=2), 1)
    eps = 1e-2
    for seed in range(3):
        direction = torch.randn(16, generator=torch.Generator().manual_seed(seed))
        central = (
            literal_margin(model, pairs, HOOK, eps * direction) - literal_margin(model, pairs, HOOK, -eps * direction)
        ) / (2 * eps)
        # central differences: error O(ε²) from the curvature, plus float32 rounding of the forward pass
        assert float(gradient @ direction) == pytest.approx(central, rel=2e-3, abs=1e-5)


def test_no_parameter_of_the_model_is_left_frozen_or_with_a_gradient(model, pairs):
    before = [p.requires_grad for p in model.parameters()]
    margin_gradient(model, prepare_pairs(model, pairs, 1), 1)
    assert [p.requires_grad for p in model.parameters()] == before
    assert all(p.grad is None for p in model.parameters())


def test_the_attribution_rule_keeps_the_latents_of_largest_literal_gain_valued_by_it(model, pairs):
    sae = random_sae("jumprelu")
    vec = sl.sas_vector(model, sae, pairs, selection="attribution", top_k=4)
    directions = decoder_directions(sae)
    eps = 1e-2
    gains = torch.tensor(
        [
            (literal_margin(model, pairs, HOOK, eps * d) - literal_margin(model, pairs, HOOK, -eps * d)) / (2 * eps)
            for d in directions
        ]
    )
    expected = gains.abs().topk(4).indices
    assert sorted(vec.indices.tolist()) == sorted(expected.tolist())
    order = torch.argsort(vec.indices)
    got = vec.values[order] / vec.values.norm()
    want = gains[vec.indices[order]] / gains[vec.indices].norm()
    assert torch.allclose(got, want, atol=2e-3)
    # scaled to the norm of the pairs' mean residual difference
    difference = residual_difference(collect_residuals(model, pairs, 1, progress=False), 1)
    assert float((vec.values @ directions[vec.indices]).norm()) == pytest.approx(float(difference.norm()), rel=1e-4)
    assert vec.provenance.extraction["selection"] == "attribution" and vec.gate == "none"


def generic_latent_sae(model, pairs, writes: str = "difference"):
    """A random SAE whose latent 0 fires on every token, BOS included, differs most between the sides and
    writes the pairs' residual difference (or, ``writes="gradient"``, the margin's gradient)."""
    sae = random_sae("jumprelu")
    difference = residual_difference(collect_residuals(model, pairs, 1, progress=False), 1)
    written = difference if writes == "difference" else margin_gradient(model, prepare_pairs(model, pairs, 1), 1)
    with torch.no_grad():
        sae.W_enc[:, 0] = 5 * difference / difference.norm() ** 2
        sae.b_enc[0] = 1e3
        sae.W_dec[0] = written / written.norm() * sae.W_dec[0].norm()
    return sae


def test_density_and_bos_are_those_of_each_text_encoded_alone(model):
    sae = generic_latent_sae(model, sl.load_pairs([{"prompt": "a", "positive": " good", "negative": " bad"}]))
    texts = ["the movie was good", "i love this story and the music", "bad"]
    stats = latent_density(model, sae, texts, batch_size=2)
    active, n_tokens, on_bos = torch.zeros(sae.cfg.d_sae), 0, torch.zeros(sae.cfg.d_sae, dtype=torch.bool)
    for text in texts:
        _, cache = model.run_with_cache(model.to_tokens(text), names_filter=HOOK)
        codes = sae.encode(cache[HOOK][0])
        active += (codes[1:] > 0).float().sum(0)
        on_bos |= codes[0] > 0
        n_tokens += codes.shape[0] - 1
    assert stats["n_tokens"] == n_tokens
    assert torch.allclose(stats["density"], active / n_tokens)
    assert torch.equal(stats["fires_on_bos"], on_bos) and bool(on_bos[0])


@pytest.mark.parametrize("selection", ["contrast", "attribution", "decompose", "paper"])
@pytest.mark.parametrize("filters", [{"max_density": 0.5}, {"drop_bos": True}])
def test_a_generic_latent_is_kept_without_the_filter_and_dropped_with_it(model, pairs, selection, filters):
    sae = generic_latent_sae(model, pairs, "gradient" if selection == "attribution" else "difference")
    settings = {"tau": 0.5} if selection == "paper" else {"top_k": 6}
    if selection == "paper":
        with torch.no_grad():  # on the negative side only, so that Algorithm 1 keeps it on one side
            sae.W_enc[:, 0] *= -1
            sae.b_enc[0] = 0.0
    plain = sl.sas_vector(model, sae, pairs, selection=selection, **settings)
    allowed, _ = candidate_latents(model, sae, None, filters.get("max_density"), filters.get("drop_bos", False))
    if selection != "paper":
        assert 0 in plain.indices.tolist()  # the precondition: without a filter the rule takes it
    filtered = sl.sas_vector(model, sae, pairs, selection=selection, **settings, **filters)
    assert bool(allowed[filtered.indices].all())
    assert 0 not in filtered.indices.tolist() or selection == "paper"
    assert filtered.provenance.extraction["filters"]
    again = sl.sas_vector(model, sae, pairs, **rebuild_settings(filtered))
    assert torch.equal(again.indices, filtered.indices)


def test_the_output_score_filter_keeps_only_latents_that_score_enough(model, pairs, tmp_path, monkeypatch):
    monkeypatch.setenv("SAS_LENS_CACHE", str(tmp_path))
    sae = random_sae("jumprelu")
    scores = torch.as_tensor(sl.output_scores(model, sae, progress=False)["output_score"].to_numpy(copy=True))
    threshold = float(scores.median())
    vec = sl.sas_vector(model, sae, pairs, top_k=6, min_output_score=threshold)
    assert bool((scores[vec.indices] >= threshold).all()) and len(vec.indices) > 0
    assert vec.provenance.extraction["filters"]["removed_by_output_score"] == int((scores < threshold).sum())


def planted_model():
    """A tiny model whose last block's residual reads 'good' against 'bad' along dimension 0 only."""
    model = tiny_model(seed=3)
    good, bad = (model.tokenizer.convert_tokens_to_ids(word) for word in ("good", "bad"))
    with torch.no_grad():
        model.W_U[:, [good, bad]] = 0.0
        model.W_U[0, good], model.W_U[0, bad] = 1.0, -1.0
    pairs = sl.load_pairs(
        [{"prompt": f"{a} {b}", "positive": " good", "negative": " bad"} for a in WORDS[:6] for b in WORDS[6:9]]
    )
    return model, pairs


def test_the_fit_recovers_a_planted_direction_sparse_and_dense():
    model, pairs = planted_model()
    fit = PreferenceFit(norm=0.3, epochs=30, patience=30)
    e0 = torch.eye(16)[0]
    sparse, report = fit_values(model, pairs, 2, torch.eye(16)[:3], torch.ones(3), fit, progress=False)
    assert float(sparse[0] / sparse.norm()) > 0.95  # started at 1/√3 ≈ 0.58
    assert report["held_out_loss_after"] < report["held_out_loss_before"]
    assert float(sparse.norm()) == pytest.approx(0.3, rel=1e-5)
    dense, _ = fit_values(model, pairs, 2, torch.eye(16), torch.ones(16), fit, progress=False)
    assert float(torch.cosine_similarity(dense, e0, 0)) > 0.9  # started at 0.25


def test_a_fitted_sas_vector_keeps_exactly_its_k_latents_and_is_reproducible():
    model, pairs = planted_model()
    sae = random_sae("jumprelu")
    fit = PreferenceFit(epochs=3, batch_size=4)
    chosen = sl.sas_vector(model, sae, pairs, top_k=5)
    fitted = sl.sas_vector(model, sae, pairs, top_k=5, fit=fit)
    assert len(fitted.indices) == 5 and torch.equal(fitted.indices, chosen.indices)
    report = fitted.provenance.extraction["fit"]
    assert report["held_out_loss_after"] < report["held_out_loss_before"]
    assert not torch.allclose(fitted.values / fitted.values.norm(), chosen.values / chosen.values.norm())
    again = sl.sas_vector(model, sae, pairs, **rebuild_settings(fitted))
    assert torch.equal(again.values, fitted.values)  # seeded: the same run twice
    dense = sl.dense_vector(model, pairs, layer=1, fit=fit)
    assert dense.provenance.extraction["fit"]["held_out_pairs"] == 4  # 20% of 18 pairs


def test_fits_that_cannot_be_done_are_refused_before_any_work(model, pairs):
    sae = random_sae("jumprelu")
    with pytest.raises(ValueError, match='gate="none"'):
        sl.sas_vector(model, sae, pairs, fit="preference", gate="sae")
    with pytest.raises(ValueError, match="fit must be one of"):
        sl.sas_vector(model, sae, pairs, fit="bipo")
    with pytest.raises(ValueError, match="at least 2 pairs"):
        sl.dense_vector(model, sl.load_pairs(list(pairs)[:1]), layer=1, fit="preference")
    with pytest.raises(ValueError, match="PreferenceFit"):
        PreferenceFit(held_out=1.0)
