"""Steering vectors: sparse ones in an SAE's latent space (SAS) and dense ones in the residual (CAA).

Both carry their provenance (model, hook, layer, SAE, extraction settings,
package version), save to a single ``.safetensors`` file whose header holds that
metadata as JSON, and refuse to be loaded for a model or SAE they do not fit.

Example:
    >>> import torch
    >>> v = SASVector(torch.tensor([3, 7]), torch.tensor([0.5, -1.0]), d_sae=16, metadata={"layer": 9})
    >>> (2 * v).dense()[7].item()
    -2.0
"""

from __future__ import annotations

import hashlib
import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sas_lens.errors import IncompatibleSAEError
from sas_lens.typing import Float, Indices, Tensor

_FORMAT = "sas_lens.vector/1"


def sae_fingerprint(sae) -> str:
    """A short hash of an SAE's decoder and biases: two SAEs with the same one are the same SAE."""
    digest = hashlib.sha256()
    for tensor in (sae.W_dec[:: max(1, sae.cfg.d_sae // 256)], sae.b_dec, sae.b_enc):
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    digest.update(f"{sae.cfg.architecture()}:{sae.cfg.d_in}:{sae.cfg.d_sae}".encode())
    return digest.hexdigest()[:16]


class _Provenance:
    """Properties read from a vector's ``metadata``, shared by both kinds of vector."""

    metadata: dict[str, Any]
    _default_name: str

    @property
    def layer(self) -> int | None:
        return self.metadata.get("layer")

    @property
    def hook_name(self) -> str | None:
        return self.metadata.get("hook_name")

    @property
    def name(self) -> str:
        return self.metadata.get("name", self._default_name)


@dataclass(frozen=True, eq=False)
class SASVector(_Provenance):
    """A sparse vector over an SAE's ``d_sae`` latents: positive entries reinforce, negative suppress.

    Attributes:
        indices: the latents in the support, ascending.
        values: their values.
        d_sae: the SAE's width.
        metadata: provenance (model, hook, layer, SAE, extraction settings, version).
    """

    indices: Indices
    values: Float[Tensor, " nnz"]
    d_sae: int
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.indices.shape != self.values.shape or self.indices.ndim != 1:
            raise ValueError("indices and values must be 1-D and of the same length.")
        if len(self.indices) and (int(self.indices.min()) < 0 or int(self.indices.max()) >= self.d_sae):
            raise ValueError(f"latent indices must lie in [0, {self.d_sae}).")
        if not torch.isfinite(self.values).all():
            raise ValueError("A steering vector's values must be finite.")

    @classmethod
    def from_dense(cls, dense: Float[Tensor, " d_sae"], metadata: dict[str, Any] | None = None) -> "SASVector":
        indices = torch.nonzero(dense).squeeze(-1)
        return cls(indices, dense[indices].float(), int(dense.shape[0]), dict(metadata or {}))

    def dense(self) -> Float[Tensor, " d_sae"]:
        out = torch.zeros(self.d_sae)
        out[self.indices] = self.values
        return out

    _default_name = "sas-vector"

    def __len__(self) -> int:
        return len(self.indices)

    # Arithmetic: vectors of one SAE combine in its latent space.
    def _combine(self, other: "SASVector", sign: float) -> "SASVector":
        if not isinstance(other, SASVector):
            return NotImplemented
        if other.metadata.get("sae_fingerprint") != self.metadata.get("sae_fingerprint") or other.d_sae != self.d_sae:
            raise IncompatibleSAEError("These SAS vectors were built on different SAEs and cannot be combined.")
        name = f"{self.name} {'+' if sign > 0 else '-'} {other.name}"
        return SASVector.from_dense(self.dense() + sign * other.dense(), {**self.metadata, "name": name})

    def __add__(self, other):
        return self._combine(other, 1.0)

    def __sub__(self, other):
        return self._combine(other, -1.0)

    def __mul__(self, scale: int | float) -> "SASVector":
        if not isinstance(scale, (int, float)):
            return NotImplemented
        return SASVector(self.indices, self.values * float(scale), self.d_sae, dict(self.metadata))

    __rmul__ = __mul__

    def __neg__(self) -> "SASVector":
        return self * -1.0

    def save(self, path: str | Path) -> Path:
        """Write the vector and its metadata to one ``.safetensors`` file."""
        return _save(path, {"indices": self.indices, "values": self.values},
                     {"kind": "sas", "d_sae": self.d_sae, **self.metadata})

    def _repr_html_(self) -> str:
        order = self.values.abs().argsort(descending=True)[:10]
        rows = "".join(
            f"<tr><td>{int(self.indices[i])}</td><td>{float(self.values[i]):+.3f}</td></tr>" for i in order
        )
        return (
            f"<b>SASVector</b> {html.escape(self.name)}: {len(self)} of {self.d_sae} latents, "
            f"{html.escape(str(self.hook_name))}"
            f"<table><tr><th>latent</th><th>value</th></tr>{rows}</table>"
        )

    def __repr__(self) -> str:
        return f"SASVector({self.name!r}, {len(self)}/{self.d_sae} latents, hook={self.hook_name!r})"


@dataclass(frozen=True, eq=False)
class DenseVector(_Provenance):
    """A dense residual-stream direction (CAA): added as ``λ·v`` at its hook."""

    vector: Float[Tensor, " d_model"]
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.vector.ndim != 1 or not torch.isfinite(self.vector).all():
            raise ValueError("A dense steering vector must be 1-D and finite.")

    _default_name = "dense-vector"

    def __add__(self, other):
        if not isinstance(other, DenseVector):
            return NotImplemented
        if other.hook_name != self.hook_name or other.vector.shape != self.vector.shape:
            raise ValueError("Dense vectors at different hooks cannot be combined.")
        return DenseVector(self.vector + other.vector, {**self.metadata, "name": f"{self.name} + {other.name}"})

    def __sub__(self, other):
        return self + (-other) if isinstance(other, DenseVector) else NotImplemented

    def __mul__(self, scale: int | float) -> "DenseVector":
        if not isinstance(scale, (int, float)):
            return NotImplemented
        return DenseVector(self.vector * float(scale), dict(self.metadata))

    __rmul__ = __mul__

    def __neg__(self) -> "DenseVector":
        return self * -1.0

    def save(self, path: str | Path) -> Path:
        return _save(path, {"vector": self.vector}, {"kind": "dense", **self.metadata})

    def _repr_html_(self) -> str:
        return (f"<b>DenseVector</b> {html.escape(self.name)}: d_model={self.vector.shape[0]}, "
                f"norm={float(self.vector.norm()):.3g}, {html.escape(str(self.hook_name))}")

    def __repr__(self) -> str:
        return f"DenseVector({self.name!r}, norm={float(self.vector.norm()):.3g}, hook={self.hook_name!r})"


def _save(path: str | Path, tensors: dict[str, Tensor], metadata: dict[str, Any]) -> Path:
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_name(path.name + ".safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, path,
              metadata={"format": _FORMAT, "sas_lens": json.dumps(metadata)})
    return path


def load_vector(path: str | Path, *, model=None, sae=None) -> SASVector | DenseVector:
    """Load a vector saved by ``.save``; with ``model``/``sae``, refuse one that does not fit them.

    Raises:
        IncompatibleSAEError: the vector was built for another model, hook or SAE.
        ValueError: the file is not a sas_lens vector.
    """
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        header = handle.metadata() or {}
        if header.get("format") != _FORMAT:
            raise ValueError(f"{path} is not a sas_lens vector file (format {header.get('format')!r}).")
        metadata = json.loads(header["sas_lens"])
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    kind = metadata.pop("kind")
    vector: SASVector | DenseVector
    if kind == "sas":
        d_sae = metadata.pop("d_sae")
        vector = SASVector(tensors["indices"], tensors["values"], d_sae, metadata)
    else:
        vector = DenseVector(tensors["vector"], metadata)
    check_vector_fits(vector, model=model, sae=sae)
    return vector


def check_vector_fits(vector: SASVector | DenseVector, *, model=None, sae=None) -> None:
    """Raise :class:`IncompatibleSAEError` if ``vector`` was not built for ``model`` / ``sae``."""
    meta = vector.metadata
    if model is not None:
        if meta.get("model_name") and meta["model_name"] != model.cfg.model_name:
            raise IncompatibleSAEError(
                f"The vector {vector.name!r} was built on {meta['model_name']}, not {model.cfg.model_name}. "
                "Rebuild it on this model."
            )
        if vector.hook_name is not None and vector.hook_name not in model.hook_dict:
            raise IncompatibleSAEError(f"The vector's hook {vector.hook_name!r} is not in {model.cfg.model_name}.")
        if isinstance(vector, DenseVector) and vector.vector.shape[0] != model.cfg.d_model:
            raise IncompatibleSAEError(
                f"The dense vector has {vector.vector.shape[0]} dimensions but the model has d_model={model.cfg.d_model}."
            )
    if sae is not None and isinstance(vector, SASVector):
        if vector.d_sae != sae.cfg.d_sae or meta.get("sae_fingerprint") not in (None, sae_fingerprint(sae)):
            raise IncompatibleSAEError(
                f"The vector {vector.name!r} was built on another SAE ({meta.get('sae', {}).get('id', 'unknown')}, "
                f"d_sae={vector.d_sae}); this SAE has d_sae={sae.cfg.d_sae}. Rebuild the vector with this SAE, "
                "or load the SAE it was built on."
            )
