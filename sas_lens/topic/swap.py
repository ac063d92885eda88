"""The original topic-alignment "swap" as a steering edit: a key of ``steer``/``generate`` like a vector.

Per token, keep the ``k`` latents with the largest ``pre-activation × score`` and decode
them, dropping the SAE's error; strength λ ∈ [0, 1] blends ``(1 − λ)·a + λ·swap(a)``, so the
edit is ``δ(a) = λ·(swap(a) − a)``.

Example:
    >>> with sl.steer(model, {alignment.swap(32): 1.0}, sae=sae):   # doctest: +SKIP
    ...     logits = model(tokens)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from sas_lens.loading.saes import check_hook_exists
from sas_lens.steering.edits import SAESet
from sas_lens.topic.alignment import TopicAlignment
from sas_lens.typing import Tensor


@dataclass(frozen=True, eq=False)
class TopicSwap:
    """The original "swap" edit of a topic alignment, usable as a key of ``steer``/``generate``."""

    alignment: TopicAlignment
    k: int

    @property
    def name(self) -> str:
        return f"{self.alignment.name} (swap, k={self.k})"

    @property
    def hook_name(self) -> str | None:
        return self.alignment.metadata.get("hook_name")

    @property
    def metadata(self) -> dict[str, Any]:
        return self.alignment.metadata

    def edit(self, model, strength: float, saes: SAESet) -> "SwapEdit":
        """Check the blend and the SAE, and return the edit ``λ·(swap(a) − a)``."""
        if not 0 <= strength <= 1:
            raise ValueError(f"A topic swap blends (1 − λ)·a + λ·swap(a); give λ in [0, 1], got {strength}.")
        if self.hook_name is None:
            raise ValueError(f"The topic alignment {self.alignment.name!r} records no hook.")
        check_hook_exists(model, self.hook_name)
        sae = saes.find(f"The topic swap {self.name!r}", self.hook_name, self.alignment.sae_identity, model)
        return SwapEdit(self.hook_name, sae, self.alignment.scores.to(model.cfg.device), self.k, float(strength))


@dataclass(frozen=True, eq=False)
class SwapEdit:
    """``δ(a) = λ·(swap(a) − a)`` through one SAE (an :class:`~sas_lens.steering.edits.Edit`)."""

    hook_name: str
    sae: Any
    scores: Tensor
    k: int
    lam: float

    def delta(self, a: Tensor) -> Tensor:
        if self.lam == 0:
            return torch.zeros_like(a)
        swapped = swap_reconstruction(self.sae, a.to(self.sae.dtype), self.scores.to(self.sae.dtype), self.k)
        return self.lam * (swapped.float() - a)

    def merge(self, other) -> None:
        return None  # two swaps do not compose: each is computed from the unsteered residual


def swap_reconstruction(sae, a: Tensor, scores: Tensor, k: int) -> Tensor:
    """The original procedure on residuals ``a``: top-k of ``pre ⊙ score`` per token, decoded, error dropped.

    Args:
        sae: the SAE.
        a: residuals ``[..., d_model]`` in the SAE's dtype.
        scores: the topic's latent scores.
        k: latents kept per token.

    Example:
        >>> swapped = swap_reconstruction(sae, residual, topic.scores, 32)  # doctest: +SKIP
    """
    codes, pre = _encode_with_pre(sae, a)
    keep = (pre * scores).topk(k, dim=-1).indices
    kept = torch.zeros_like(codes).scatter(-1, keep, codes.gather(-1, keep))
    return sae.decode(kept)


def _encode_with_pre(sae, a: Tensor) -> tuple[Tensor, Tensor]:
    sae_in = sae.process_sae_in(a)
    pre = sae_in @ sae.W_enc + sae.b_enc
    return sae.encode(a), pre
