"""On the embedded Gemma 3 270M, the three model kinds agree: HookedSAETransformer (TransformerLens's own
layout, converted from the GGUF), a TransformerBridge and the plain transformers model, unsteered and steered
by the demo sentiment vector.

Same float32 weights, different module code and orders of summation over 18 blocks whose residuals reach
norms of ~10⁴: ``bench/bench_model_kinds.py`` measured at most 4e-5 nats between any two kinds' next-token
log-probabilities on 32 prompts; the tolerance is 1e-3 to leave room for other CPUs' kernels, against a
steering effect of more than 1 nat on the same tokens.
"""

import pytest
import torch

import sas_lens as sl

PROMPTS = ["The new restaurant on the corner is", "My week at the office has been"]
TOLERANCE = 1e-3


@pytest.fixture(scope="module")
def sae(gemma):
    return sl.load_sae("16k", model=gemma)


@pytest.fixture(scope="module")
def vector(gemma, sae):
    return sl.sas_vector(gemma, sae, "demo:sentiment")


def next_token_log_probs(model, steering, sae):
    with torch.no_grad(), sl.steer(model, steering, sae=sae):
        return torch.stack([torch.log_softmax(model(model.to_tokens(p))[0, -1].double(), -1) for p in PROMPTS])


@pytest.mark.parametrize("kind", ["bridge", "hf"])
def test_the_other_kinds_steer_the_embedded_model_as_hooked_transformer_does(gemma, sae, vector, kind):
    other = sl.load_model(kind=kind, device="cpu")
    for steering in ({}, {vector: 20.0}):
        expected = next_token_log_probs(gemma, steering, sae)
        got = next_token_log_probs(other, steering, sae)
        assert (got - expected).abs().max() < TOLERANCE
    effect = next_token_log_probs(other, {vector: 20.0}, sae) - next_token_log_probs(other, {}, sae)
    assert effect.abs().max() > 1.0  # the steering is far larger than the tolerance
    assert torch.equal(other.to_tokens(PROMPTS[0]).cpu(), gemma.to_tokens(PROMPTS[0]).cpu())
