"""Steering vectors: sparse ones in an SAE's latent space (SAS) and dense ones in the residual (CAA).

Both carry their provenance (model, hook, layer, SAE, extraction settings,
package version), save to a single ``.safetensors`` file whose header holds that
metadata as JSON, and refuse to be loaded for a model or SAE they do not fit.

Example:
    >>> import torch
    >>> v = SASVector(torch.tensor([3, 7]), torch.tensor([0.5, -1.0]), d_sae=16, provenance={"layer": 9})
    >>> (2 * v).dense()[7].item()
    -2.0
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from sas_lens.errors import IncompatibleSAEError
from sas_lens.loading.saes import check_hook_exists
from sas_lens.steering.edits import GATES, DenseEdit, SAESet, SparseEdit
from sas_lens.steering.provenance import Provenance, SAEIdentity
from sas_lens.typing import Float, Indices, Tensor

_FORMAT = "sas_lens.vector/1"


class _Provenanced:
    """What both kinds of vector read from their :class:`~sas_lens.steering.provenance.Provenance`."""

    provenance: Provenance
    _default_name: str

    def _set_provenance(self, provenance: Provenance | Mapping[str, Any] | None, d_sae: int | None = None) -> None:
        if not isinstance(provenance, Provenance):  # a plain dict, as in files and older code
            provenance = Provenance.from_json(provenance, d_sae=d_sae)
        object.__setattr__(self, "provenance", provenance)

    @property
    def layer(self) -> int | None:
        return self.provenance.layer

    @property
    def hook_name(self) -> str | None:
        return self.provenance.hook_name

    @property
    def name(self) -> str:
        return self.provenance.name or self._default_name

    @property
    def metadata(self) -> dict[str, Any]:
        """The provenance as the JSON header a saved file carries (a copy: edit ``provenance`` instead)."""
        return self.provenance.to_json()

    def to_gguf(self, path: str | Path, model, *, lam: float = 1.0, sae=None, exact: bool = True) -> Path:
        """Write ``lam`` times this vector as a llama.cpp control vector (``--control-vector``).

        Exact for dense vectors and SAS vectors with ``gate="none"``; see
        :mod:`sas_lens.steering.control_vectors` for what is refused and what ``exact=False`` does.

        Args:
            path: the ``.gguf`` file to write.
            model: the HookedTransformer the vector is for.
            lam: the strength baked into the file.
            sae: the SAE of an SAS vector.
            exact: refuse (``True``) or linearise (``False``) an edit that depends on the token.

        Example:
            >>> dense.to_gguf("dense.gguf", model, lam=2.0).suffix
            '.gguf'
        """
        from sas_lens.steering.control_vectors import export_control_vector

        return export_control_vector(path, model, {self: lam}, sae=sae, exact=exact)

    def card(self, *, model=None, sae=None, matched_kl: float | None = 0.1, latents=None) -> str:
        """What a reader needs to reuse this vector, as markdown (see :mod:`sas_lens.steering.card`).

        Args:
            model: with it, the card gives λ at ``matched_kl`` (a strength search: seconds).
            sae: the SAE of an SAS vector.
            matched_kl: the next-token KL whose λ is given.
            latents: ``sl.top_latents(vec, sae, model)``, to list the top latents with their logit lens.

        Example:
            >>> print(vec.card().splitlines()[0])
            # tiny-sentiment
        """
        from sas_lens.steering.card import card_markdown

        return card_markdown(self, model=model, sae=sae, matched_kl=matched_kl, latents=latents)

    def _require_hook(self) -> str:
        if self.hook_name is None:
            raise ValueError(
                f"The vector {self.name!r} records no hook; build it with one, e.g. "
                "provenance={'hook_name': 'blocks.9.hook_resid_post', 'layer': 9}."
            )
        return self.hook_name


@dataclass(frozen=True, eq=False)
class SASVector(_Provenanced):
    """A sparse vector over an SAE's ``d_sae`` latents: positive entries reinforce, negative suppress.

    Attributes:
        indices: the latents in the support, ascending.
        values: their values.
        d_sae: the SAE's width.
        provenance: model, hook, layer, SAE, extraction settings, version (a dict is read as a header).
        diagnostics: why each latent was kept or dropped
            (:class:`~sas_lens.steering.diagnostics.SelectionDiagnostics`), for a vector just built by
            :func:`~sas_lens.steering.build_vectors.sas_vector`; ``None`` after loading or arithmetic.
        gate: how the shifted code reaches the residual: ``"sae"`` through the SAE's own σ
            (Algorithm 2 of the paper), ``"none"`` decoded as is (``δ = λ·v·W_dec``); see
            :mod:`sas_lens.steering.edits`.
        delta: whether steering keeps the SAE's reconstruction error ``Δ = a − â(f(a))`` (``True``, the
            paper's Algorithm 2: λ = 0 is the unsteered model) or drops it (``False``: the residual becomes
            the SAE's reconstruction of the shifted code, the paper's Δ ablation).
    """

    indices: Indices
    values: Float[Tensor, " nnz"]
    d_sae: int
    provenance: Provenance | Mapping[str, Any] | None = None  # stored as a Provenance (see __post_init__)
    diagnostics: Any = field(default=None, repr=False)  # not saved: the codes it summarises are not kept
    gate: str = "sae"
    delta: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.delta, bool):
            raise TypeError(f"delta must be True or False, got {self.delta!r}.")
        if self.gate not in GATES:
            raise ValueError(f"gate must be one of {GATES}, got {self.gate!r}.")
        if self.indices.shape != self.values.shape or self.indices.ndim != 1:
            raise ValueError("indices and values must be 1-D and of the same length.")
        if len(self.indices) and (int(self.indices.min()) < 0 or int(self.indices.max()) >= self.d_sae):
            raise ValueError(f"latent indices must lie in [0, {self.d_sae}).")
        if not torch.isfinite(self.values).all():
            raise ValueError("A steering vector's values must be finite.")
        self._set_provenance(self.provenance, d_sae=self.d_sae)

    @classmethod
    def from_dense(
        cls,
        dense: Float[Tensor, " d_sae"],
        provenance: Provenance | Mapping | None = None,
        *,
        diagnostics: Any = None,
        gate: str = "sae",
        delta: bool = True,
    ) -> "SASVector":
        """The sparse form of a dense ``[d_sae]`` vector (its nonzero entries)."""
        indices = torch.nonzero(dense).squeeze(-1)
        return cls(indices, dense[indices].float(), int(dense.shape[0]), provenance, diagnostics, gate, delta)

    def dense(self) -> Float[Tensor, " d_sae"]:
        out = torch.zeros(self.d_sae)
        out[self.indices] = self.values
        return out

    _default_name = "sas-vector"

    @property
    def sae_identity(self) -> SAEIdentity:
        """The SAE this vector lives in (its width alone when no SAE was recorded)."""
        return self.provenance.sae or SAEIdentity(self.d_sae)

    def renamed(self, name: str) -> "SASVector":
        return replace(self, provenance=self.provenance.replace(name=name))

    def with_gate(self, gate: str) -> "SASVector":
        """The same latents and values, applied through ``gate`` (``"sae"`` or ``"none"``)."""
        return replace(self, gate=gate)

    def with_delta(self, keep: bool) -> "SASVector":
        """The same vector, steering with the reconstruction error Δ kept (``True``) or dropped (``False``)."""
        return replace(self, delta=keep)

    def edit(self, model, strength: float, saes: SAESet) -> SparseEdit:
        """The :class:`~sas_lens.steering.edits.SparseEdit` adding ``strength·v`` to the code of its SAE."""
        check_vector_fits(self, model=model)
        hook = self._require_hook()
        sae = saes.find(f"The SAS vector {self.name!r}", hook, self.sae_identity, model)
        return SparseEdit(hook, sae, (float(strength) * self.dense()).to(model.cfg.device), self.gate, self.delta)

    def __len__(self) -> int:
        return len(self.indices)

    # Arithmetic: vectors of one SAE combine in its latent space.
    def _combine(self, other: "SASVector", sign: float) -> "SASVector":
        if not isinstance(other, SASVector):
            return NotImplemented
        if not self.sae_identity.same_sae_as(other.sae_identity):
            raise IncompatibleSAEError("These SAS vectors were built on different SAEs and cannot be combined.")
        if self.gate != other.gate:
            raise ValueError(
                f"These SAS vectors are applied differently (gate {self.gate!r} and {other.gate!r}); "
                "make them agree with .with_gate() first."
            )
        if self.delta != other.delta:
            raise ValueError(
                "One of these SAS vectors keeps the reconstruction error Δ and the other drops it; "
                "make them agree with .with_delta() first."
            )
        name = f"{self.name} {'+' if sign > 0 else '-'} {other.name}"
        return SASVector.from_dense(
            self.dense() + sign * other.dense(), self.provenance.replace(name=name), gate=self.gate, delta=self.delta
        )

    def __add__(self, other):
        return self._combine(other, 1.0)

    def __sub__(self, other):
        return self._combine(other, -1.0)

    def __mul__(self, scale: int | float) -> "SASVector":
        if not isinstance(scale, (int, float)):
            return NotImplemented
        return replace(self, values=self.values * float(scale), diagnostics=None)

    __rmul__ = __mul__

    def __neg__(self) -> "SASVector":
        return self * -1.0

    def save(self, path: str | Path) -> Path:
        """Write the vector and its provenance to one ``.safetensors`` file."""
        return _save(
            path,
            {"indices": self.indices, "values": self.values},
            {"kind": "sas", "d_sae": self.d_sae, "gate": self.gate, "delta": self.delta, **self.metadata},
        )

    def _repr_html_(self) -> str:
        order = self.values.abs().argsort(descending=True)[:10]
        rows = "".join(f"<tr><td>{int(self.indices[i])}</td><td>{float(self.values[i]):+.3f}</td></tr>" for i in order)
        why = f"<p>{html.escape(self.diagnostics.summary())}</p>" if self.diagnostics is not None else ""
        return (
            f"<b>SASVector</b> {html.escape(self.name)}: {len(self)} of {self.d_sae} latents, "
            f"{html.escape(str(self.hook_name))}{why}"
            f"<table><tr><th>latent</th><th>value</th></tr>{rows}</table>"
        )

    def __repr__(self) -> str:
        return f"SASVector({self.name!r}, {len(self)}/{self.d_sae} latents, hook={self.hook_name!r})"


@dataclass(frozen=True, eq=False)
class DenseVector(_Provenanced):
    """A dense residual-stream direction (CAA): added as ``λ·v`` at its hook."""

    vector: Float[Tensor, " d_model"]
    provenance: Provenance | Mapping[str, Any] | None = None  # stored as a Provenance (see __post_init__)

    def __post_init__(self) -> None:
        if self.vector.ndim != 1 or not torch.isfinite(self.vector).all():
            raise ValueError("A dense steering vector must be 1-D and finite.")
        self._set_provenance(self.provenance)

    _default_name = "dense-vector"

    def renamed(self, name: str) -> "DenseVector":
        return DenseVector(self.vector, self.provenance.replace(name=name))

    def edit(self, model, strength: float, saes: SAESet) -> DenseEdit:
        """The :class:`~sas_lens.steering.edits.DenseEdit` adding ``strength·v`` at its hook."""
        check_vector_fits(self, model=model)
        return DenseEdit.checked(model, self._require_hook(), float(strength) * self.vector)

    def __add__(self, other):
        if not isinstance(other, DenseVector):
            return NotImplemented
        if other.hook_name != self.hook_name or other.vector.shape != self.vector.shape:
            raise ValueError("Dense vectors at different hooks cannot be combined.")
        return DenseVector(self.vector + other.vector, self.provenance.replace(name=f"{self.name} + {other.name}"))

    def __sub__(self, other):
        return self + (-other) if isinstance(other, DenseVector) else NotImplemented

    def __mul__(self, scale: int | float) -> "DenseVector":
        if not isinstance(scale, (int, float)):
            return NotImplemented
        return DenseVector(self.vector * float(scale), self.provenance)

    __rmul__ = __mul__

    def __neg__(self) -> "DenseVector":
        return self * -1.0

    def save(self, path: str | Path) -> Path:
        """Write the vector and its provenance to one ``.safetensors`` file."""
        return _save(path, {"vector": self.vector}, {"kind": "dense", **self.metadata})

    def _repr_html_(self) -> str:
        return (
            f"<b>DenseVector</b> {html.escape(self.name)}: d_model={self.vector.shape[0]}, "
            f"norm={float(self.vector.norm()):.3g}, {html.escape(str(self.hook_name))}"
        )

    def __repr__(self) -> str:
        return f"DenseVector({self.name!r}, norm={float(self.vector.norm()):.3g}, hook={self.hook_name!r})"


def save_with_header(path: str | Path, tensors: dict[str, Tensor], header: dict[str, Any], file_format: str) -> Path:
    """Write ``tensors`` to a ``.safetensors`` file whose header holds ``file_format`` and ``header`` as JSON.

    Args:
        path: the file (``.safetensors`` is added if missing).
        tensors: the tensors to store.
        header: JSON-serialisable provenance.
        file_format: the format tag readers check.

    Example:
        >>> save_with_header("v", {"values": torch.ones(2)}, {"name": "v"}, "sas_lens.vector/1").name
        'v.safetensors'
    """
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_name(path.name + ".safetensors")
    from sas_lens.loading.files import atomic_file

    with atomic_file(path) as staging:  # a file cut off by an interruption is never left at ``path``
        save_file(
            {k: v.contiguous() for k, v in tensors.items()},
            staging,
            metadata={"format": file_format, "sas_lens": json.dumps(header)},
        )
    return path


def read_with_header(path: str | Path, file_format: str, what: str) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The tensors and JSON header of a file written by :func:`save_with_header` in ``file_format``.

    Args:
        path: the file.
        file_format: the format tag expected.
        what: what the file should be, for the error message.

    Example:
        >>> _ = save_with_header("v", {"values": torch.ones(2)}, {"name": "v"}, "sas_lens.vector/1")
        >>> tensors, header = read_with_header("v.safetensors", "sas_lens.vector/1", "vector")
        >>> header["name"], tensors["values"].tolist()
        ('v', [1.0, 1.0])
    """
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        header = handle.metadata() or {}
        if header.get("format") != file_format:
            raise ValueError(f"{path} is not a sas_lens {what} file (format {header.get('format')!r}).")
        return {key: handle.get_tensor(key) for key in handle.keys()}, json.loads(header["sas_lens"])


def _save(path: str | Path, tensors: dict[str, Tensor], header: dict[str, Any]) -> Path:
    return save_with_header(path, tensors, header, _FORMAT)


def load_vector(path: str | Path, *, model=None, sae=None) -> SASVector | DenseVector:
    """Load a vector saved by ``.save``; with ``model``/``sae``, refuse one that does not fit them.

    Args:
        path: a ``.safetensors`` file written by :meth:`SASVector.save` or :meth:`DenseVector.save`.
        model: if given, the vector must have been built on this model, at one of its hooks.
        sae: if given, an SAS vector must have been built on this SAE.

    Raises:
        IncompatibleSAEError: the vector was built for another model, hook or SAE.
        ValueError: the file is not a sas_lens vector.

    Example:
        >>> _ = vec.save("sentiment.safetensors")
        >>> sl.load_vector("sentiment.safetensors", model=model, sae=sae).indices.tolist() == vec.indices.tolist()
        True
    """
    tensors, header = read_with_header(path, _FORMAT, "vector")
    kind = header.pop("kind")
    vector: SASVector | DenseVector
    if kind == "sas":
        d_sae, gate = header.pop("d_sae"), header.pop("gate", "sae")  # files before the gate existed: "sae"
        delta = header.pop("delta", True)  # files before the Δ switch kept Δ
        vector = SASVector(tensors["indices"], tensors["values"], d_sae, header, gate=gate, delta=delta)
    else:
        vector = DenseVector(tensors["vector"], header)
    check_vector_fits(vector, model=model, sae=sae)
    return vector


def check_vector_fits(vector: SASVector | DenseVector, *, model=None, sae=None) -> None:
    """Raise :class:`IncompatibleSAEError` if ``vector`` was not built for ``model`` / ``sae``.

    Args:
        vector: an SAS or dense vector.
        model: the model it is to steer.
        sae: the SAE an SAS vector is to be used with.

    Example:
        >>> check_vector_fits(vec, model=model, sae=sae)
    """
    provenance = vector.provenance
    if model is not None:
        if provenance.model_name and provenance.model_name != model.cfg.model_name:
            raise IncompatibleSAEError(
                f"The vector {vector.name!r} was built on {provenance.model_name}, not {model.cfg.model_name}. "
                "Rebuild it on this model."
            )
        if vector.hook_name is not None:
            check_hook_exists(model, vector.hook_name)
        if isinstance(vector, DenseVector) and vector.vector.shape[0] != model.cfg.d_model:
            raise IncompatibleSAEError(
                f"The dense vector has {vector.vector.shape[0]} dimensions but the model has d_model={model.cfg.d_model}."
            )
    if sae is not None and isinstance(vector, SASVector):
        vector.sae_identity.check(sae, f"The vector {vector.name!r}")
