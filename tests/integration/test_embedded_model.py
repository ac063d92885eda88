"""TransformerLens's Gemma 3 270M computes what transformers' does, on the embedded weights."""

import pytest
import torch

pytestmark = pytest.mark.integration

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n    if n < 2:",
    "In 1969, Neil Armstrong became the first person to",
    "Sparse autoencoders decompose the residual stream into",
    "I loved this movie because",
]


def test_next_token_log_probs_match_transformers(gemma, gemma_hf):
    hf_model, tokenizer = gemma_hf
    worst = 0.0
    for prompt in PROMPTS:
        tokens = tokenizer(prompt, return_tensors="pt").input_ids
        assert tokens[0, 0] == tokenizer.bos_token_id
        with torch.no_grad():
            hf = hf_model(tokens).logits.log_softmax(-1)
            tl = gemma(tokens).log_softmax(-1)
        worst = max(worst, (hf - tl).abs().max().item())
    assert worst < 1e-3, f"max |log p_HF - log p_TL| over {len(PROMPTS)} prompts = {worst:.3g}"
    print(f"max |log p_HF - log p_TL| = {worst:.3g}")


def test_greedy_continuation_matches_transformers(gemma, gemma_hf):
    hf_model, tokenizer = gemma_hf
    tokens = tokenizer(PROMPTS[2], return_tensors="pt").input_ids
    with torch.no_grad():
        hf = hf_model.generate(tokens, max_new_tokens=12, do_sample=False)[0, tokens.shape[1] :]
        tl = gemma.generate(tokens, max_new_tokens=12, do_sample=False, verbose=False)[0, tokens.shape[1] :]
    assert tl.tolist() == hf.tolist(), f"TL: {tokenizer.decode(tl)!r}\nHF: {tokenizer.decode(hf)!r}"


def test_default_model_is_a_hooked_sae_transformer_with_the_expected_shape(gemma):
    from sae_lens import HookedSAETransformer

    assert isinstance(gemma, HookedSAETransformer)
    assert (gemma.cfg.n_layers, gemma.cfg.d_model) == (18, 640)
    assert "blocks.9.hook_resid_post" in gemma.hook_dict


def test_the_transformer_lens_cache_builds_the_model_the_slow_load_builds(gemma, monkeypatch):
    """The first CPU load keeps a TransformerLens-ready cache; a model built from it computes the same logits.

    Tolerance 1e-5: the same weights in the same memory layout through the same code; a looser bound than
    bit-equality only because the two models' tensors were allocated separately (no CPU promises the same
    reduction order across allocations)."""
    from sas_lens.loading import models

    assert (models._tl_cache_dir() / "key.json").exists()  # written by the session's first load
    cached = models._load_tl_cache("cpu", torch.float32)
    assert cached is not None and not hasattr(cached, "_sas_lens_hf_model")  # the twin comes only when needed
    monkeypatch.setattr(models, "_load_tl_cache", lambda *args: None)
    converted = models.load_model(device="cpu")
    tokens = converted.to_tokens(PROMPTS)
    with torch.no_grad():
        torch.testing.assert_close(cached(tokens), converted(tokens), rtol=1e-5, atol=1e-5)
