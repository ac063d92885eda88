"""The original topic-alignment reconstructions as steering edits: keys of ``steer``/``generate`` like a vector.

Three modes of the original method (``steering_utils.py`` of "Enabling Sparse Autoencoders for Topic
Alignment"), each a reconstruction of the residual with the SAE's error dropped; strength λ ∈ [0, 1]
blends ``(1 − λ)·a + λ·reconstruction(a)``, so the edit is ``δ(a) = λ·(reconstruction(a) − a)``:

- ``swap``: the pre-activations ``z = W_encᵀ(a − b_dec) + b_enc`` times the scores; the SAE's own
  activation applied to ``z ⊙ score`` selects latents, and the *pre-activations* there are decoded, so a
  topic latent below its threshold (or outside the SAE's own top k) is brought in. What "the SAE's own
  activation" selects here, per architecture: the ``k`` largest positive products for TopK/BatchTopK (its
  activation is a top-k), and for JumpReLU and ReLU SAEs too (the original used a TopK SAE; its ``k`` is
  kept as the cap, and a product must be positive, as the original's mask requires);
- ``clamp``: the ``n`` most aligned latents' codes raised by a constant (the original's 10), decoded;
- ``weight``: the SAE's activation applied to ``z ⊙ score`` (JumpReLU: above each threshold; ReLU: positive;
  TopK: the top k), decoded.

Example:
    >>> with sl.steer(model, {topic.swap(4): 1.0}, sae=sae):
    ...     logits = model(tokens)
    >>> logits.shape[:2] == tokens.shape
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from sas_lens.loading.saes import check_hook_exists
from sas_lens.steering.edits import SAESet
from sas_lens.topic.alignment import TopicAlignment
from sas_lens.typing import Tensor

MODES = ("swap", "clamp", "weight")


@dataclass(frozen=True, eq=False)
class TopicSwap:
    """One of the original reconstructions of a topic alignment, usable as a key of ``steer``/``generate``.

    Attributes:
        alignment: the topic's latent scores.
        mode: ``"swap"``, ``"clamp"`` or ``"weight"`` (see the module docstring).
        k: latents kept per token (swap) or clamped (clamp); unused by weight.
        value: what clamp adds to the clamped latents' codes.
    """

    alignment: TopicAlignment
    mode: str
    k: int
    value: float = 10.0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}.")

    @property
    def name(self) -> str:
        detail = {"swap": f"k={self.k}", "clamp": f"top {self.k} +{self.value:g}", "weight": "all"}[self.mode]
        return f"{self.alignment.name} ({self.mode}, {detail})"

    @property
    def hook_name(self) -> str | None:
        return self.alignment.metadata.get("hook_name")

    @property
    def metadata(self) -> dict[str, Any]:
        return self.alignment.metadata

    def edit(self, model, strength: float, saes: SAESet) -> "SwapEdit":
        """Check the blend and the SAE, and return the edit ``λ·(reconstruction(a) − a)``."""
        if not 0 <= strength <= 1:
            raise ValueError(
                f"A topic {self.mode} blends (1 − λ)·a + λ·{self.mode}(a); give λ in [0, 1], got {strength}."
            )
        if self.hook_name is None:
            raise ValueError(f"The topic alignment {self.alignment.name!r} records no hook.")
        check_hook_exists(model, self.hook_name)
        sae = saes.find(f"The topic {self.mode} {self.name!r}", self.hook_name, self.alignment.sae_identity, model)
        return SwapEdit(
            self.hook_name,
            sae,
            self.alignment.scores.to(model.cfg.device),
            self.mode,
            self.k,
            self.value,
            float(strength),
        )


@dataclass(frozen=True, eq=False)
class SwapEdit:
    """``δ(a) = λ·(reconstruction(a) − a)`` through one SAE (an :class:`~sas_lens.steering.edits.Edit`)."""

    hook_name: str
    sae: Any
    scores: Tensor
    mode: str
    k: int
    value: float
    lam: float

    def delta(self, a: Tensor) -> Tensor:
        if self.lam == 0:
            return torch.zeros_like(a)
        x, scores = a.to(self.sae.dtype), self.scores.to(self.sae.dtype)
        if self.mode == "swap":
            rebuilt = swap_reconstruction(self.sae, x, scores, self.k)
        elif self.mode == "clamp":
            rebuilt = clamp_reconstruction(self.sae, x, scores, self.k, self.value)
        else:
            rebuilt = weight_reconstruction(self.sae, x, scores)
        return self.lam * (rebuilt.float() - a)

    def merge(self, other) -> None:
        return None  # two reconstructions do not compose: each is computed from the unsteered residual


def pre_activations(sae, a: Tensor) -> Tensor:
    """``z = W_encᵀ(a − b_dec) + b_enc`` (after the SAE's input normalisation), before the activation.

    Args:
        sae: the SAE.
        a: residuals ``[..., d_model]`` in the SAE's dtype.

    Example:
        >>> pre_activations(sae, acts).shape[-1] == sae.cfg.d_sae
        True
    """
    return sae.process_sae_in(a) @ sae.W_enc + sae.b_enc


def swap_reconstruction(sae, a: Tensor, scores: Tensor, k: int) -> Tensor:
    """The original "swap": the pre-activations of the ``k`` latents of largest positive ``z ⊙ score``, decoded.

    Args:
        sae: the SAE.
        a: residuals ``[..., d_model]`` in the SAE's dtype.
        scores: the topic's latent scores.
        k: latents kept per token (the SAE's own top-k for a TopK SAE).

    Example:
        >>> swap_reconstruction(sae, acts, topic.scores, 4).shape == acts.shape
        True
    """
    pre = pre_activations(sae, a)
    product = pre * scores
    top = product.topk(min(k, product.shape[-1]), dim=-1)
    mask = torch.zeros_like(product).scatter(-1, top.indices, (top.values > 0).to(product.dtype))
    return sae.decode(pre * mask)


def clamp_reconstruction(sae, a: Tensor, scores: Tensor, n_latents: int = 5, value: float = 10.0) -> Tensor:
    """The original "clamp": the codes ``f(a)`` with the ``n_latents`` best-scored latents raised by ``value``,
    decoded (the SAE's error dropped).

    Args:
        sae: the SAE.
        a: residuals in the SAE's dtype.
        scores: the topic's latent scores.
        n_latents: how many of the best-scored latents are raised.
        value: added to their codes.

    Example:
        >>> clamped = clamp_reconstruction(sae, acts, topic.scores, value=0.0)   # raised by 0: the reconstruction
        >>> torch.allclose(clamped, sae.decode(sae.encode(acts)), atol=1e-5)
        True
    """
    codes = sae.encode(a)
    top = scores.topk(n_latents).indices
    return sae.decode(
        codes.index_add(
            -1, top, torch.full((*codes.shape[:-1], len(top)), value, dtype=codes.dtype, device=codes.device)
        )
    )


def weight_reconstruction(sae, a: Tensor, scores: Tensor) -> Tensor:
    """The original "weight": the SAE's own activation applied to ``z ⊙ score``, decoded.

    Args:
        sae: the SAE.
        a: residuals in the SAE's dtype.
        scores: the topic's latent scores.

    Example:
        >>> weighted = weight_reconstruction(sae, acts, torch.ones(sae.cfg.d_sae))   # every score 1: the reconstruction
        >>> torch.allclose(weighted, sae.decode(sae.encode(acts)), atol=1e-5)
        True
    """
    product = pre_activations(sae, a) * scores
    architecture = sae.cfg.architecture()
    if architecture == "jumprelu":
        weighted = product * (product > sae.threshold)
    elif architecture == "topk":
        k = int(getattr(sae.cfg, "k", product.shape[-1]))
        top = product.topk(min(k, product.shape[-1]), dim=-1)
        weighted = torch.zeros_like(product).scatter(-1, top.indices, top.values.relu())
    else:
        weighted = product.relu()
    return sae.decode(weighted)
