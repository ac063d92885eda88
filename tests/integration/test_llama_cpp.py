"""An exported control vector does in llama.cpp, on the embedded GGUF, what the vector does in sas_lens.

llama.cpp runs the Q4_K_M weights with its own kernels (activations quantised to 8 bits in the matmuls);
sas_lens runs them dequantised in float32. So the two never agree exactly: unsteered, their next-token
distributions differ by a mean KL of about 0.007 nats on these prompts. The tolerances below are set
around what was measured (cosines 0.99+ of the two log-probability changes, 17 of 20 top promoted
tokens shared, steered KL within 1.2x of the unsteered one) with room for other CPUs' kernels.
"""

import os

import numpy as np
import pytest
import torch

import sas_lens as sl

if not os.environ.get("SAS_LENS_REQUIRE_SERVE"):
    pytest.importorskip("llama_cpp", reason="needs llama-cpp-python: pip install 'sas-lens[serve]'")

PROMPTS = [
    "I went to the cinema last night and the film was",
    "The new restaurant on the corner is",
    "My week at the office has been",
]


@pytest.fixture(scope="module")
def llm():
    from sas_lens.steering.llama_serving import load_llama

    llm = load_llama(n_ctx=128, n_threads=2)
    yield llm
    llm.close()  # before interpreter shutdown, where llama-cpp-python's own finaliser fails


@pytest.fixture(scope="module")
def ids(gemma):
    return [gemma.to_tokens(p)[0].tolist() for p in PROMPTS]


def sas_lens_log_probs(model, ids, steering, sae=None):
    with torch.no_grad(), sl.steer(model, steering, sae=sae):
        return np.concatenate([torch.log_softmax(model(torch.tensor([t]))[0].double(), -1).numpy() for t in ids])


def llama_log_probs(llm, ids, control_vector):
    from sas_lens.steering.llama_serving import apply_control_vector, llama_log_probs

    apply_control_vector(llm, control_vector)
    return np.concatenate([llama_log_probs(llm, t) for t in ids])


def cosine(a, b):
    return float((a * b).sum() / np.linalg.norm(a) / np.linalg.norm(b))


def kl(p, q):
    return float((np.exp(p) * (p - q)).sum(-1).mean())


@pytest.fixture(scope="module")
def unsteered(gemma, llm, ids):
    return sas_lens_log_probs(gemma, ids, {}), llama_log_probs(llm, ids, None)


def test_direction_n_in_llama_cpp_is_steering_blocks_n_hook_resid_post(gemma, llm, ids, unsteered, tmp_path):
    base_sl, base_ll = unsteered
    dense = sl.dense_vector(gemma, "demo:sentiment", layer=6)
    change_ll = llama_log_probs(llm, ids, dense.to_gguf(tmp_path / "d.gguf", gemma, lam=3.0)) - base_ll
    cosines = {}
    for block in (5, 6, 7):
        moved = sl.DenseVector(
            dense.vector, {**dense.metadata, "hook_name": f"blocks.{block}.hook_resid_post", "layer": block}
        )
        cosines[block] = cosine(change_ll, sas_lens_log_probs(gemma, ids, {moved: 3.0}) - base_sl)
    assert cosines[6] > 0.95, cosines  # measured 0.989
    assert cosines[5] < 0.9 and cosines[7] < 0.9, cosines  # measured 0.70 and 0.79: one block off is visible


def test_the_demo_sentiment_vector_steers_llama_cpp_as_it_steers_sas_lens(gemma, llm, ids, unsteered, tmp_path):
    base_sl, base_ll = unsteered
    sae = sl.load_sae("16k", model=gemma)
    vector = sl.sas_vector(gemma, sae, "demo:sentiment")
    steered_sl = sas_lens_log_probs(gemma, ids, {vector: 20.0}, sae)
    steered_ll = llama_log_probs(llm, ids, vector.to_gguf(tmp_path / "s.gguf", gemma, lam=20.0, sae=sae))
    change_sl, change_ll = steered_sl - base_sl, steered_ll - base_ll
    assert kl(steered_sl, base_sl) > 0.5  # the steering moves the model (measured 1.8 nats)
    assert cosine(change_sl, change_ll) > 0.97  # measured 0.998
    last = np.cumsum([len(t) for t in ids]) - 1  # next-token positions after each prompt
    promoted = [set(np.argsort(change[last].mean(0))[-20:].tolist()) for change in (change_sl, change_ll)]
    assert len(promoted[0] & promoted[1]) >= 14  # measured 17 of 20
    # Steered, the two are about as close as unsteered (measured 0.0076 against 0.0066).
    assert kl(steered_sl, steered_ll) < 2 * kl(base_sl, base_ll)
    # Cleared, llama.cpp is back to its unsteered self (same kernels: equal to float32 rounding).
    np.testing.assert_allclose(llama_log_probs(llm, ids, None), base_ll, atol=1e-4)
