"""Steering a model with SAS and dense vectors, through TransformerLens hooks that cannot leak.

SAS (Algorithm 2 of the paper), with the SAE's reconstruction error Δ kept:

    ã = â(σ(f(a) + Σᵢ λᵢvᵢ)) + Δ,   Δ = a − â(f(a))
      = a + (σ(f(a) + Σᵢ λᵢvᵢ) − f(a)) · W_dec

so λ = 0 is exactly the unsteered model. Only latents in the union S of the
vectors' supports can change, so the hook needs the encoder columns and decoder
rows of S alone (the ``[tokens, d_model] x [d_model, |S|]`` products), plus,
for TopK SAEs, the full encoding that decides which latents are active. σ is
the SAE's own: JumpReLU keeps ``s·[s > θ]``; ReLU and TopK SAEs use ReLU (the
top k are not re-selected). An SAE that normalises each token at run time
(``constant_norm_rescale``, ``layer_norm``) encodes the normalised ``a`` and its
decoder output is scaled back per token, so the edit is that token's scale times
the code difference times ``W_dec``. Dense (CAA) vectors add ``λ·v``; a topic
swap (:meth:`~sas_lens.topic.alignment.TopicAlignment.swap`) adds ``λ·(swap(a) − a)``.
All kinds can be mixed at one hook; every edit is computed from the unsteered ``a``
and the edits are summed.

Example:
    >>> with sl.steer(model, {vec: 4.0, dense: -2.0}, sae=sae):    # doctest: +SKIP
    ...     logits = model(tokens)
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from sas_lens.errors import IncompatibleSAEError
from sas_lens.loading.saes import check_hook_exists, check_sae_fits, sae_hook_name
from sas_lens.topic.alignment import TopicSwap, swap_reconstruction
from sas_lens.steering.vectors import DenseVector, SASVector, check_vector_fits, sae_fingerprint

SUPPORTED_ARCHITECTURES = ("jumprelu", "standard", "topk", "batchtopk")
# Per-token input normalisations the edit undoes; the others SAELens applies at
# run time are identities ("expected_average_only_in" and whitening are folded
# into the weights when an SAE is loaded).
PER_TOKEN_NORMALISATIONS = ("constant_norm_rescale", "layer_norm")
RUN_TIME_IDENTITY_NORMALISATIONS = ("none", "expected_average_only_in", "covariance_whitening")
POSITIONS = ("all", "prompt", "generated")


class PositionPolicy:
    """Which token positions a steering hook edits, kept consistent under the KV cache.

    ``"all"``: every position. ``"prompt"``: the positions of the first forward pass
    of a prompt. ``"generated"``: positions after the prompt — the one-token steps of
    cached generation, or the positions past the prompt when the whole sequence is
    re-run. A boolean ``[batch, pos]`` mask: those positions of a full pass.
    A pass no longer than the recorded prompt starts a new prompt.
    """

    def __init__(self, positions: str | torch.Tensor = "all"):
        if isinstance(positions, torch.Tensor):
            if positions.dtype != torch.bool or positions.ndim != 2:
                raise ValueError("A positions mask must be a boolean [batch, pos] tensor.")
        elif positions not in POSITIONS:
            raise ValueError(f"positions must be one of {POSITIONS} or a boolean mask, got {positions!r}.")
        self.positions = positions
        self.prompt_len: int | None = None

    def reset(self) -> None:
        self.prompt_len = None

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


@dataclass(frozen=True)
class _SparseEdit:
    """The slice of one SAE that a set of SAS vectors touches, in float32."""

    W_enc: torch.Tensor  # [d_model, |S|]
    b_enc: torch.Tensor  # [|S|]
    W_dec: torch.Tensor  # [|S|, d_model]
    threshold: torch.Tensor | None  # [|S|] for JumpReLU
    b_dec_in: torch.Tensor  # subtracted from the input before encoding
    shift: torch.Tensor  # Σ λᵢ vᵢ on S
    support: torch.Tensor  # S
    normalisation: str  # the SAE's per-token input normalisation, or "none"
    sae: object | None  # kept only for TopK, whose activity needs the full encoding

    @classmethod
    def build(cls, sae, vectors: list[tuple[SASVector, float]], device) -> "_SparseEdit":
        shift = sum(lam * vec.dense() for vec, lam in vectors)
        support = torch.nonzero(shift).squeeze(-1)
        architecture = sae.cfg.architecture()
        f32 = dict(device=device, dtype=torch.float32)
        return cls(
            W_enc=sae.W_enc.detach()[:, support].to(**f32),
            b_enc=sae.b_enc.detach()[support].to(**f32),
            W_dec=sae.W_dec.detach()[support].to(**f32),
            threshold=sae.threshold.detach()[support].to(**f32) if architecture == "jumprelu" else None,
            b_dec_in=(sae.b_dec.detach() * sae.cfg.apply_b_dec_to_input).to(**f32),
            shift=shift[support].to(**f32),
            support=support.to(device),
            normalisation=sae.cfg.normalize_activations if sae.cfg.normalize_activations in PER_TOKEN_NORMALISATIONS
            else "none",
            sae=sae if architecture in ("topk", "batchtopk") else None,
        )

    def sigma(self, s: torch.Tensor) -> torch.Tensor:
        if self.threshold is not None:
            return s.relu() * (s > self.threshold)
        return s.relu()

    def normalise(self, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | float]:
        """The SAE's input for ``a`` and the per-token factor its decoder output is scaled back by.

        Mirrors SAELens's run-time ``constant_norm_rescale`` and ``layer_norm``.
        """
        if self.normalisation == "constant_norm_rescale":
            coeff = a.shape[-1] ** 0.5 / a.norm(dim=-1, keepdim=True)
            return a * coeff, 1 / coeff
        if self.normalisation == "layer_norm":
            centred = a - a.mean(dim=-1, keepdim=True)
            std = centred.std(dim=-1, keepdim=True)
            return centred / (std + 1e-5), std
        return a, 1.0

    def delta(self, a: torch.Tensor) -> torch.Tensor:
        """``out_scale(a) · (σ(f(a)_S + shift) − f(a)_S) · W_dec[S]`` for float32 ``a`` of shape ``[..., d_model]``."""
        x, out_scale = self.normalise(a)
        if self.sae is not None:  # TopK: which latents are active depends on all of them
            codes = self.sae.encode(a.to(self.sae.dtype)).float()[..., self.support]
        else:
            codes = self.sigma((x - self.b_dec_in) @ self.W_enc + self.b_enc)
        return out_scale * ((self.sigma(codes + self.shift) - codes) @ self.W_dec)


def _index_saes(sae) -> dict[str, list]:
    if sae is None:
        return {}
    saes = list(sae.values()) if isinstance(sae, Mapping) else list(sae) if isinstance(sae, (list, tuple)) else [sae]
    by_hook: dict[str, list] = defaultdict(list)
    for one in saes:
        by_hook[sae_hook_name(one)].append(one)
    return by_hook


def _check_steerable(sae) -> None:
    architecture = sae.cfg.architecture()
    if architecture not in SUPPORTED_ARCHITECTURES:
        raise IncompatibleSAEError(
            f"sas_lens cannot steer through a {architecture!r} SAE yet; supported: {list(SUPPORTED_ARCHITECTURES)}."
        )
    normalisation = sae.cfg.normalize_activations
    if normalisation not in PER_TOKEN_NORMALISATIONS + RUN_TIME_IDENTITY_NORMALISATIONS:
        raise IncompatibleSAEError(
            f"sas_lens does not know the input normalisation {normalisation!r} of this SAE; supported: "
            f"{list(PER_TOKEN_NORMALISATIONS + RUN_TIME_IDENTITY_NORMALISATIONS)}."
        )
    if getattr(sae.cfg, "reshape_activations", "none") != "none":
        raise IncompatibleSAEError(
            f"This SAE reshapes its input (reshape_activations={sae.cfg.reshape_activations!r}, an attention-output "
            "SAE); sas_lens steers residual-stream SAEs."
        )


def _matching_sae(name: str, hook: str, d_sae: int, fingerprint: str | None, saes: dict[str, list], model):
    """The given SAE a sparse edit was built on, checked to fit ``model`` and to be steerable."""
    match = [s for s in saes.get(hook, []) if s.cfg.d_sae == d_sae and fingerprint in (None, sae_fingerprint(s))]
    if not match and saes.get(hook):
        raise IncompatibleSAEError(
            f"The SAS vector {name!r} was built on another SAE than the one given for {hook} "
            f"(vector: d_sae={d_sae}; given: d_sae={[s.cfg.d_sae for s in saes[hook]]}, or different "
            "weights). Pass the SAE it was built on, or rebuild the vector with this SAE."
        )
    if not match:
        raise IncompatibleSAEError(
            f"No SAE given for the SAS vector {name!r} (hook {hook}, d_sae={d_sae}). "
            "Pass the SAE it was built on: steer(model, {vec: λ}, sae=sae)."
        )
    check_sae_fits(match[0], model)
    _check_steerable(match[0])
    return match[0]


class _SwapEdit:
    """The original topic-alignment swap, blended: ``λ·(swap(a) − a)`` (see :mod:`sas_lens.topic.alignment`)."""

    def __init__(self, sae, scores: torch.Tensor, k: int, lam: float):
        self.sae, self.scores, self.k, self.lam = sae, scores, k, lam

    def delta(self, a: torch.Tensor) -> torch.Tensor:
        if self.lam == 0:
            return torch.zeros_like(a)
        swapped = swap_reconstruction(self.sae, a.to(self.sae.dtype), self.scores.to(self.sae.dtype), self.k)
        return self.lam * (swapped.float() - a)


def steering_hooks(model, steering: Mapping, *, sae=None, positions: str | torch.Tensor | PositionPolicy = "all"):
    """Validate ``steering`` ({vector: λ}) and return ``(fwd_hooks, policy)`` for ``model.hooks``.

    Everything is checked before any hook exists: λ finite, each vector fits the
    model, every SAS vector has its own SAE among ``sae`` (one SAE, a list, or a
    dict), and each SAE fits the model and can be steered through.
    """
    policy = positions if isinstance(positions, PositionPolicy) else PositionPolicy(positions)
    saes = _index_saes(sae)
    sparse: dict[str, dict[int, tuple[object, list]]] = defaultdict(dict)
    dense: dict[str, list[tuple[DenseVector, float]]] = defaultdict(list)
    swaps: dict[str, list[_SwapEdit]] = defaultdict(list)
    for vector, lam in steering.items():
        if not isinstance(vector, (SASVector, DenseVector, TopicSwap)):
            raise TypeError(f"Steering keys must be SASVector, DenseVector or a topic swap (alignment.swap(k)), "
                            f"got {type(vector).__name__}.")
        if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not math.isfinite(lam):
            raise ValueError(f"The strength λ for {vector.name!r} must be a finite number, got {lam!r}.")
        hook = vector.hook_name
        if hook is None:
            raise ValueError(f"The vector {vector.name!r} records no hook; set metadata['hook_name'].")
        if isinstance(vector, TopicSwap):
            if not 0 <= lam <= 1:
                raise ValueError(f"A topic swap blends (1 − λ)·a + λ·swap(a); give λ in [0, 1], got {lam}.")
            check_hook_exists(model, hook)
            match = _matching_sae(vector.name, hook, vector.alignment.d_sae,
                                  vector.metadata.get("sae_fingerprint"), saes, model)
            swaps[hook].append(_SwapEdit(match, vector.alignment.scores.to(model.cfg.device), vector.k, float(lam)))
            continue
        check_vector_fits(vector, model=model)
        check_hook_exists(model, hook)
        if isinstance(vector, DenseVector):
            dense[hook].append((vector, float(lam)))
            continue
        match = _matching_sae(vector.name, hook, vector.d_sae, vector.metadata.get("sae_fingerprint"), saes, model)
        sparse[hook].setdefault(id(match), (match, []))[1].append((vector, float(lam)))

    device = model.cfg.device
    hooks = []
    for hook in sorted(set(sparse) | set(dense) | set(swaps)):
        edits = [_SparseEdit.build(s, vecs, device) for s, vecs in sparse[hook].values()] + swaps[hook]
        added = sum((lam * vec.vector for vec, lam in dense[hook]), torch.zeros(model.cfg.d_model))
        hooks.append((hook, _make_hook(edits, added.to(device), policy, model.cfg.d_model)))
    return hooks, policy


def _make_hook(edits: "list[_SparseEdit | _SwapEdit]", added: torch.Tensor, policy: PositionPolicy, d_model: int):
    def hook_fn(acts: torch.Tensor, hook) -> torch.Tensor:
        if acts.ndim != 3 or acts.shape[-1] != d_model:
            raise ValueError(f"Steering expected a [batch, pos, {d_model}] residual at {hook.name}, got {tuple(acts.shape)}.")
        a = acts.float()
        delta = added.expand_as(a).clone()
        for edit in edits:
            delta += edit.delta(a)
        mask = policy.mask(acts.shape[0], acts.shape[1], acts.device)
        if mask is not None:
            delta = delta * mask[..., None]
        return (a + delta).to(acts.dtype)  # a new tensor: the one TransformerLens passed is left alone

    return hook_fn


@contextmanager
def steer(model, steering: Mapping, *, sae=None, positions: str | torch.Tensor = "all") -> Iterator[PositionPolicy]:
    """Steer ``model`` inside a ``with`` block; the hooks are removed on exit, even after an error.

    Args:
        model: a HookedTransformer.
        steering: ``{vector: λ}``; SAS and dense vectors may be mixed, at one or several hooks.
        sae: the SAE(s) the SAS vectors were built on (one, a list, or a dict).
        positions: ``"all"``, ``"prompt"``, ``"generated"`` or a boolean ``[batch, pos]`` mask
            (see :class:`PositionPolicy`).

    Yields:
        The position policy (call ``.reset()`` between prompts when positions matter).
    """
    hooks, policy = steering_hooks(model, steering, sae=sae, positions=positions)
    with model.hooks(fwd_hooks=hooks):
        yield policy


@torch.no_grad()
def generate(
    model,
    prompts: str | list[str],
    *,
    steering: Mapping | None = None,
    sae=None,
    positions: str = "all",
    max_new_tokens: int = 40,
    do_sample: bool = False,
    seed: int | None = None,
    backend: str = "tl",
    batch_size: int = 8,
    **generate_kwargs,
) -> list[str]:
    """Continue prompts, steered, in left-padded batches with the KV cache; returns the continuations.

    Args:
        backend: ``"tl"`` (TransformerLens's ``generate``) or ``"hf"`` (the same hooks on the
            Hugging Face twin of the model, decoded by ``transformers``; several times faster).
        do_sample, seed: greedy by default; with ``do_sample=True`` a ``seed`` makes it repeatable.
        positions: see :class:`PositionPolicy`.

    Example:
        >>> sl.generate(model, ["I think the movie"], steering={vec: 4.0}, sae=sae)  # doctest: +SKIP
    """
    from sas_lens.loading.prompts import tokenize_with_spans

    if backend not in ("tl", "hf"):
        raise ValueError(f"backend must be 'tl' or 'hf', got {backend!r}.")
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    hooks, policy = steering_hooks(model, steering or {}, sae=sae, positions=positions)
    if backend == "hf":
        from sas_lens.steering.hf_backend import hf_generate, hf_model_for

        hf_model = hf_model_for(model)
    outputs: list[str] = []
    with torch.random.fork_rng():
        if seed is not None:
            torch.manual_seed(seed)
        for start in range(0, len(prompts), batch_size):
            batch = prompts[start : start + batch_size]
            tokens, attention, _ = tokenize_with_spans(model.tokenizer, batch, [(0, len(p)) for p in batch])
            tokens, attention = tokens.to(model.cfg.device), attention.to(model.cfg.device)
            policy.reset()
            if backend == "hf":
                out = hf_generate(model, hf_model, tokens, attention, hooks, max_new_tokens=max_new_tokens,
                                  do_sample=do_sample, **generate_kwargs)
            else:
                with model.hooks(fwd_hooks=hooks):
                    out = model.generate(tokens, max_new_tokens=max_new_tokens, do_sample=do_sample, verbose=False,
                                         use_past_kv_cache=True, padding_side="left", **generate_kwargs)
            outputs.extend(_continuations(model.tokenizer, out[:, tokens.shape[1]:]))
    return outputs


def _continuations(tokenizer, new_tokens: torch.Tensor) -> list[str]:
    texts = []
    for row in new_tokens.tolist():
        if tokenizer.eos_token_id in row:
            row = row[: row.index(tokenizer.eos_token_id)]
        texts.append(tokenizer.decode(row, skip_special_tokens=True))
    return texts
