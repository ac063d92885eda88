"""Conditional steering: let an SAE decide, per token or per sequence, whether the steering acts.

A :class:`Condition` reads an SAE's codes at its hook and fires where any of its latents is
above its threshold. ``per="token"`` gates each position by its own code; ``per="sequence"``
decides once per prompt, from the prompt's (non-padding) tokens, and keeps that decision for
every token generated after it (CAST's behaviour), whether generation re-runs the sequence or
uses the KV cache. The condition reads the residual before any steering at its hook, so a
condition at the steered hook sees what the unsteered model would.

Example:
    >>> food = sl.Condition.latents(sae, [12, 5], threshold=0.5, per="sequence")
    >>> out = sl.generate(model, prompts, steering={vec: 4.0}, sae=sae, when=food, max_new_tokens=3)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from sas_lens.loading.saes import hook_layer, sae_hook_name
from sas_lens.typing import Bool, Float, Tensor

PER = ("token", "sequence")


@dataclass(frozen=True, eq=False)
class Condition:
    """Fires where any of the latents ``ids`` of ``sae`` has a code above its threshold.

    Attributes:
        sae: the SAE whose codes are read (at its own hook).
        ids: the latent ids.
        threshold: a latent counts as firing when its code exceeds this (one value for all, or one per latent).
        per: ``"token"`` (each position on its own) or ``"sequence"`` (once per prompt).
        name: shown in summaries.
    """

    sae: object
    ids: tuple[int, ...]
    threshold: float | tuple[float, ...] = 0.0
    per: str = "token"
    name: str = "condition"

    def __post_init__(self) -> None:
        if self.per not in PER:
            raise ValueError(f"per must be one of {PER}, got {self.per!r}.")
        if not self.ids:
            raise ValueError("A condition needs at least one latent.")
        d_sae = self.sae.cfg.d_sae
        bad = [i for i in self.ids if not 0 <= i < d_sae]
        if bad:
            raise ValueError(f"Latents {bad} are outside the SAE's {d_sae} latents.")
        if isinstance(self.threshold, tuple) and len(self.threshold) != len(self.ids):
            raise ValueError(f"Give one threshold, or one per latent ({len(self.ids)}), got {len(self.threshold)}.")

    @classmethod
    def latents(
        cls, sae, ids: Sequence[int], *, threshold: float = 0.0, per: str = "token", name: str | None = None
    ) -> "Condition":
        """A condition on chosen latents: fires where the code of any of ``ids`` is above ``threshold``.

        Example:
            >>> cond = Condition.latents(sae, [12, 40], threshold=1.0)
        """
        ids = tuple(int(i) for i in ids)
        return cls(sae, ids, float(threshold), per, name or f"latents {list(ids)}")

    @classmethod
    def from_examples(
        cls,
        model,
        sae,
        on: Sequence[str],
        off: Sequence[str],
        *,
        top_k: int = 4,
        per: str = "sequence",
        name: str = "condition from examples",
    ) -> "Condition":
        """The ``top_k`` latents, each with its threshold, that fire on the most ``on`` texts beyond the share of
        ``off`` texts they fire on.

        A text fires a latent at threshold t when the latent's largest code over the text's tokens (BOS
        excluded) reaches t. For each latent the threshold is the one (among its codes on the ``on``
        texts) that maximises ``rate_on − rate_off``; the latents are ranked by that gap (the contrastive
        rule of the vector machinery, read per text). A latent that fires weakly everywhere but strongly on
        the topic is kept, with a threshold above its background.

        Args:
            model: the HookedTransformer ``sae`` reads.
            sae: the SAE.
            on: texts where steering should act (e.g. food prompts).
            off: texts where it should not.
            top_k: latents the condition watches.
            per: ``"sequence"`` (default) or ``"token"``.
            name: shown in summaries.

        Example:
            >>> cond = Condition.from_examples(model, sae, ["i love the music"], ["the market fell"])
        """
        if not on or not off:
            raise ValueError("from_examples needs texts on both sides (on= and off=).")
        on_max, off_max = text_max_codes(model, sae, on), text_max_codes(model, sae, off)
        gap, threshold = best_thresholds(on_max, off_max)
        latents = sorted(gap.topk(top_k).indices.tolist())
        # fires() asks for code > threshold: just under the chosen code, so that it counts itself
        thresholds = tuple(float(threshold[c]) * (1 - 1e-6) for c in latents)
        return cls(sae, tuple(latents), thresholds, per, name)

    @property
    def hook_name(self) -> str:
        return sae_hook_name(self.sae)

    def fires(self, a: Float[Tensor, "batch pos d_model"]) -> Bool[Tensor, "batch pos"]:
        """Where the condition fires, per position, on the residual ``a`` at its hook."""
        with torch.no_grad():
            codes = self.sae.encode(a.to(self.sae.device, self.sae.dtype))[..., list(self.ids)]
        threshold = torch.as_tensor(self.threshold, dtype=codes.dtype, device=codes.device)
        return (codes > threshold).any(dim=-1).to(a.device)

    def firing_rate(self, model, texts: Sequence[str]) -> float:
        """The share of ``texts`` on which the condition fires (any non-BOS token)."""
        peaks = text_max_codes(model, self.sae, texts)[:, list(self.ids)]  # fires somewhere ⇔ its peak does
        return float((peaks > torch.as_tensor(self.threshold, dtype=peaks.dtype)).any(dim=-1).float().mean())


def _not_bos(valid: Tensor) -> Tensor:
    """False at each row's first real token (BOS) under left padding, True elsewhere."""
    first = valid.int().argmax(dim=-1)
    keep = torch.ones_like(valid)
    keep[torch.arange(valid.shape[0]), first] = False
    return keep


def text_max_codes(model, sae, texts: Sequence[str]) -> Float[Tensor, "n_texts d_sae"]:
    """Each text's largest code of each latent over its tokens (BOS and padding excluded).

    Args:
        model: the HookedTransformer ``sae`` reads.
        sae: the SAE.
        texts: the texts.

    Example:
        >>> peaks = text_max_codes(model, sae, ["I baked bread", "I fixed the fence"])
    """
    from sas_lens.loading.activations import sae_codes
    from sas_lens.loading.prompts import tokenize_with_spans

    rows = []
    for start in range(0, len(texts), 8):
        batch = list(texts[start : start + 8])
        tokens, attention, _ = tokenize_with_spans(model.tokenizer, batch, [(0, len(t)) for t in batch])
        codes = sae_codes(model, sae, tokens, attention)
        valid = (attention.bool() & _not_bos(attention.bool())).to(codes.device)
        rows.append(codes.masked_fill(~valid[..., None], 0.0).amax(dim=1))
    return torch.cat(rows)


def best_thresholds(on_max: Tensor, off_max: Tensor) -> tuple[Tensor, Tensor]:
    """Per latent, the threshold among its peak codes on the ``on`` texts that maximises the share of ``on`` texts
    reaching it minus the share of ``off`` texts reaching it; returns ``(gap, threshold)``, each ``[d_sae]``
    (gap 0 where a latent never fires on ``on``).

    Args:
        on_max: :func:`text_max_codes` of the texts where the condition should fire.
        off_max: the same of the texts where it should not.

    Example:
        >>> gap, t = best_thresholds(torch.tensor([[3.0], [2.0]]), torch.tensor([[1.0], [3.5]]))
        >>> gap.tolist(), t.tolist()   # at 2.0: both on texts, one off text (at 3.0: one and one)
        ([0.5], [2.0])
    """
    candidates = on_max[:, None, :]  # [n_on candidates, 1, d_sae]
    rate_on = (on_max[None] >= candidates).float().mean(dim=1)  # [n_on, d_sae]
    rate_off = (off_max[None] >= candidates).float().mean(dim=1)
    gap = torch.where(on_max > 0, rate_on - rate_off, torch.full_like(rate_on, -1.0))
    best, index = gap.max(dim=0)
    return best.clamp_min(0), on_max.gather(0, index[None]).squeeze(0)


def text_firing_rates(model, sae, texts: Sequence[str]) -> Float[Tensor, " d_sae"]:
    """For each latent, the share of ``texts`` on which it fires (code > 0 on any non-BOS token).

    Args:
        model: the HookedTransformer ``sae`` reads.
        sae: the SAE.
        texts: the texts.

    Example:
        >>> rates = text_firing_rates(model, sae, ["I baked bread", "I fixed the fence"])
    """
    return (text_max_codes(model, sae, texts) > 0).float().mean(dim=0)  # codes are ≥ 0: fires ⇔ peak > 0


class ConditionGate:
    """The condition's decisions during one steered run, kept consistent under the KV cache and left padding.

    ``observe(a, fresh)`` is called with the residual at the condition's hook on every forward pass,
    ``fresh`` saying whether the pass starts a prompt (the :class:`~sas_lens.steering.engine.PositionPolicy`
    decides that, once per pass); ``mask()`` gives the positions the steering may edit in that pass. A
    per-sequence condition decides on a prompt's pass and keeps that decision for its generation steps.
    """

    def __init__(self, condition: Condition):
        self.condition = condition
        self.reset()

    def reset(self, attention_mask: Tensor | None = None) -> None:
        self.padding = None if attention_mask is None else attention_mask.bool()
        self.decision: Tensor | None = None  # [batch] for per="sequence"
        self.current: Tensor | None = None  # [batch, pos] for the current pass

    def observe(self, a: Tensor, fresh: bool) -> None:
        batch, n_pos = a.shape[:2]
        if self.condition.per == "token":
            self.current = self.condition.fires(a)
            return
        if fresh or self.decision is None or self.decision.shape[0] != batch:
            valid = torch.ones(batch, n_pos, dtype=torch.bool, device=a.device)
            if self.padding is not None and self.padding.shape == (batch, n_pos):
                valid = self.padding.to(a.device)
            valid = valid & _not_bos(valid)
            self.decision = (self.condition.fires(a) & valid).any(dim=-1)
        self.current = self.decision[:, None].expand(batch, n_pos)

    def mask(self) -> Tensor:
        if self.current is None:
            raise RuntimeError("The condition's hook did not run before the steering hook.")
        return self.current


# Where a hook fires inside its block, in the order TransformerLens runs them.
_IN_BLOCK_ORDER = (
    "hook_resid_pre",
    "ln1",
    "attn",
    "hook_attn_out",
    "hook_resid_mid",
    "ln2",
    "mlp",
    "hook_mlp_out",
    "hook_resid_post",
)


def _hook_order(hook_name: str) -> tuple[int, int] | None:
    """``(layer, place in the block)`` of a ``blocks.L.…`` hook; ``None`` for hooks outside the blocks."""
    layer = hook_layer(hook_name)
    if layer is None:
        return None
    part = hook_name.split(".")[2]
    return layer, _IN_BLOCK_ORDER.index(part) if part in _IN_BLOCK_ORDER else len(_IN_BLOCK_ORDER)


def check_condition_hooks(model, condition: Condition, steered_hooks: Sequence[str]) -> None:
    """Refuse a condition that does not fit ``model`` or is read after a hook it gates (no decision yet there).

    Args:
        model: the steered model.
        condition: the condition.
        steered_hooks: the hooks the steering edits.

    Example:
        >>> cond = Condition.latents(sae, [12], threshold=0.5)
        >>> check_condition_hooks(model, cond, ["blocks.1.hook_resid_post"])   # the same block: fine
    """
    from sas_lens.loading.saes import check_hook_exists, check_sae_fits

    check_sae_fits(condition.sae, model)
    check_hook_exists(model, condition.hook_name)
    read_at = _hook_order(condition.hook_name)
    for hook in steered_hooks:
        if read_at is not None and (order := _hook_order(hook)) is not None and order < read_at:
            raise ValueError(
                f"The condition reads {condition.hook_name}, after the steered hook {hook}: it cannot gate an edit "
                "made before it is computed. Read the condition at the steered hook or an earlier one."
            )
