"""SAE training: saves a loadable JumpReLU SAE, and an interrupted run resumes to the same result."""

import json

import numpy as np
import pytest
import torch

import sas_lens as sl
from sas_lens.sae_training import train as sae_training
from sas_lens.sae_training.activation_cache import (
    ActivationCache,
    build_activation_cache,
)
from sas_lens.sae_training.train import SAETrainingConfig, latest_checkpoint, train_sae
from tests.helpers import HOOK, WORDS

CFG = SAETrainingConfig(
    layer=1,
    d_sae=32,
    k=4,
    n_tokens=16 * 12,
    batch_size=16,
    warmup_steps=2,
    n_checkpoints=3,
    dead_steps=3,
    context_size=8,
)


@pytest.fixture
def cache_dir(tmp_path, model):
    rng = np.random.default_rng(1)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(" ".join(rng.choice(WORDS, size=40)) for _ in range(20)))
    build_activation_cache(model, HOOK, corpus, tmp_path / "cache", n_tokens=CFG.n_tokens, context_size=8, batch_size=4)
    return tmp_path / "cache"


def test_trained_sae_loads_as_jumprelu_and_fits(tmp_path, model, cache_dir):
    train_sae(CFG, out_dir=tmp_path / "sae", cache_dir=cache_dir, model_name="tiny-random")
    sae = sl.load_sae(tmp_path / "sae", model=model)
    assert sae.cfg.architecture() == "jumprelu" and sae.cfg.d_sae == 32
    # The saved threshold fires on about k latents per token, as BatchTopK did in training.
    from sas_lens.sae_training.activation_cache import ActivationCache

    rows = ActivationCache(cache_dir).batch(np.arange(CFG.n_tokens))
    l0 = (sae.encode(rows) > 0).sum(-1).float().mean().item()
    assert CFG.k * 0.75 < l0 < CFG.k * 1.25, l0
    record = json.loads((tmp_path / "sae" / "training.json").read_text())
    assert record["tokens_seen"] == CFG.n_steps * CFG.batch_size
    assert record["settings"]["k"] == 4


def test_interrupted_training_resumes_to_the_same_sae(tmp_path, monkeypatch, cache_dir):
    reference = train_sae(CFG, out_dir=tmp_path / "straight", cache_dir=cache_dir, model_name="tiny-random")

    real_batches = sae_training.random_batches

    def interrupted_after(n):
        def batches(cache, batch_size, seed, start_step, dim_scale=None):
            for i, batch in enumerate(real_batches(cache, batch_size, seed, start_step, dim_scale)):
                if seed == CFG.seed and i == n:  # the training stream, not the norm estimate's
                    raise KeyboardInterrupt
                yield batch

        return batches

    monkeypatch.setattr(sae_training, "random_batches", interrupted_after(8))
    with pytest.raises(KeyboardInterrupt):
        train_sae(CFG, out_dir=tmp_path / "resumed", cache_dir=cache_dir, model_name="tiny-random")
    checkpoint = latest_checkpoint(tmp_path / "resumed.work" / "checkpoints")
    assert checkpoint is not None and int(checkpoint.name) > 0  # finished steps were kept
    monkeypatch.setattr(sae_training, "random_batches", real_batches)
    resumed = train_sae(CFG, out_dir=tmp_path / "resumed", cache_dir=cache_dir, model_name="tiny-random")
    for name, param in reference.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], param, msg=name)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="k=40 cannot exceed d_sae=32"):
        SAETrainingConfig(layer=1, d_sae=32, k=40)


def test_folded_dimension_scale_reads_and_writes_raw_residuals(tmp_path):
    from tests.helpers import random_sae

    sae = random_sae("jumprelu", d_in=16, d_sae=40)
    sae.save_model(tmp_path / "sae")
    scale = torch.linspace(1, 20, 16)
    x = torch.randn(12, 16) * scale
    codes = sae.encode(x / scale)
    assert (codes > 0).any()
    sae_training._fold_dim_scale(tmp_path / "sae", scale)
    folded = sl.load_sae(tmp_path / "sae")
    torch.testing.assert_close(folded.encode(x), codes, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(folded.decode(codes), sae.decode(codes) * scale, atol=1e-5, rtol=1e-5)


def test_dimension_scale_tames_only_the_outlier_dimensions(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.normal(size=(4096, 8)).astype(np.float32)
    data[:, 3] *= 30  # one dimension with most of the variance, like Gemma's

    class InMemoryCache(ActivationCache):
        def __init__(self):
            pass

        def __len__(self):
            return len(data)

        def batch(self, indices):
            return torch.from_numpy(data[indices])

    cache = InMemoryCache()
    cfg = SAETrainingConfig(layer=0, d_sae=16, k=2, n_tokens=1024, batch_size=512)
    scale = sae_training._dim_scale(cache, cfg, tmp_path)
    balanced = torch.from_numpy(data) / scale
    others = [0, 1, 2, 4, 5, 6, 7]
    assert torch.equal(scale[others], torch.ones(7))  # the ordinary dimensions are untouched
    cap = sae_training.VARIANCE_CAP_OVER_MEDIAN * balanced.var(0).median()
    assert abs(balanced.var(0)[3] / cap - 1) < 0.01
    assert torch.equal(sae_training._dim_scale(cache, cfg, tmp_path), scale)  # saved, reused on resume
