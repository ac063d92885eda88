"""One strength scale on the tiny model: edit sizes by hand, KL against a manual computation, the matched-cost search."""

import pytest
import torch

from sas_lens.errors import StrengthNotReachedError
from sas_lens.steering.strength import edit_norm, next_token_kl, strength_for_kl
from sas_lens.steering.vectors import DenseVector
from tests.helpers import HOOK, random_sae
from tests.unit.test_steering import literal_edit, vector_for

TEXTS = ["the movie was good", "i love this story and the music"]


def dense_vector_for_tests():
    return DenseVector(torch.linspace(-1, 1, 16), {"hook_name": HOOK, "layer": 1, "model_name": "tiny-random"})


def test_a_dense_edit_is_lambda_times_its_norm_at_every_token(model):
    dense = dense_vector_for_tests()
    assert edit_norm(model, dense, TEXTS, lam=-2.5) == pytest.approx(2.5 * float(dense.vector.norm()), rel=1e-6)


def test_an_sas_edit_size_is_the_literal_edits_mean_norm(model):
    from sas_lens.loading.prompts import tokenize_with_spans

    sae = random_sae("jumprelu")
    vec = vector_for(sae)
    tokens, attention, read = tokenize_with_spans(model.tokenizer, TEXTS, [(0, len(t)) for t in TEXTS])
    _, cache = model.run_with_cache(tokens, attention_mask=attention, names_filter=HOOK)
    a = cache[HOOK]
    expected = (literal_edit(sae, a, 3.0 * vec.dense()) - a)[read].norm(dim=-1).mean().detach()
    assert edit_norm(model, vec, TEXTS, sae=sae, lam=3.0) == pytest.approx(float(expected), rel=1e-4)


def manual_kl(model, dense, lam, texts):
    """Mean next-token KL(clean ‖ steered) over every position of each text, with a hand-written hook."""
    kls = []
    for text in texts:
        tokens = model.to_tokens(text)
        with torch.no_grad():
            clean = model(tokens).log_softmax(-1)[0, 1:]
            steered = model.run_with_hooks(
                tokens, fwd_hooks=[(HOOK, lambda acts, hook: acts + lam * dense.vector)]
            ).log_softmax(-1)[0, 1:]
        kls.append((clean.exp() * (clean - steered)).sum(-1))
    return float(torch.cat(kls).mean())


def test_kl_matches_a_manual_computation(model):
    dense = dense_vector_for_tests()
    assert next_token_kl(model, {dense: 3.0}, TEXTS[:1]) == pytest.approx(
        manual_kl(model, dense, 3.0, TEXTS[:1]), rel=1e-4
    )


def test_the_matched_cost_search_reaches_the_target(model):
    dense = dense_vector_for_tests()
    target = 0.05
    lam = strength_for_kl(model, dense, target, TEXTS, sign=-1.0, high=32.0)
    assert lam < 0
    # checked against the hand-written KL, not the function the search itself stops on (rtol 0.05)
    assert manual_kl(model, dense, lam, TEXTS) == pytest.approx(target, rel=0.06)
    with pytest.raises(StrengthNotReachedError, match="below the target"):
        strength_for_kl(model, dense, 50.0, TEXTS, high=0.01)


def test_normalised_vectors_make_edits_of_the_asked_norm(model):
    from sas_lens.steering.strength import normalised

    dense = dense_vector_for_tests()
    assert float(normalised(model, dense, TEXTS, norm=3.0).vector.norm()) == pytest.approx(3.0, rel=1e-5)
    sae = random_sae("jumprelu")
    ungated = vector_for(sae).with_gate("none")  # linear in λ: its λ = 1 edit is exactly the asked size
    assert edit_norm(model, normalised(model, ungated, TEXTS, norm=2.0, sae=sae), TEXTS, sae=sae) == pytest.approx(
        2.0, rel=1e-4
    )
    with pytest.raises(ValueError, match="positive"):
        normalised(model, dense, TEXTS, norm=float("nan"))
