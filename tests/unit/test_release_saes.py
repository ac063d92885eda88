"""SAELens releases by id offline: a cached SAE loads with no connection, a missing one gets one clear error.

The Hugging Face cache is written by the tests themselves, in the hub's layout, with a small random SAE in
Gemma Scope 2's format (``config.json`` + ``params.safetensors`` with ``w_enc``, ``w_dec``, ``b_enc``,
``b_dec``, ``threshold``), so nothing is downloaded.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import sas_lens as sl

RELEASE, SAE_ID = "gemma-scope-2-270m-pt-res", "layer_9_width_16k_l0_medium"
REPO, FOLDER = "google/gemma-scope-2-270m-pt", "resid_post/layer_9_width_16k_l0_medium"
D_IN, D_SAE = 8, 16


def write_cached_gemma_scope_2_sae(hub_cache: Path) -> dict[str, torch.Tensor]:
    """A random JumpReLU SAE where ``huggingface_hub`` would have put the real one; its parameters."""
    generator = torch.Generator().manual_seed(0)
    params = {
        "w_enc": torch.randn(D_IN, D_SAE, generator=generator),
        "w_dec": torch.randn(D_SAE, D_IN, generator=generator),
        "b_enc": torch.randn(D_SAE, generator=generator),
        "b_dec": torch.randn(D_IN, generator=generator),
        "threshold": torch.rand(D_SAE, generator=generator),
    }
    revision = "0123456789abcdef0123456789abcdef01234567"
    repo = hub_cache / f"models--{REPO.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    folder = repo / "snapshots" / revision / FOLDER
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(
        json.dumps(
            {
                "architecture": "jump_relu",
                "model_name": "gemma-v3-270m-pt",
                "hf_hook_point_in": "model.layers.9.output",
                "width": D_SAE,
            }
        )
    )
    save_file(params, folder / "params.safetensors")
    return params


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """An empty Hugging Face cache, HF_HUB_OFFLINE=1, and any attempt to open a connection failing the test."""
    import huggingface_hub.constants

    hub_cache = tmp_path / "hub"
    hub_cache.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub_cache))

    def no_network(*args, **kwargs):
        raise AssertionError(f"a connection was attempted offline: {args[:2]}")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    return hub_cache


def test_a_cached_release_sae_loads_offline_without_a_connection(offline_hub):
    params = write_cached_gemma_scope_2_sae(offline_hub)
    sae = sl.load_sae(RELEASE, SAE_ID)
    assert sae.cfg.architecture() == "jumprelu"
    assert (sae.cfg.d_in, sae.cfg.d_sae) == (D_IN, D_SAE)
    assert sae.cfg.metadata.hook_name == "blocks.9.hook_resid_post"
    torch.testing.assert_close(sae.W_enc.detach(), params["w_enc"])
    torch.testing.assert_close(sae.threshold.detach(), params["threshold"])
    # SAELens's network-only shape reader is put back after the load
    from sae_lens.loading import pretrained_sae_loaders

    assert pretrained_sae_loaders.get_safetensors_tensor_shapes.__module__ == "sae_lens.loading.pretrained_sae_loaders"


def test_a_release_sae_not_cached_offline_gets_one_clear_error(offline_hub):
    with pytest.raises(sl.errors.SAENotCachedError) as info:
        sl.load_sae(RELEASE, SAE_ID)
    message = str(info.value)
    for part in (
        RELEASE,
        SAE_ID,
        REPO,
        "HF_HUB_OFFLINE",
        f"huggingface-cli download {REPO} --include '{FOLDER}/*'",
        "did not try to connect",
        "sl.load_sae('path/to/folder')",
    ):
        assert part in message, part


def test_unknown_release_and_id_are_refused_with_the_closest_names(offline_hub):
    with pytest.raises(sl.errors.NoDefaultSAEError, match="Did you mean 'gemma-scope-2-270m-pt-res'"):
        sl.load_sae("gemma-scope-2-270m-pt-re", SAE_ID)
    with pytest.raises(sl.errors.NoDefaultSAEError, match="has no SAE 'layer_9_width_16k_l0_medum'.*Did you mean"):
        sl.load_sae(RELEASE, "layer_9_width_16k_l0_medum")


def test_offline_load_end_to_end_in_a_network_namespace_with_no_route_out(tmp_path):
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-n", "true"]).returncode != 0:
        pytest.skip("this machine does not allow a network namespace (unshare -n)")
    params = write_cached_gemma_scope_2_sae(tmp_path / "hub")
    script = (
        f"import sas_lens as sl; sae = sl.load_sae({RELEASE!r}, {SAE_ID!r}); print(float(sae.W_enc.detach().sum()))"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub")}
    done = subprocess.run(
        ["unshare", "-n", sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert float(done.stdout.split()[-1]) == pytest.approx(float(params["w_enc"].sum()), rel=1e-5)
    env["HF_HUB_CACHE"] = str(tmp_path / "empty")
    missing = subprocess.run(
        ["unshare", "-n", sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert missing.returncode != 0
    assert "SAENotCachedError" in missing.stderr and "ConnectionError" not in missing.stderr
