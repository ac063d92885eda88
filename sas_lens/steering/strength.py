"""One strength scale: how big an edit is, how far it moves the model, and the λ that reaches a given cost.

λ means SAE-code units for an SAS vector and residual units for a dense one, so equal λ is
not equal effect. Methods compare at matched cost instead: the λ at which each moves the
next-token distribution equally far from the unsteered model (mean KL divergence over the
tokens of reference texts), found by :func:`strength_for_kl`.

Example:
    >>> texts = ["the movie was", "i love the music"]
    >>> round(edit_norm(model, dense, texts) / float(dense.vector.norm()), 4)   # dense: |v| at every token
    1.0
    >>> lam = strength_for_kl(model, vec, 0.1, texts, sae=sae)
    >>> round(next_token_kl(model, {vec: lam}, texts, sae=sae), 1)
    0.1
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from sas_lens.errors import StrengthNotReachedError
from sas_lens.loading.activations import activations_at
from sas_lens.loading.prompts import tokenize_with_spans
from sas_lens.steering.edits import SAESet, merge_edits, total_delta
from sas_lens.steering.engine import build_hooks


def _tokens(model, texts: list[str]):
    """Left-padded tokens of ``texts`` and the mask of their text tokens (BOS and padding left out)."""
    if not texts:
        raise ValueError("Give at least one reference text.")
    return tokenize_with_spans(model.tokenizer, texts, [(0, len(t)) for t in texts])


@torch.no_grad()
def edit_norm(model, key, texts: list[str], *, sae=None, lam: float = 1.0) -> float:
    """Mean L2 norm of the residual edit ``δ(a)`` that ``key`` makes at strength ``lam`` over the tokens of ``texts``.

    Args:
        model: a HookedTransformer.
        key: anything steering takes (SAS or dense vector, topic swap).
        texts: reference texts; every text token is one edit.
        sae: the SAE(s) an SAS vector needs.
        lam: the strength.

    Example:
        >>> round(edit_norm(model, dense, ["the movie was"], lam=2.0) / float(dense.vector.norm()), 4)   # 2·|v|
        2.0
    """
    tokens, attention, read = _tokens(model, texts)
    edits = merge_edits([key.edit(model, float(lam), SAESet(sae))])
    ((hook, group),) = edits.items()
    a = activations_at(model, hook, tokens, attention).float()
    return float(total_delta(group, a)[read.to(a.device)].norm(dim=-1).mean())


def normalised(model, vector, texts: list[str], *, norm: float, sae=None):
    """``vector`` scaled so that its mean residual edit at λ = 1 on ``texts`` has L2 norm ``norm``.

    CAA's normalisation (every behaviour's vector to one norm per layer), for any vector kind; for SAS
    through the SAE's σ the edit is not linear in λ, so only λ = 1 is guaranteed to have that size.

    Args:
        model: a HookedTransformer.
        vector: an SAS or dense vector (anything with ``* float``).
        texts: reference texts.
        norm: the mean edit norm wanted.
        sae: the SAE(s) an SAS vector needs.

    Raises:
        ValueError: the vector makes no edit on ``texts`` (nothing to scale), or ``norm`` is not positive.

    Example:
        >>> unit = normalised(model, vec, ["The weather this weekend was"], norm=1.0, sae=sae)
    """
    if not norm > 0 or not math.isfinite(norm):
        raise ValueError(f"norm must be a positive number, got {norm}.")
    size = edit_norm(model, vector, texts, sae=sae)
    if size == 0:
        raise ValueError(
            f"{getattr(vector, 'name', vector)!r} changes nothing on these texts at λ = 1 (its edit "
            "is gated off or empty), so it cannot be scaled to a norm."
        )
    return vector * (norm / size)


@torch.no_grad()
def next_token_kl(model, steering: Mapping, texts: list[str], *, sae=None) -> float:
    """Mean KL(unsteered ‖ steered) of the next-token distributions over the tokens of ``texts``.

    Args:
        model: a HookedTransformer.
        steering: ``{key: λ}``.
        texts: reference texts.
        sae: the SAE(s) the SAS vectors need.

    Example:
        >>> next_token_kl(model, {vec: 4.0}, ["the movie was"], sae=sae) > 0
        True
    """
    tokens, attention, read = _tokens(model, texts)
    device = model.cfg.device
    tokens, attention, read = tokens.to(device), attention.to(device), read.to(device)
    clean = model(tokens, attention_mask=attention).float().log_softmax(-1)[read]
    hooks, _ = build_hooks(model, steering, sae=sae)
    with model.hooks(fwd_hooks=hooks):
        steered = model(tokens, attention_mask=attention).float().log_softmax(-1)[read]
    return float((clean.exp() * (clean - steered)).sum(-1).mean())


def strength_for_kl(
    model,
    key,
    target: float,
    texts: list[str],
    *,
    sae=None,
    sign: float = 1.0,
    high: float = 64.0,
    rtol: float = 0.05,
    max_steps: int = 20,
) -> float:
    """The λ (with ``sign``'s sign) at which ``key`` moves the model by ``target`` mean KL on ``texts``.

    Bisection on ``|λ|`` in ``(0, high]``, assuming the KL grows with ``|λ|`` (it does for a single
    vector until the model breaks down); stops within ``rtol`` of the target.

    Args:
        model: a HookedTransformer.
        key: the vector (or other steering key).
        target: the mean KL divergence to reach (nats), e.g. 0.1.
        texts: reference texts.
        sae: the SAE(s) an SAS vector needs.
        sign: +1 or −1, the direction of λ.
        high: the largest ``|λ|`` tried.
        rtol: relative tolerance on the KL.
        max_steps: bisection steps at most.

    Raises:
        ValueError: ``target`` is not positive.
        StrengthNotReachedError: ``|λ| = high`` does not reach it (the message says how far it gets).

    Example:
        >>> lam_sas = strength_for_kl(model, vec, 0.1, texts, sae=sae)
        >>> lam_dense = strength_for_kl(model, dense, 0.1, texts)
    """
    if not target > 0 or not math.isfinite(target):
        raise ValueError(f"target must be a positive KL divergence, got {target}.")
    sign = math.copysign(1.0, sign)

    def kl(lam: float) -> float:
        return next_token_kl(model, {key: sign * lam}, texts, sae=sae)

    reached = kl(high)
    if reached < target:
        raise StrengthNotReachedError(
            f"{getattr(key, 'name', key)!r} reaches a KL of {reached:.3g} at λ = {sign * high:g}, below the target "
            f"{target:g}; raise high= or lower the target."
        )
    low = 0.0
    lam = high
    for _ in range(max_steps):
        lam = (low + high) / 2
        value = kl(lam)
        if abs(value - target) <= rtol * target:
            break
        low, high = (lam, high) if value < target else (low, lam)
    return sign * lam
