"""Stand-ins for checking code paths offline: a tiny random model and random SAEs (the unit tests use them too).

Tutorials written for models that need a hub (Gemma 2 2B, Gemma Scope) run their
cells on these in CI, so that a broken API fails the run even where the real model
cannot be downloaded. The tokenizer is the embedded Gemma 3 270M's (no hub).

Example:
    >>> model = tiny_model()                                          # doctest: +SKIP
    >>> sae = sl.load_sae(save_random_sae(model, layer=1, folder="sae"), model=model)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from sas_lens.evaluation.distributed import CellWorker
from sas_lens.evaluation.store import cell_key


def tiny_model(n_layers: int = 3, d_model: int = 64, seed: int = 0):
    """A random ``HookedSAETransformer`` (Gemma-like: RMS norm, rotary, gated GELU) with Gemma 3's tokenizer.

    The tokenizer is read from the converted embedded model, so the first call on a machine converts
    the GGUF once (a few minutes, as the first ``sl.load_model()`` does); later calls take a second.

    Args:
        n_layers: blocks.
        d_model: residual width.
        seed: weight seed.

    Example:
        >>> model = tiny_model()  # doctest: +SKIP
    """
    from sae_lens import HookedSAETransformer
    from transformer_lens import HookedTransformerConfig
    from transformers import AutoTokenizer

    from sas_lens.loading.models import _convert_default_gguf, default_model_dir

    if not (default_model_dir() / "config.json").exists():
        _convert_default_gguf(default_model_dir())
    tokenizer = AutoTokenizer.from_pretrained(default_model_dir())
    cfg = HookedTransformerConfig(
        n_layers=n_layers,
        d_model=d_model,
        d_head=16,
        n_heads=4,
        d_mlp=4 * d_model,
        n_ctx=512,
        d_vocab=len(tokenizer),
        act_fn="gelu_pytorch_tanh",
        gated_mlp=True,
        normalization_type="RMS",
        positional_embedding_type="rotary",
        rotary_dim=16,
        seed=seed,
        model_name="tiny-random-gemma",
        default_prepend_bos=True,
    )
    return HookedSAETransformer(cfg, tokenizer=tokenizer).eval()


def random_sae(
    architecture: str = "jumprelu",
    *,
    d_in: int,
    d_sae: int = 48,
    hook_name: str,
    model_name: str = "tiny-random",
    seed: int = 0,
    k: int = 6,
    normalize_activations: str = "none",
):
    """A random SAELens SAE (``"jumprelu"``, ``"standard"`` or ``"topk"``) whose latents fire on random residuals.

    Args:
        architecture: the SAE's architecture.
        d_in: the residual width.
        d_sae: latents.
        hook_name: the hook it reads.
        model_name: recorded in its metadata.
        seed: weight seed.
        k: TopK's k.
        normalize_activations: SAELens's input normalisation.

    Example:
        >>> sae = random_sae("topk", d_in=64, hook_name="blocks.1.hook_resid_post")
        >>> sae.cfg.d_sae
        48
    """
    from sae_lens import (
        JumpReLUSAE,
        JumpReLUSAEConfig,
        StandardSAE,
        StandardSAEConfig,
        TopKSAE,
        TopKSAEConfig,
    )
    from sae_lens.saes.sae import SAEMetadata

    metadata = SAEMetadata(model_name=model_name, hook_name=hook_name)
    common = dict(d_in=d_in, d_sae=d_sae, metadata=metadata, device="cpu", normalize_activations=normalize_activations)
    if architecture == "jumprelu":
        sae = JumpReLUSAE(JumpReLUSAEConfig(**common))
    elif architecture == "standard":
        sae = StandardSAE(StandardSAEConfig(**common))
    elif architecture == "topk":
        sae = TopKSAE(TopKSAEConfig(k=k, **common))
    else:
        raise ValueError(f"Unknown architecture {architecture!r}; choose jumprelu, standard or topk.")
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(d_in, d_sae, generator=generator) / d_in**0.5)
        sae.W_dec.copy_(torch.randn(d_sae, d_in, generator=generator) / d_in**0.5)
        sae.b_enc.copy_(torch.randn(d_sae, generator=generator) * 0.1)
        sae.b_dec.copy_(torch.randn(d_in, generator=generator) * 0.1)
        if architecture == "jumprelu":
            sae.threshold.copy_(torch.rand(d_sae, generator=generator) * 0.2)
    return sae.eval()


def save_random_sae(model, layer: int, folder: str | Path, d_sae: int = 256, seed: int = 0) -> Path:
    """A random JumpReLU SAE on ``blocks.{layer}.hook_resid_post`` of ``model``, saved in SAELens's format.

    Args:
        model: the model it is for.
        layer: its block.
        folder: where to save it.
        d_sae: latents.
        seed: weight seed.

    Example:
        >>> sae = sl.load_sae(save_random_sae(tiny_model(), 1, "sae"))  # doctest: +SKIP
    """
    sae = random_sae(
        "jumprelu",
        d_in=model.cfg.d_model,
        d_sae=d_sae,
        hook_name=f"blocks.{layer}.hook_resid_post",
        model_name=model.cfg.model_name,
        seed=seed,
    )
    folder = Path(folder)
    sae.save_model(folder)
    return folder


class FlakyCellWorker(CellWorker):
    """A Ray evaluation actor that kills its own process on the cells listed in ``<out_dir>/die_on.json``
    (``{cell key: times}``), that many times in all across workers (each death leaves a marker file), to test
    how a run survives lost workers.

    Example:
        >>> RayExecutor(worker=FlakyCellWorker)   # doctest: +SKIP
    """

    def run(self, cell):
        plan_file = self.out_dir / "die_on.json"
        plan = json.loads(plan_file.read_text()) if plan_file.exists() else {}
        key = cell_key(*cell)
        if key in plan:
            markers = self.out_dir / "deaths"
            markers.mkdir(exist_ok=True)
            stem = hashlib.sha256(key.encode()).hexdigest()[:12]
            died = len(list(markers.glob(f"{stem}-*")))
            if died < plan[key]:
                (markers / f"{stem}-{died}").touch()
                os._exit(1)
        return super().run(cell)
