"""SAE evaluation on hand-checkable SAEs: a lossless one and a useless one."""

import numpy as np
import pytest
import torch

from sas_lens.sae_training.activation_cache import ActivationCache
from sas_lens.sae_training.evaluate import evaluate_sae
from tests.helpers import D_MODEL, WORDS, random_sae


@pytest.fixture
def held_out(tmp_path):
    rng = np.random.default_rng(2)
    path = tmp_path / "held_out.txt"
    path.write_text("\n\n".join(" ".join(rng.choice(WORDS, size=40)) for _ in range(10)))
    return path


def lossless_sae():
    """ReLU(x) - ReLU(-x) = x: latents are the positive and negative parts of each coordinate."""
    sae = random_sae("standard", d_sae=2 * D_MODEL)
    eye = torch.eye(D_MODEL)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye], dim=1))
        sae.W_dec.copy_(torch.cat([eye, -eye], dim=0))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae


def test_lossless_sae_scores_perfectly(tmp_path, model, held_out):
    report = evaluate_sae(
        model,
        lossless_sae(),
        held_out,
        n_tokens=200,
        n_loss_sequences=6,
        context_size=8,
        batch_size=4,
        cache_dir=tmp_path / "c",
        out_json=tmp_path / "eval.json",
    )
    assert report["explained_variance"] == pytest.approx(1.0, abs=1e-6)
    assert report["ce_loss_recovered"] == pytest.approx(1.0, abs=1e-5)
    assert report["ce_loss_with_sae"] == pytest.approx(report["ce_loss_clean"], abs=1e-5)
    assert report["mean_l0"] == pytest.approx(D_MODEL, abs=0.5)  # one of each +/- pair is active
    acts = ActivationCache(tmp_path / "c").batch(np.arange(200))
    frequencies = torch.cat([(acts > 0).float().mean(0), (acts < 0).float().mean(0)])
    assert report["dead_fraction"] == float((frequencies == 0).float().mean())
    assert report["dense_fraction"] == float((frequencies > 0.1).float().mean())
    assert (tmp_path / "eval.json").exists()


def test_sae_that_never_fires_is_all_dead_and_recovers_nothing(tmp_path, model, held_out):
    sae = lossless_sae()
    with torch.no_grad():
        sae.b_enc.fill_(-1e6)  # no latent ever fires: the reconstruction is b_dec = 0
    report = evaluate_sae(
        model, sae, held_out, n_tokens=100, n_loss_sequences=4, context_size=8, batch_size=4, cache_dir=tmp_path / "c"
    )
    assert report["dead_fraction"] == 1.0 and report["mean_l0"] == 0.0
    assert report["ce_loss_recovered"] == pytest.approx(0.0, abs=1e-5)
    assert report["explained_variance"] < 0.5
