"""The hook engine: steering a model through TransformerLens hooks that cannot leak.

``steer(model, {key: λ}, sae=...)`` asks every key for its edit (the protocol of
:mod:`sas_lens.steering.edits`: SAS and dense vectors, a topic swap, anything with
``.edit(model, λ, saes)``), merges the edits that compose (SAS vectors on one SAE),
and adds, at each hook, the sum of the edits computed from the unsteered residual,
on the positions a :class:`PositionPolicy` selects. Every key is checked before any
hook exists, so a refused steering attaches nothing.

Example:
    >>> with sl.steer(model, {vec: 4.0, dense: -2.0}, sae=sae):    # doctest: +SKIP
    ...     logits = model(tokens)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch

from sas_lens.steering.conditions import Condition, ConditionGate, check_condition_hooks
from sas_lens.steering.edits import Edit, SAESet, Steerable, merge_edits, total_delta

POSITIONS = ("all", "prompt", "generated")


class PositionPolicy:
    """Which token positions a steering hook edits, kept consistent under the KV cache.

    ``"all"``: every position. ``"prompt"``: the positions of the first forward pass
    of a prompt. ``"generated"``: positions after the prompt — the one-token steps of
    cached generation, or the positions past the prompt when the whole sequence is
    re-run. A boolean ``[batch, pos]`` mask: those positions of a full pass.
    A pass no longer than the recorded prompt starts a new prompt. With a ``condition``
    (:class:`~sas_lens.steering.conditions.Condition`), edits are kept only where it fires too.
    """

    def __init__(self, positions: str | torch.Tensor = "all", condition: Condition | None = None):
        if isinstance(positions, torch.Tensor):
            if positions.dtype != torch.bool or positions.ndim != 2:
                raise ValueError("A positions mask must be a boolean [batch, pos] tensor.")
        elif positions not in POSITIONS:
            raise ValueError(f"positions must be one of {POSITIONS} or a boolean mask, got {positions!r}.")
        self.positions = positions
        self.prompt_len: int | None = None
        self.gate = ConditionGate(condition) if condition is not None else None

    def reset(self, attention_mask: torch.Tensor | None = None) -> None:
        """Start a new prompt; ``attention_mask`` (left padding) keeps padding out of per-sequence conditions."""
        self.prompt_len = None
        if self.gate is not None:
            self.gate.reset(attention_mask)

    def mask(self, batch: int, n_pos: int, device) -> torch.Tensor | None:
        """Boolean ``[batch, pos]`` mask of positions to edit (``None``: all of them)."""
        one_token_step = n_pos == 1 and self.prompt_len is not None
        if not one_token_step and (self.prompt_len is None or n_pos <= self.prompt_len):
            self.prompt_len = n_pos  # a fresh prompt
        if isinstance(self.positions, torch.Tensor):
            if one_token_step:
                return torch.zeros(batch, 1, dtype=torch.bool, device=device)
            mask = torch.zeros(batch, n_pos, dtype=torch.bool, device=device)
            width = min(n_pos, self.positions.shape[1])
            mask[:, :width] = self.positions[:, :width].to(device)
            return mask
        if self.positions == "all":
            return None
        index = torch.arange(n_pos, device=device)
        if one_token_step:
            generated = torch.ones(n_pos, dtype=torch.bool, device=device)
        else:
            generated = index >= self.prompt_len
        keep = generated if self.positions == "generated" else ~generated
        return keep[None, :].expand(batch, n_pos)


def build_hooks(model, steering: Mapping, *, sae=None, positions: str | torch.Tensor | PositionPolicy = "all",
                when: Condition | None = None) -> tuple[list, PositionPolicy]:
    """Check ``steering`` ({key: λ}) and return ``(fwd_hooks, policy)`` for ``model.hooks``.

    Everything is checked before any hook exists: λ finite, each key steerable and
    fitting the model, every SAS vector's own SAE among ``sae`` (one SAE, a list, or a
    dict), each SAE fitting the model and steerable through.

    Args:
        model: a HookedTransformer.
        steering: ``{key: λ}``.
        sae: the SAE(s) of the SAS vectors.
        positions: as for :func:`steer`, or a policy to share.
        when: a condition gating every edit (see :func:`steer`).

    Example:
        >>> hooks, policy = build_hooks(model, {vec: 4.0}, sae=sae)  # doctest: +SKIP
    """
    if when is not None and not isinstance(when, Condition):
        raise TypeError(f"when= takes a sl.Condition, got {type(when).__name__}.")
    policy = positions if isinstance(positions, PositionPolicy) else PositionPolicy(positions, when)
    saes = SAESet(sae)
    edits = []
    for key, lam in steering.items():
        if not isinstance(key, Steerable):
            raise TypeError(f"Steering keys must be SASVector, DenseVector or a topic swap (alignment.swap(k)) "
                            f"- anything with .edit(model, λ, saes) - got {type(key).__name__}.")
        if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not math.isfinite(lam):
            raise ValueError(f"The strength λ for {key.name!r} must be a finite number, got {lam!r}.")
        edits.append(key.edit(model, float(lam), saes))
    grouped = sorted(merge_edits(edits).items())
    if when is not None and grouped:
        check_condition_hooks(model, when, [hook for hook, _ in grouped])
    reads = when.hook_name if when is not None and grouped else None
    hooks = [(hook, _make_hook(group, policy, model.cfg.d_model, observe=hook == reads)) for hook, group in grouped]
    if reads is not None and reads not in dict(grouped):  # the condition is read at an earlier hook
        hooks.insert(0, (reads, _observer(policy)))
    return hooks, policy


def steering_hooks(model, steering: Mapping, *, sae=None, positions: str | torch.Tensor = "all",
                   when: Condition | None = None) -> list[tuple[str, object]]:
    """The ``(hook_name, fn)`` pairs that apply ``steering``, for ``model.run_with_hooks`` or ``model.hooks``.

    Args:
        model: a HookedTransformer.
        steering: ``{vector: λ}``, as for :func:`steer`.
        sae: the SAE(s) the SAS vectors were built on (one, a list, or a dict).
        positions: ``"all"``, ``"prompt"``, ``"generated"`` or a boolean ``[batch, pos]`` mask.
        when: a condition gating the steering (per token; a per-sequence one decides on each call's first pass).

    Returns:
        A plain list, to pass as ``fwd_hooks``; TransformerLens removes them after the call.

    Example:
        >>> logits = model.run_with_hooks(tokens, fwd_hooks=sl.steering_hooks(model, {vec: 4.0}, sae=sae))  # doctest: +SKIP
    """
    return build_hooks(model, steering, sae=sae, positions=positions, when=when)[0]


def _observer(policy: PositionPolicy):
    def hook_fn(acts: torch.Tensor, hook) -> None:
        policy.gate.observe(acts.float())  # reads only: returns None, so the residual is left as it is

    return hook_fn


def _make_hook(edits: list[Edit], policy: PositionPolicy, d_model: int, observe: bool = False):
    def hook_fn(acts: torch.Tensor, hook) -> torch.Tensor:
        if acts.ndim != 3 or acts.shape[-1] != d_model:
            raise ValueError(f"Steering expected a [batch, pos, {d_model}] residual at {hook.name}, got {tuple(acts.shape)}.")
        a = acts.float()
        if observe:
            policy.gate.observe(a)  # the unsteered residual, before this hook's edits
        delta = total_delta(edits, a)
        mask = policy.mask(acts.shape[0], acts.shape[1], acts.device)
        if policy.gate is not None:
            mask = policy.gate.mask() if mask is None else mask & policy.gate.mask()
        if mask is not None:
            delta = delta * mask[..., None]
        return (a + delta).to(acts.dtype)  # a new tensor: the one TransformerLens passed is left alone

    return hook_fn


@contextmanager
def steer(model, steering: Mapping, *, sae=None, positions: str | torch.Tensor = "all",
          when: Condition | None = None) -> Iterator[PositionPolicy]:
    """Steer ``model`` inside a ``with`` block; the hooks are removed on exit, even after an error.

    Args:
        model: a HookedTransformer.
        steering: ``{vector: λ}``; SAS and dense vectors (and topic swaps) may be mixed, at one or several hooks.
        sae: the SAE(s) the SAS vectors were built on (one, a list, or a dict).
        positions: ``"all"``, ``"prompt"``, ``"generated"`` or a boolean ``[batch, pos]`` mask
            (see :class:`PositionPolicy`).
        when: a :class:`~sas_lens.steering.conditions.Condition`: steer only where (``per="token"``) or
            in the sequences (``per="sequence"``) where it fires; read at its SAE's hook, which must be
            at or before every steered hook.

    Yields:
        The position policy (call ``.reset()`` between prompts when positions or a condition matter).

    Inside the block, ``model(...)``, ``model.generate`` (with or without the KV cache) and
    ``model.run_with_cache`` run steered (the cache at a steered hook holds the steered residual), and
    ``model.run_with_saes`` composes with the steering when its SAEs sit at other hooks. An SAE spliced in
    at a steered hook replaces that hook point, so steering there stops: ``steer`` warns on exit and
    removes its hook from the replaced point.

    Example:
        >>> with sl.steer(model, {vec: 4.0}, sae=sae):    # doctest: +SKIP
        ...     logits = model(tokens)
    """
    hooks, policy = build_hooks(model, steering, sae=sae, positions=positions, when=when)
    points = {name: model.hook_dict[name] for name, _ in hooks}
    try:
        with model.hooks(fwd_hooks=hooks):
            yield policy
    finally:
        # SAELens's run_with_saes/add_sae swaps the hook point at its SAE's hook for the SAE and, on reset, for a
        # new HookPoint: a steering hook on the old one stops acting there and would be left behind on it.
        replaced = [name for name, point in points.items() if model.hook_dict.get(name) is not point]
        for name in replaced:
            points[name].remove_hooks("fwd")
        if replaced:
            warnings.warn(
                f"An SAE was spliced in at {replaced} inside sl.steer (model.run_with_saes or add_sae): it replaced "
                "the hook point, so steering there stopped from that call on. To steer with the SAE's "
                "reconstruction in place of the residual, steer with vec.with_delta(False) instead.",
                stacklevel=3)
