"""The edit protocol: what the hook engine asks of anything that steers, and the SAS and dense edits.

A key of a steering dict (``{key: λ}``) is :class:`Steerable`: it names its hook and,
given the model, its strength and the SAEs passed to ``steer``, checks that it fits and
returns an :class:`Edit`. An edit computes ``δ(a)``, the change to the residual ``a``
at its hook; the engine adds the edits of one hook, each computed from the unsteered
``a``. Edits of one kind that compose inside a space of their own (SAS vectors on one
SAE add their ``λᵢvᵢ`` before σ) merge first, through :meth:`Edit.merge`.

A new kind of edit (conditional steering, a topic swap) implements these two
protocols; the engine does not change.

SAS (Algorithm 2 of the paper), with the SAE's reconstruction error Δ kept:

    ã = â(σ(f(a) + Σᵢ λᵢvᵢ)) + Δ,   Δ = a − â(f(a))
      = a + (σ(f(a) + Σᵢ λᵢvᵢ) − f(a)) · W_dec

so λ = 0 is exactly the unsteered model. Without Δ (the paper's ablation, a vector's
``delta=False``) the residual becomes the SAE's reconstruction, ``ã = â(σ(f(a) + Σᵢ λᵢvᵢ))``,
that is the edit above minus Δ; at λ = 0 that is the SAE spliced in. ``gate="none"`` decodes the code shift
without passing it through σ again, ``δ(a) = Σᵢ λᵢvᵢ · W_dec`` (scaled back per token for
normalising SAEs): under JumpReLU a latent that is off stays off until ``λ·v`` clears its
threshold θ, so the paper's form turns most of a mean-valued vector into nothing
(:func:`~sas_lens.steering.diagnostics.gated_share` measures how much).

Only latents in the union S of the vectors' supports can change, so the edit needs the encoder columns and decoder rows of S
alone (``[tokens, d_model] x [d_model, |S|]`` products), plus, for TopK SAEs, the full
encoding that decides which latents are active. σ is the SAE's own: JumpReLU keeps
``s·[s > θ]``; ReLU and TopK SAEs use ReLU (the top k are not re-selected), so for them
``gate="sae"`` equals ``gate="none"`` wherever the shift is positive (``relu(c + s) − c = s``
for ``c ≥ 0, s > 0``) and differs only where it pushes an active latent below zero. A TopK SAE
with ``rescale_acts_by_decoder_norm`` encodes ``pre · ‖W_dec[i]‖`` and decodes ``z / ‖W_dec[i]‖``;
its decoder rows are used divided by their norms here, as SAELens's decode does. An SAE that
normalises each token at run time (``constant_norm_rescale``, ``layer_norm``) encodes the
normalised ``a`` and its decoder output is scaled back per token, so the edit is that
token's scale times the code difference times ``W_dec``.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

from sas_lens.errors import IncompatibleSAEError
from sas_lens.loading.saes import check_hook_exists, check_sae_fits, sae_hook_name
from sas_lens.typing import Float, Tensor

SUPPORTED_ARCHITECTURES = ("jumprelu", "standard", "topk")
# SAELens's BatchTopK exists only as a training class: its encode picks the top k x batch over the whole
# flattened batch (padding included), so one sequence's edit would depend on the others beside it.
TRAINING_ONLY_ARCHITECTURES = {
    "batchtopk": "save_inference_model(folder) saves it as a JumpReLU SAE; load that folder with sl.load_sae(folder)"
}
# How the shifted code reaches the residual: through the SAE's own σ (Algorithm 2) or decoded as is.
GATES = ("sae", "none")
# Per-token input normalisations the edit undoes; the others SAELens applies at
# run time are identities ("expected_average_only_in" and whitening are folded
# into the weights when an SAE is loaded).
PER_TOKEN_NORMALISATIONS = ("constant_norm_rescale", "layer_norm")
RUN_TIME_IDENTITY_NORMALISATIONS = ("none", "expected_average_only_in", "covariance_whitening")


@runtime_checkable
class Edit(Protocol):
    """A change ``δ(a)`` to the residual at one hook, computed in float32 from the unsteered ``a``."""

    hook_name: str

    def delta(self, a: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos d_model"]: ...

    def merge(self, other: "Edit") -> "Edit | None":
        """One edit doing both ``self`` and ``other``, when they compose before acting; else ``None``."""
        ...


@runtime_checkable
class Steerable(Protocol):
    """A key of a steering dict: SAS and dense vectors, a topic swap, or any other kind that implements it."""

    name: str
    hook_name: str | None

    def edit(self, model, strength: float, saes: "SAESet") -> Edit:
        """Check that this fits ``model`` (and its SAE among ``saes``) and return its edit at ``strength``.

        Raises before any hook exists, with a message that says what to do.
        """
        ...


class SAESet:
    """The SAEs given to ``steer`` (one, a list, or a dict), looked up by hook and identity."""

    def __init__(self, sae=None):
        if sae is None:
            saes = []
        elif isinstance(sae, Mapping):
            saes = list(sae.values())
        elif isinstance(sae, (list, tuple)):
            saes = list(sae)
        else:
            saes = [sae]
        self.by_hook: dict[str, list] = defaultdict(list)
        for one in saes:
            self.by_hook[sae_hook_name(one)].append(one)

    def find(self, what: str, hook: str, identity, model):
        """The given SAE that ``identity`` (a :class:`~sas_lens.steering.provenance.SAEIdentity`) names at
        ``hook``, checked to fit ``model`` and to be steerable; ``what`` names the object needing it."""
        candidates = self.by_hook.get(hook, [])
        match = [s for s in candidates if identity.matches(s)]
        if not match and candidates:
            identity.check(candidates[0], what)  # raises, saying which SAE it needs
        if not match:
            raise IncompatibleSAEError(
                f"No SAE given for {what} (hook {hook}, needs {identity.describe()}). "
                "Pass the SAE it was built on: steer(model, {vec: λ}, sae=sae)."
            )
        check_sae_fits(match[0], model)
        check_steerable(match[0])
        return match[0]


def check_steerable(sae) -> None:
    """Raise :class:`IncompatibleSAEError` if sas_lens cannot compute an exact edit through ``sae``.

    Args:
        sae: an SAELens SAE.

    Example:
        >>> check_steerable(sl.load_sae("4k"))
    """
    architecture = sae.cfg.architecture()
    if architecture in TRAINING_ONLY_ARCHITECTURES:
        raise IncompatibleSAEError(
            f"This is a {architecture!r} SAE in its training form, whose encoding of a token depends on the other "
            f"tokens of the batch, so a steered sequence would change with what it is batched with. "
            f"{TRAINING_ONLY_ARCHITECTURES[architecture]}, and steer with that."
        )
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


@dataclass(frozen=True)
class DenseEdit:
    """CAA: ``δ(a) = Σ λᵢvᵢ`` at every position."""

    hook_name: str
    added: Float[Tensor, " d_model"]

    @classmethod
    def checked(cls, model, hook_name: str, added: Tensor) -> "DenseEdit":
        check_hook_exists(model, hook_name)
        if added.shape != (model.cfg.d_model,):
            raise IncompatibleSAEError(
                f"The dense vector has {added.shape[0]} dimensions but the model has d_model={model.cfg.d_model}."
            )
        return cls(hook_name, added.to(model.cfg.device, torch.float32))

    def delta(self, a: Tensor) -> Tensor:
        return self.added.expand_as(a)

    def merge(self, other: Edit) -> "DenseEdit | None":
        if isinstance(other, DenseEdit) and other.hook_name == self.hook_name:
            return DenseEdit(self.hook_name, self.added + other.added)
        return None


@dataclass(frozen=True)
class SparseEdit:
    """SAS through one SAE: ``δ(a) = out_scale(a)·(σ(f(a)_S + shift) − f(a)_S)·W_dec[S]``.

    ``shift`` is ``Σ λᵢvᵢ`` as a dense ``[d_sae]`` tensor on the model's device; the slice
    of the SAE it touches is taken once, in float32, on first use (after merging). With
    ``gate="none"``, ``δ(a) = out_scale(a)·shift·W_dec``. With ``keep_delta=False`` the
    reconstruction error is taken away too: ``δ(a) − (a − â(f(a)))``, through the whole SAE.
    """

    hook_name: str
    sae: object
    shift: Float[Tensor, " d_sae"]
    gate: str = "sae"
    keep_delta: bool = True

    def merge(self, other: Edit) -> "SparseEdit | None":
        if (
            isinstance(other, SparseEdit)
            and other.sae is self.sae
            and other.gate == self.gate
            and other.keep_delta == self.keep_delta
        ):
            return SparseEdit(self.hook_name, self.sae, self.shift + other.shift, self.gate, self.keep_delta)
        return None

    @functools.cached_property
    def _slice(self) -> "_SparseSlice":
        return _SparseSlice.build(self.sae, self.shift, self.shift.device)

    def delta(self, a: Tensor) -> Tensor:
        edit = self._slice.decoded_shift(a) if self.gate == "none" else self._slice.delta(a)
        if not self.keep_delta:
            edit = edit - reconstruction_error(self.sae, a)
        return edit


def reconstruction_error(sae, a: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_model"]:
    """``Δ = a − â(f(a))``, float32: what the SAE's reconstruction misses of ``a``.

    Args:
        sae: an SAELens SAE.
        a: residuals at its hook.

    Example:
        >>> err = reconstruction_error(sae, acts)
    """
    with torch.no_grad():
        reconstruction = sae.decode(sae.encode(a.to(sae.device, sae.dtype))).float().to(a.device)
    return a - reconstruction


@dataclass(frozen=True)
class _SparseSlice:
    """The slice of one SAE that a shift touches, in float32."""

    W_enc: torch.Tensor  # [d_model, |S|]
    b_enc: torch.Tensor  # [|S|]
    W_dec: torch.Tensor  # [|S|, d_model], divided by its row norms for rescale_acts_by_decoder_norm
    threshold: torch.Tensor | None  # [|S|] for JumpReLU
    b_dec_in: torch.Tensor  # subtracted from the input before encoding
    shift: torch.Tensor  # Σ λᵢ vᵢ on S
    support: torch.Tensor  # S
    normalisation: str  # the SAE's per-token input normalisation, or "none"
    sae: object | None  # kept only for TopK, whose activity needs the full encoding

    @classmethod
    def build(cls, sae, shift: Tensor, device) -> "_SparseSlice":
        support = torch.nonzero(shift).squeeze(-1)
        architecture = sae.cfg.architecture()
        f32 = dict(device=device, dtype=torch.float32)
        normalisation = sae.cfg.normalize_activations
        W_dec = sae.W_dec.detach()[support].to(**f32)
        if getattr(sae.cfg, "rescale_acts_by_decoder_norm", False):  # SAELens's TopK decode: z / ‖W_dec[i]‖
            W_dec = W_dec / W_dec.norm(dim=-1, keepdim=True)
        return cls(
            W_enc=sae.W_enc.detach()[:, support].to(**f32),
            b_enc=sae.b_enc.detach()[support].to(**f32),
            W_dec=W_dec,
            threshold=sae.threshold.detach()[support].to(**f32) if architecture == "jumprelu" else None,
            b_dec_in=(sae.b_dec.detach() * sae.cfg.apply_b_dec_to_input).to(**f32),
            shift=shift[support].to(**f32),
            support=support.to(device),
            normalisation=normalisation if normalisation in PER_TOKEN_NORMALISATIONS else "none",
            sae=sae if architecture == "topk" else None,
        )

    def sigma(self, s: Tensor) -> Tensor:
        if self.threshold is not None:
            return s.relu() * (s > self.threshold)
        return s.relu()

    def normalise(self, a: Tensor) -> tuple[Tensor, Tensor | float]:
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

    def decoded_shift(self, a: Tensor) -> Tensor:
        """The shift decoded as is, scaled back per token like the SAE's own output."""
        _, out_scale = self.normalise(a)
        return out_scale * (self.shift @ self.W_dec)

    def delta(self, a: Tensor) -> Tensor:
        x, out_scale = self.normalise(a)
        if self.sae is not None:  # TopK: which latents are active depends on all of them
            codes = self.sae.encode(a.to(self.sae.device, self.sae.dtype)).float().to(a.device)[..., self.support]
        else:
            codes = self.sigma((x - self.b_dec_in) @ self.W_enc + self.b_enc)
        return out_scale * ((self.sigma(codes + self.shift) - codes) @ self.W_dec)


def decoder_directions(sae, latents: Tensor | None = None, device=None) -> Float[Tensor, "k d_model"]:
    """The residual direction each latent's shift decodes to with ``gate="none"``, float32 (before the per-token scale).

    ``W_dec[i]``, divided by its norm for SAEs that rescale by it (SAELens's TopK decode): what one unit of
    shift on latent ``i`` adds, up to :func:`output_scale`.

    Args:
        sae: an SAE :func:`check_steerable` accepts.
        latents: latent ids (all latents if ``None``).
        device: where the result lives (the SAE's device if ``None``).

    Example:
        >>> decoder_directions(sae, torch.tensor([0, 3])).shape
        torch.Size([2, 16])
    """
    latents = torch.arange(sae.cfg.d_sae) if latents is None else torch.as_tensor(latents)
    device = sae.W_dec.device if device is None else device
    shift = torch.zeros(sae.cfg.d_sae, device=device).index_fill_(0, latents.to(device), 1.0)
    whole = _SparseSlice.build(sae, shift, device)
    return whole.W_dec[torch.searchsorted(whole.support, latents.to(device))]


def output_scale(sae, a: Float[Tensor, "... d_model"]) -> Tensor | float:
    """The per-token factor a decoded shift is scaled by at residuals ``a`` (1.0 unless the SAE normalises inputs).

    Args:
        sae: an SAE :func:`check_steerable` accepts.
        a: residuals at its hook.

    Example:
        >>> output_scale(sae, acts)
        1.0
    """
    return _SparseSlice.build(sae, torch.zeros(sae.cfg.d_sae, device=a.device), a.device).normalise(a.float())[1]


def total_delta(edits: list[Edit], a: Tensor) -> Tensor:
    """The sum of the edits' ``δ(a)``, each computed from the same unsteered ``a``.

    Args:
        edits: edits at one hook (after :func:`merge_edits`).
        a: the float32 residual at that hook.

    Example:
        >>> total_delta([DenseEdit("h", torch.ones(2)), DenseEdit("h", torch.ones(2))], torch.zeros(1, 1, 2))
        tensor([[[2., 2.]]])
    """
    return sum((edit.delta(a) for edit in edits[1:]), edits[0].delta(a)).expand_as(a)


def merge_edits(edits: Iterable[Edit]) -> dict[str, list[Edit]]:
    """Edits grouped by hook, each merged with the earlier ones it composes with.

    Args:
        edits: edits of any kinds, at any hooks.

    Example:
        >>> a, b = DenseEdit("h", torch.ones(2)), DenseEdit("h", torch.ones(2))
        >>> merge_edits([a, b])["h"][0].added
        tensor([2., 2.])
    """
    by_hook: dict[str, list[Edit]] = defaultdict(list)
    for edit in edits:
        group = by_hook[edit.hook_name]
        for i, earlier in enumerate(group):
            merged = earlier.merge(edit)
            if merged is not None:
                group[i] = merged
                break
        else:
            group.append(edit)
    return by_hook
