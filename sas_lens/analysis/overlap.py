"""Overlap between behaviour vectors of one SAE: which latents they share, and how much.

For SAS vectors ``u, v`` with supports ``S(u), S(v)``:

- ``jaccard``: ``|S(u) ∩ S(v)| / |S(u) ∪ S(v)|``; ``jaccard_pos`` / ``jaccard_neg`` the
  same on the positive and negative parts (latents a vector reinforces / suppresses);
- ``weighted_jaccard``: ``Σ min(|u|, |v|) / Σ max(|u|, |v|)``, which counts a shared
  latent by how much both vectors lean on it, whatever the signs (``v`` and ``−v`` score 1:
  they use the same latents); the report's heatmap and the demo's table show this one;
- ``signed_weighted_jaccard``: the same with each latent's ``min`` counted negative where the
  signs differ, in ``[−1, 1]`` (``v`` and ``−v`` score −1: they pull the same latents apart);
- ``cosine``: cosine of the sparse vectors; ``cosine_decoded``: cosine of the residual
  directions they decode to, ``v · W_dec`` (needs the SAE).

Two vectors with no latents at all have Jaccard 0 (nothing is shared), not NaN.

Example:
    >>> import torch
    >>> from sas_lens.steering.vectors import SASVector
    >>> u = SASVector(torch.tensor([0, 1]), torch.tensor([1.0, 2.0]), d_sae=4)
    >>> v = SASVector(torch.tensor([1, 2]), torch.tensor([2.0, 5.0]), d_sae=4)
    >>> float(overlap_matrix({"u": u, "v": v}).jaccard.loc["u", "v"])
    0.3333333333333333
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from sas_lens.errors import IncompatibleSAEError
from sas_lens.steering.vectors import SASVector, check_vector_fits

MEASURES = (
    "jaccard",
    "jaccard_pos",
    "jaccard_neg",
    "weighted_jaccard",
    "signed_weighted_jaccard",
    "cosine",
    "cosine_decoded",
)


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else 0.0


def jaccard(u: torch.Tensor, v: torch.Tensor) -> float:
    """Jaccard of two boolean masks.

    Args:
        u, v: boolean masks of one shape (supports).

    Example:
        >>> jaccard(torch.tensor([True, True, False]), torch.tensor([True, False, True]))
        0.3333333333333333
    """
    return _ratio(float((u & v).sum()), float((u | v).sum()))


def weighted_jaccard(u: torch.Tensor, v: torch.Tensor) -> float:
    """``Σ min(|u|, |v|) / Σ max(|u|, |v|)`` of two dense vectors.

    Args:
        u, v: dense vectors of one shape.

    Example:
        >>> weighted_jaccard(torch.tensor([2.0, 0.0]), torch.tensor([1.0, -1.0]))
        0.3333333333333333
    """
    a, b = u.abs().double(), v.abs().double()
    return _ratio(float(torch.minimum(a, b).sum()), float(torch.maximum(a, b).sum()))


def signed_weighted_jaccard(u: torch.Tensor, v: torch.Tensor) -> float:
    """``Σ sign(u·v)·min(|u|, |v|) / Σ max(|u|, |v|)``: :func:`weighted_jaccard` with opposite signs counted against.

    Args:
        u, v: dense vectors of one shape.

    Example:
        >>> signed_weighted_jaccard(torch.tensor([2.0, 1.0]), torch.tensor([-2.0, -1.0]))
        -1.0
    """
    a, b = u.double(), v.double()
    agreement = torch.sign(a) * torch.sign(b)
    return _ratio(
        float((agreement * torch.minimum(a.abs(), b.abs())).sum()), float(torch.maximum(a.abs(), b.abs()).sum())
    )


def cosine(u: torch.Tensor, v: torch.Tensor) -> float:
    """Cosine similarity in float64; 0 when either vector is zero.

    Args:
        u, v: vectors of one shape.

    Example:
        >>> cosine(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 0.0]))
        0.0
    """
    return _ratio(float(u.double() @ v.double()), float(u.double().norm() * v.double().norm()))


def pair_overlap(u: SASVector, v: SASVector, sae=None) -> dict[str, float]:
    """Every overlap measure of two vectors of one SAE (``cosine_decoded`` only with ``sae``).

    Args:
        u, v: SAS vectors of one SAE.
        sae: that SAE, for the cosine of the decoded directions.

    Example:
        >>> 0 <= pair_overlap(sentiment, caution, sae)["weighted_jaccard"] <= 1
        True
    """
    _check_same_sae([u, v])
    a, b = u.dense(), v.dense()
    out = {
        "jaccard": jaccard(a != 0, b != 0),
        "jaccard_pos": jaccard(a > 0, b > 0),
        "jaccard_neg": jaccard(a < 0, b < 0),
        "weighted_jaccard": weighted_jaccard(a, b),
        "signed_weighted_jaccard": signed_weighted_jaccard(a, b),
        "cosine": cosine(a, b),
    }
    if sae is not None:
        W_dec = sae.W_dec.detach().float().cpu()
        out["cosine_decoded"] = cosine(a @ W_dec, b @ W_dec)
    return out


def shared_latents(u: SASVector, v: SASVector):
    """The latents in both supports, with each vector's value, largest joint magnitude first.

    Args:
        u, v: SAS vectors of one SAE.

    Example:
        >>> table = shared_latents(sentiment, caution)
    """
    import pandas as pd

    _check_same_sae([u, v])
    a, b = u.dense(), v.dense()
    both = torch.nonzero((a != 0) & (b != 0)).squeeze(-1)
    order = (a[both].abs() + b[both].abs()).argsort(descending=True)
    both = both[order]
    return pd.DataFrame({"latent": both.tolist(), u.name: a[both].tolist(), v.name: b[both].tolist()})


@dataclass(frozen=True)
class OverlapMatrix:
    """One square DataFrame per measure, indexed by vector name (see the module docstring)."""

    names: list[str]
    jaccard: object
    jaccard_pos: object
    jaccard_neg: object
    weighted_jaccard: object
    signed_weighted_jaccard: object
    cosine: object
    cosine_decoded: object | None

    def measure(self, name: str):
        if name not in MEASURES:
            raise ValueError(f"Unknown overlap measure {name!r}; choose one of {list(MEASURES)}.")
        return getattr(self, name)

    def _repr_html_(self) -> str:
        return (
            "<b>Jaccard of supports</b>"
            + self.jaccard.round(3)._repr_html_()
            + "<b>Weighted Jaccard</b>"
            + self.weighted_jaccard.round(3)._repr_html_()
        )


def overlap_matrix(vectors: Sequence[SASVector] | dict[str, SASVector], sae=None) -> OverlapMatrix:
    """Pairwise overlap of SAS vectors built on one SAE.

    Args:
        vectors: a list (labelled by each vector's name) or a dict ``{label: vector}``.
        sae: the SAE they were built on; needed for ``cosine_decoded`` only.

    Raises:
        IncompatibleSAEError: the vectors come from different SAEs, or ``sae`` is not theirs.

    Example:
        >>> matrix = sl.overlap_matrix([sentiment, caution, formality], sae=sae)
        >>> matrix.jaccard.shape
        (3, 3)
    """
    import pandas as pd

    labelled = list(vectors.items()) if isinstance(vectors, dict) else [(v.name, v) for v in vectors]
    if not labelled:
        raise ValueError("overlap_matrix needs at least one vector.")
    names = [label for label, _ in labelled]
    if len(set(names)) != len(names):
        raise ValueError(
            f"Vector names must be unique to label the matrix, got {names}; pass a dict {{label: vector}}."
        )
    vecs = [v for _, v in labelled]
    _check_same_sae(vecs)
    if sae is not None:
        for vec in vecs:
            check_vector_fits(vec, sae=sae)
    tables = {m: pd.DataFrame(0.0, index=names, columns=names) for m in MEASURES}
    for i, u in enumerate(vecs):
        for j, v in enumerate(vecs[i:], start=i):
            for measure, value in pair_overlap(u, v, sae).items():
                tables[measure].iloc[i, j] = tables[measure].iloc[j, i] = value
    decoded = tables.pop("cosine_decoded")
    return OverlapMatrix(names=names, cosine_decoded=decoded if sae is not None else None, **tables)


def _check_same_sae(vectors: Sequence[SASVector]) -> None:
    for vec in vectors:
        if not isinstance(vec, SASVector):
            raise TypeError(f"Overlap is measured between SAS vectors, got {type(vec).__name__}.")
    first = vectors[0]
    for vec in vectors[1:]:
        if not vec.sae_identity.same_sae_as(first.sae_identity):
            raise IncompatibleSAEError(
                f"{first.name!r} and {vec.name!r} were built on different SAEs (d_sae {first.d_sae} vs {vec.d_sae}, "
                "or different weights), so their latents do not correspond. Compare vectors of one SAE."
            )
