"""The hook engine: steering a model through TransformerLens hooks that cannot leak.

``steer(model, {key: λ}, sae=...)`` asks every key for its edit (the protocol of
:mod:`sas_lens.steering.edits`: SAS and dense vectors, a topic swap, anything with
``.edit(model, λ, saes)``), merges the edits that compose (SAS vectors on one SAE),
and adds, at each hook, the sum of the edits computed from the unsteered residual,
on the positions a :class:`PositionPolicy` selects. Every key is checked before any
hook exists, so a refused steering attaches nothing.

Example:
    >>> with sl.steer(model, {vec: 4.0, dense: -2.0}, sae=sae):
    ...     logits = model(tokens)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch

from sas_lens.loading.models import check_model_kind
from sas_lens.loading.saes import hook_layer, resolved_hook_name
from sas_lens.steering.conditions import Condition, ConditionGate, check_condition_hooks
from sas_lens.steering.edits import Edit, SAESet, Steerable, merge_edits, total_delta

POSITIONS = ("all", "prompt", "generated")


class PositionPolicy:
    """Which token positions a steering hook edits, kept consistent under the KV cache.

    ``"all"``: every position. ``"prompt"``: the prompt's positions. ``"generated"``: positions
    after the prompt — the one-token steps of cached generation, or the positions past the prompt
    when prompt + generated tokens are re-run. A boolean ``[batch, pos]`` mask: those positions
    of a full pass. With a ``condition`` (:class:`~sas_lens.steering.conditions.Condition`), edits
    are kept only where it fires too.

    Where the prompt ends is given when it is known: ``sl.generate`` and ``ab_probabilities``
    call ``reset(prompt_len=...)`` before each batch, and so can a caller of ``run_with_hooks``
    or ``model.generate`` (``handle.reset(prompt_len=n)``). Otherwise each forward pass is read
    at the first steered hook: a one-token pass of the same batch is a cached generation step;
    a longer pass whose first positions hold the residuals the prompt had (up to float32
    rounding) is the prompt re-run with generated tokens; any other pass is a new prompt, so
    nothing a call guessed carries over to the next prompt.
    """

    def __init__(self, positions: str | torch.Tensor = "all", condition: Condition | None = None):
        if isinstance(positions, torch.Tensor):
            if positions.dtype != torch.bool or positions.ndim != 2:
                raise ValueError("A positions mask must be a boolean [batch, pos] tensor.")
        elif positions not in POSITIONS:
            raise ValueError(f"positions must be one of {POSITIONS} or a boolean mask, got {positions!r}.")
        self.positions = positions
        self.gate = ConditionGate(condition) if condition is not None else None
        self.first_hook: str | None = None  # where each pass is read; set by build_hooks
        self.reset()

    def reset(self, attention_mask: torch.Tensor | None = None, prompt_len: int | None = None) -> None:
        """Start a new prompt of ``prompt_len`` tokens (``None``: read from the next pass).

        ``attention_mask`` (left padding) keeps padding out of per-sequence conditions.
        """
        if prompt_len is not None and prompt_len < 1:
            raise ValueError(f"prompt_len must be at least 1, got {prompt_len}.")
        self.prompt_len = prompt_len
        self.explicit = prompt_len is not None
        self.batch: int | None = None  # of the prompt's pass; None: no pass of this prompt yet
        self.step = False  # the current pass is a one-token generation step
        self.fresh = True  # the current pass starts a prompt
        self._prompt_residual: torch.Tensor | None = None
        if self.gate is not None:
            self.gate.reset(attention_mask)

    def begin_pass(self, a: torch.Tensor) -> None:
        """Read one forward pass from its float32 residual ``a`` at the first steered hook."""
        batch, n_pos = a.shape[:2]
        same_batch = self.batch == batch
        self.step = same_batch and n_pos == 1
        if self.step or (same_batch and self.explicit):
            continuing = True
        elif same_batch and n_pos > self.prompt_len:
            prompt = a[:, : self.prompt_len]
            scale = float(self._prompt_residual.abs().max()) + 1e-12
            continuing = torch.allclose(prompt, self._prompt_residual, rtol=1e-4, atol=1e-4 * scale)
        else:
            continuing = False
        self.fresh = not continuing
        if self.fresh:
            self.batch = batch
            if not self.explicit:
                self.prompt_len = n_pos
                self._prompt_residual = a.detach().clone()

    def mask(self, batch: int, n_pos: int, device) -> torch.Tensor | None:
        """Boolean ``[batch, pos]`` mask of positions to edit in the current pass (``None``: all of them)."""
        if isinstance(self.positions, torch.Tensor):
            if self.step:
                return torch.zeros(batch, 1, dtype=torch.bool, device=device)
            mask = torch.zeros(batch, n_pos, dtype=torch.bool, device=device)
            width = min(n_pos, self.positions.shape[1])
            mask[:, :width] = self.positions[:, :width].to(device)
            return mask
        if self.positions == "all":
            return None
        if self.step:
            generated = torch.ones(n_pos, dtype=torch.bool, device=device)
        else:
            generated = torch.arange(n_pos, device=device) >= self.prompt_len
        keep = generated if self.positions == "generated" else ~generated
        return keep[None, :].expand(batch, n_pos)


class SteeringHooks(list):
    """The ``(hook_name, fn)`` pairs of :func:`steering_hooks`, a plain list to TransformerLens, with the
    :class:`PositionPolicy` they share: ``hooks.reset(prompt_len=n)`` starts a new prompt."""

    def __init__(self, hooks, policy: PositionPolicy):
        super().__init__(hooks)
        self.policy = policy

    def reset(self, attention_mask: torch.Tensor | None = None, prompt_len: int | None = None) -> None:
        self.policy.reset(attention_mask, prompt_len)


def build_hooks(
    model,
    steering: Mapping,
    *,
    sae=None,
    positions: str | torch.Tensor | PositionPolicy = "all",
    when: Condition | None = None,
) -> tuple[list, PositionPolicy]:
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
        >>> hooks, policy = build_hooks(model, {vec: 4.0}, sae=sae)
    """
    check_model_kind(model)
    if when is not None and not isinstance(when, Condition):
        raise TypeError(f"when= takes a sl.Condition, got {type(when).__name__}.")
    if isinstance(positions, PositionPolicy):
        policy = positions
        if when is not None and policy.gate is None:
            policy.gate = ConditionGate(when)
        elif when is not None and policy.gate.condition is not when:
            raise ValueError(
                "The PositionPolicy given already has another condition; give the condition once, "
                "to the policy or to when=."
            )
    else:
        policy = PositionPolicy(positions, when)
    saes = SAESet(sae)
    edits = []
    for key, lam in steering.items():
        if not isinstance(key, Steerable):
            raise TypeError(
                f"Steering keys must be SASVector, DenseVector or a topic swap (alignment.swap(k)) "
                f"- anything with .edit(model, λ, saes) - got {type(key).__name__}."
            )
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
    hooks = [(resolved_hook_name(model, name), fn) for name, fn in hooks]
    if hooks:  # each pass is read where it first meets a steering hook (the blocks run in order)
        policy.first_hook = min((name for name, _ in hooks), key=lambda name: (hook_layer(name) or -1, name))
    return hooks, policy


def steering_hooks(
    model, steering: Mapping, *, sae=None, positions: str | torch.Tensor = "all", when: Condition | None = None
) -> SteeringHooks:
    """The ``(hook_name, fn)`` pairs that apply ``steering``, for ``model.run_with_hooks`` or ``model.hooks``.

    Args:
        model: a HookedTransformer.
        steering: ``{vector: λ}``, as for :func:`steer`.
        sae: the SAE(s) the SAS vectors were built on (one, a list, or a dict).
        positions: ``"all"``, ``"prompt"``, ``"generated"`` or a boolean ``[batch, pos]`` mask.
        when: a condition gating the steering (per token; a per-sequence one decides on each call's first pass).

    Returns:
        A list to pass as ``fwd_hooks`` (TransformerLens removes them after the call) that owns the
        hooks' :class:`PositionPolicy`: ``hooks.reset(prompt_len=n)`` between prompts where positions or a
        condition matter and the passes alone cannot tell (see :class:`PositionPolicy`).

    Example:
        >>> logits = model.run_with_hooks(tokens, fwd_hooks=sl.steering_hooks(model, {vec: 4.0}, sae=sae))
    """
    return SteeringHooks(*build_hooks(model, steering, sae=sae, positions=positions, when=when))


def _begin_pass_if_first(policy: PositionPolicy, a: torch.Tensor, hook) -> None:
    if hook.name == policy.first_hook or policy.batch is None:
        policy.begin_pass(a)


def _observer(policy: PositionPolicy):
    def hook_fn(acts: torch.Tensor, hook) -> None:
        a = acts.float()
        _begin_pass_if_first(policy, a, hook)
        policy.gate.observe(a, fresh=policy.fresh)  # reads only: returns None, so the residual is left as it is

    return hook_fn


def _make_hook(edits: list[Edit], policy: PositionPolicy, d_model: int, observe: bool = False):
    def hook_fn(acts: torch.Tensor, hook) -> torch.Tensor:
        if acts.ndim != 3 or acts.shape[-1] != d_model:
            raise ValueError(
                f"Steering expected a [batch, pos, {d_model}] residual at {hook.name}, got {tuple(acts.shape)}."
            )
        a = acts.float()
        _begin_pass_if_first(policy, a, hook)
        if observe:
            policy.gate.observe(a, fresh=policy.fresh)  # the unsteered residual, before this hook's edits
        delta = total_delta(edits, a)
        mask = policy.mask(acts.shape[0], acts.shape[1], acts.device)
        if policy.gate is not None:
            mask = policy.gate.mask() if mask is None else mask & policy.gate.mask()
        if mask is not None:
            delta = delta * mask[..., None]
        return (a + delta).to(acts.dtype)  # a new tensor: the one TransformerLens passed is left alone

    return hook_fn


@contextmanager
def steer(
    model, steering: Mapping, *, sae=None, positions: str | torch.Tensor = "all", when: Condition | None = None
) -> Iterator[PositionPolicy]:
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
        >>> with sl.steer(model, {vec: 4.0}, sae=sae):
        ...     logits = model(tokens)
    """
    hooks, policy = build_hooks(model, steering, sae=sae, positions=positions, when=when)
    points = {name: model.hook_dict.get(name) for name, _ in hooks}
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
                stacklevel=3,
            )
