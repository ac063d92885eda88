"""Train an SAE on a model's residual stream with SAELens's trainer, resumably, on CPU or CUDA.

The recipe is SAELens's BatchTopK SAE, which saves as a JumpReLU SAE (the Gemma
Scope form), with activations normalised to mean norm sqrt(d_in) during
training (folded into the weights at the end) and the auxiliary dead-latent
loss switched on early: on a CPU budget of a few hundred steps, SAELens's
default dead-latent window (1,000 steps) would never trigger it.

Activations come from an :class:`~sas_lens.sae_training.activation_cache.ActivationCache`,
built first (resumably) and then sampled at random, so the model runs once per
token however many SAEs are trained from it.

Example:
    >>> from sas_lens.sae_training.train import SAETrainingConfig, train_sae
    >>> cfg = SAETrainingConfig(layer=9, d_sae=16384, k=64, n_tokens=3_000_000)  # doctest: +SKIP
    >>> train_sae(cfg, texts=["corpus/"], out_dir="my_sae")                      # doctest: +SKIP
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from sas_lens.sae_training.activation_cache import (
    ActivationCache,
    build_activation_cache,
)
from sas_lens.sae_training.batchtopk import FastBatchTopKTrainingSAE


@dataclass(frozen=True)
class SAETrainingConfig:
    """Settings of one SAE training run (all recorded in the saved SAE's card)."""

    layer: int
    hook_point: str = "hook_resid_post"
    d_sae: int = 16384
    k: int = 64
    n_tokens: int = 3_000_000
    batch_size: int = 4096
    lr: float = 5e-4
    warmup_steps: int = 50
    decay_fraction: float = 0.2
    aux_loss_coefficient: float = 1.0
    dead_steps: int = 25
    b_dec_init: str = "mean"
    balance_dims: bool = True
    decoder_init_norm: float = 1.0
    context_size: int = 128
    n_checkpoints: int = 10
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        for name in ("d_sae", "k", "n_tokens", "batch_size", "context_size", "dead_steps"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}.")
        if self.k > self.d_sae:
            raise ValueError(f"k={self.k} cannot exceed d_sae={self.d_sae}.")
        if self.b_dec_init not in ("mean", "zeros"):
            raise ValueError(f"b_dec_init must be 'mean' or 'zeros', got {self.b_dec_init!r}.")
        if not 0 <= self.decay_fraction <= 1:
            raise ValueError(f"decay_fraction must be in [0, 1], got {self.decay_fraction}.")
        if self.n_tokens < self.batch_size:
            raise ValueError(f"n_tokens={self.n_tokens} is less than one batch ({self.batch_size}).")

    @property
    def hook_name(self) -> str:
        return f"blocks.{self.layer}.{self.hook_point}"

    @property
    def n_steps(self) -> int:
        return self.n_tokens // self.batch_size


def random_batches(
    cache: ActivationCache, batch_size: int, seed: int, start_step: int, dim_scale: torch.Tensor | None = None
) -> Iterator[torch.Tensor]:
    """Endless random batches without replacement within each pass over the cache.

    Batch ``i`` depends only on ``(seed, i)``, so a resumed run continues the
    sequence it would have seen. With ``dim_scale`` each batch is divided by it.

    Args:
        cache: the activation cache.
        batch_size: rows per batch.
        seed: the run's seed.
        start_step: the first batch's index (a resumed run's step).
        dim_scale: per-dimension divisors, or ``None``.

    Example:
        >>> batch = next(random_batches(cache, 4096, seed=0, start_step=0))  # doctest: +SKIP
    """
    n = len(cache)
    per_epoch = n // batch_size
    step = start_step
    order_epoch, order = None, None
    while True:
        epoch, offset = divmod(step, per_epoch)
        if epoch != order_epoch:  # one permutation per pass, not per batch
            order_epoch, order = epoch, np.random.default_rng([seed, epoch]).permutation(n)
        batch = cache.batch(order[offset * batch_size : (offset + 1) * batch_size])
        yield batch if dim_scale is None else batch / dim_scale
        step += 1


def train_sae(
    cfg: SAETrainingConfig,
    *,
    out_dir: str | Path,
    model=None,
    model_name: str | None = None,
    texts=None,
    cache_dir: str | Path | None = None,
    work_dir: str | Path | None = None,
):
    """Train an SAE and save it (inference form, SAELens format) to ``out_dir``.

    Args:
        cfg: the run's settings.
        out_dir: the SAELens folder to write (``cfg.json``, ``sae_weights.safetensors``)
            plus ``training.json`` (settings, tokens, wall time, tokens/s).
        model: a loaded HookedTransformer; otherwise ``model_name`` is loaded with
            :func:`sas_lens.load_model` (only if the activation cache is incomplete).
        model_name: recorded in the SAE's metadata; defaults to ``model.cfg.model_name``.
        texts: text files, folders or ``hf:`` ids to take activations from.
        cache_dir: where the activation cache lives (default: ``<work_dir>/activations``).
        work_dir: checkpoints and cache (default: ``<out_dir>.work``); rerunning the
            same command resumes from the latest checkpoint there.

    Returns:
        The trained SAE (a JumpReLU ``sae_lens.SAE``).

    Example:
        >>> sae = train_sae(SAETrainingConfig(layer=9, d_sae=4096), out_dir="my_sae", texts="corpus/")  # doctest: +SKIP
    """
    from sae_lens import SAE

    out_dir = Path(out_dir)
    work_dir = Path(work_dir) if work_dir else out_dir.with_name(out_dir.name + ".work")
    started = time.perf_counter()
    cache = _activation_cache(cfg, Path(cache_dir) if cache_dir else work_dir / "activations", model, model_name, texts)
    caching_s = time.perf_counter() - started
    dim_scale = _dim_scale(cache, cfg, work_dir) if cfg.balance_dims else None
    model_name = model_name or (model.cfg.model_name if model is not None else cache.spec.model_name)

    sae = _new_training_sae(cfg, cache.spec.d_model, model_name)
    trainer = _trainer(cfg, sae, cache, work_dir / "checkpoints", dim_scale)
    steps_before = trainer.n_training_steps
    train_started = time.perf_counter()
    trainer.fit()
    train_s = time.perf_counter() - train_started
    _calibrate_threshold(sae, cache, cfg, dim_scale)

    steps_run = trainer.n_training_steps - steps_before
    record = {
        "settings": asdict(cfg),
        "model_name": model_name,
        "hook_name": cfg.hook_name,
        "sources": list(cache.spec.sources),
        "distinct_tokens": len(cache),
        "tokens_seen": trainer.n_training_samples,
        "activation_caching_s": round(caching_s, 1),
        "training_s_this_run": round(train_s, 1),
        "training_tokens_per_s": round(steps_run * cfg.batch_size / train_s, 1) if steps_run else None,
        "device": cfg.device,
        "torch_threads": torch.get_num_threads(),
    }
    _save_atomically(sae, out_dir, dim_scale, record)
    return SAE.load_from_disk(out_dir, device=cfg.device)


def _activation_cache(cfg: SAETrainingConfig, cache_dir: Path, model, model_name: str | None, texts) -> ActivationCache:
    """The complete cache in ``cache_dir``, or one built (or finished) there from ``texts``."""
    from sas_lens.loading.models import load_model

    cache = _existing_complete_cache(cache_dir, cfg.n_tokens)
    if cache is not None:
        return cache
    if texts is None:
        raise ValueError("No complete activation cache yet, so texts= is needed to build one.")
    if model is None:
        model = load_model(model_name)
    build_activation_cache(
        model, cfg.hook_name, texts, cache_dir, cfg.n_tokens, context_size=cfg.context_size, model_name=model_name
    )
    return ActivationCache(cache_dir, max_rows=cfg.n_tokens)  # the last batch can overshoot n_tokens


def _new_training_sae(cfg: SAETrainingConfig, d_model: int, model_name: str | None) -> FastBatchTopKTrainingSAE:
    from sae_lens import BatchTopKTrainingSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    from sas_lens.loading.models import DEFAULT_MODEL

    sae_cfg = BatchTopKTrainingSAEConfig(
        d_in=d_model,
        d_sae=cfg.d_sae,
        k=cfg.k,
        aux_loss_coefficient=cfg.aux_loss_coefficient,
        # Unit-norm decoder rows (as in OpenAI's TopK recipe). SAELens's default of 0.1
        # makes each Adam step a ~10x larger relative change: in a 16k trial most
        # latents' decoder norms stayed at 0.1 while a few grew to 0.6, and with
        # pre-activations scaled by decoder norm those few won every top-k (46% dead
        # after 107 steps).
        decoder_init_norm=cfg.decoder_init_norm,
        normalize_activations="expected_average_only_in",
        device=cfg.device,
        metadata=SAEMetadata(
            model_name=model_name or DEFAULT_MODEL,
            hook_name=cfg.hook_name,
            context_size=cfg.context_size,
            prepend_bos=True,
        ),
    )
    with torch.random.fork_rng():  # seeded initialisation without touching the caller's RNG
        torch.manual_seed(cfg.seed)
        return FastBatchTopKTrainingSAE(sae_cfg)


def _trainer(cfg: SAETrainingConfig, sae, cache: ActivationCache, checkpoints: Path, dim_scale):
    """SAELens's trainer for ``sae`` on random batches of ``cache``, resumed from the latest checkpoint if any."""
    from sae_lens.config import SAETrainerConfig
    from sae_lens.training.sae_trainer import SAETrainer

    trainer_cfg = SAETrainerConfig(
        total_training_samples=cfg.n_steps * cfg.batch_size,
        train_batch_size_samples=cfg.batch_size,
        lr=cfg.lr,
        lr_warm_up_steps=cfg.warmup_steps,
        lr_decay_steps=int(cfg.decay_fraction * cfg.n_steps),
        lr_end=cfg.lr / 10,
        device=cfg.device,
        dead_feature_window=cfg.dead_steps,
        feature_sampling_window=max(cfg.n_steps // 10, 1),
        n_checkpoints=cfg.n_checkpoints,
        checkpoint_path=str(checkpoints),
        n_batches_for_norm_estimate=max(1, min(100, len(cache) // cfg.batch_size)),
    )
    latest = latest_checkpoint(checkpoints)
    trainer = SAETrainer(cfg=trainer_cfg, sae=sae, data_provider=iter(()))
    if latest is not None:
        trainer.load_trainer_state(latest)
        sae.load_weights_from_checkpoint(latest)
        # SAELens saves a checkpoint before counting the step it follows; the sample
        # count is right, so the step count is taken from it.
        trainer.n_training_steps = trainer.n_training_samples // cfg.batch_size
        print(f"sas_lens: resuming from {latest} (step {trainer.n_training_steps} of {cfg.n_steps})")
    else:
        # Estimated here from its own batches (fit() would draw them from the training
        # stream), so that training batch i is the same whether or not a run resumed.
        trainer.activation_scaler.estimate_scaling_factor(
            d_in=cache.spec.d_model,
            data_provider=random_batches(cache, cfg.batch_size, cfg.seed + 1, 0, dim_scale),
            n_batches_for_norm_estimate=trainer_cfg.n_batches_for_norm_estimate,
        )
        if cfg.b_dec_init == "mean":
            _init_b_dec_to_mean(sae, cache, trainer.activation_scaler.scaling_factor, cfg, dim_scale)
    # SAELens lists checkpoint thresholds from 0; drop those a resumed run has passed.
    trainer.checkpoint_thresholds = [t for t in trainer.checkpoint_thresholds if t >= trainer.n_training_samples]
    trainer.data_provider = random_batches(cache, cfg.batch_size, cfg.seed, trainer.n_training_steps, dim_scale)
    return trainer


def _save_atomically(sae, out_dir: Path, dim_scale, record: dict) -> None:
    """Write the inference SAE (dimension scale folded in) and ``training.json``; ``out_dir`` appears whole."""
    from sas_lens.loading.files import atomic_folder

    with atomic_folder(out_dir) as staging:
        sae.save_inference_model(staging)
        if dim_scale is not None:
            _fold_dim_scale(staging, dim_scale)
        (staging / "training.json").write_text(json.dumps(record, indent=2))


# Dimensions whose variance exceeds this multiple of the median are scaled down
# to it. On Gemma 3 270M layer 9 the 99th percentile is 11x the median, so the
# bulk of the distribution is left alone and only 10 outliers are touched.
VARIANCE_CAP_OVER_MEDIAN = 10.0


def _dim_scale(cache: ActivationCache, cfg: SAETrainingConfig, work_dir: Path) -> torch.Tensor:
    """Per-dimension divisors that cap each dimension's variance at 10x the median variance.

    Gemma 3 270M's layer-9 residual has one dimension carrying 64% of the centred
    variance (2,200x the median dimension's; the top 20 carry 74%). Trained on raw
    residuals, the SAE's squared error is mostly that one coordinate, and most
    latents die. The divisors are folded into the saved weights, so the SAE reads
    and writes raw residuals. Saved in ``work_dir`` so a resumed run uses the same ones.
    """
    path = work_dir / "dim_scale.pt"
    if path.exists():
        return torch.load(path)
    batches = random_batches(cache, cfg.batch_size, cfg.seed + 3, 0)
    sample = torch.cat([next(batches) for _ in range(max(1, min(10, len(cache) // cfg.batch_size)))]).double()
    var = sample.var(0)
    cap = VARIANCE_CAP_OVER_MEDIAN * var.median()
    scale = (var / cap).clamp(min=1).sqrt().float()
    work_dir.mkdir(parents=True, exist_ok=True)
    torch.save(scale, path)
    return scale


def _fold_dim_scale(sae_dir: Path, dim_scale: torch.Tensor) -> None:
    """Rewrite a saved SAE trained on ``x / s`` so that it reads and writes ``x``.

    encode: ``(x/s - b_dec) @ W_enc = (x - b_dec*s) @ (W_enc / s[:, None])``;
    decode: ``(z @ W_dec + b_dec) * s = z @ (W_dec * s) + b_dec*s``.
    """
    from safetensors.torch import load_file, save_file

    path = sae_dir / "sae_weights.safetensors"
    weights = load_file(path)
    weights["W_enc"] = weights["W_enc"] / dim_scale[:, None]
    weights["W_dec"] = weights["W_dec"] * dim_scale
    weights["b_dec"] = weights["b_dec"] * dim_scale
    save_file({k: v.contiguous() for k, v in weights.items()}, path)


@torch.no_grad()
def _init_b_dec_to_mean(
    sae, cache: ActivationCache, scaling_factor: float, cfg: SAETrainingConfig, dim_scale: torch.Tensor | None
) -> None:
    """Start the decoder bias at the (scaled) mean activation.

    Gemma 3 270M's layer-9 residuals share one large mean direction (93% of their
    squared norm). With ``b_dec = 0`` every latent's pre-activation is dominated by
    its encoder's overlap with that mean, and the latents facing away from it never
    fire: in a trial run 74% were dead after 100 steps.
    """
    n_batches = max(1, min(25, len(cache) // cfg.batch_size))
    batches = random_batches(cache, cfg.batch_size, cfg.seed + 2, 0, dim_scale)
    mean = sum(next(batches).double().mean(0) for _ in range(n_batches)) / n_batches
    sae.b_dec.copy_((mean * scaling_factor).to(sae.b_dec.dtype))


@torch.no_grad()
def _calibrate_threshold(sae, cache: ActivationCache, cfg: SAETrainingConfig, dim_scale, n_batches: int = 10) -> None:
    """Set the threshold the saved JumpReLU SAE will use to the one BatchTopK ends training with.

    SAELens tracks it as a moving average (rate 0.01) of each batch's smallest
    selected activation, started at 0; after a few hundred steps it still lags
    behind, and the saved SAE fires on far more than ``k`` latents per token (262
    instead of 64 after 120 steps, in a trial). Here it is the mean of that
    smallest selected activation over fresh batches of the finished SAE. Runs after
    ``fit()``, which has folded the norm scaling into the weights, so the batches
    are raw (but for ``dim_scale``).
    """
    batches = random_batches(cache, cfg.batch_size, cfg.seed + 4, 0, dim_scale)
    smallest = []
    for _ in range(max(1, min(n_batches, len(cache) // cfg.batch_size))):
        acts, _ = sae.encode_with_hidden_pre(next(batches).to(cfg.device))
        smallest.append(acts[acts > 0].min().double())
    sae.topk_threshold = torch.stack(smallest).mean()


def latest_checkpoint(checkpoints: Path) -> Path | None:
    """The checkpoint with the most training samples whose files are all there.

    Args:
        checkpoints: the run's checkpoint folder.

    Example:
        >>> latest_checkpoint(Path("my_sae.work/checkpoints"))  # doctest: +SKIP
    """
    if not checkpoints.is_dir():
        return None
    complete = [
        p
        for p in checkpoints.iterdir()
        if p.name.isdigit()
        and (p / "trainer_state.pt").exists()
        and (p / "sae_weights.safetensors").exists()
        and (p / "activation_scaler.json").exists()
    ]
    return max(complete, key=lambda p: int(p.name), default=None)


def _existing_complete_cache(folder: Path, n_tokens: int) -> ActivationCache | None:
    if not (folder / "meta.json").exists():
        return None
    cache = ActivationCache(folder, max_rows=n_tokens)
    return cache if len(cache) >= n_tokens else None
