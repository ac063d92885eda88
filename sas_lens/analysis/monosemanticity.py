"""How few latents carry a sparse steering vector, and how that moves with the SAE's width.

For a vector ``v`` with weights ``p = |v| / Σ|v|`` over its support:

- support size: the number of nonzero latents;
- effective number of latents: ``exp(−Σ p log p)``, the exponential of the
  entropy of ``p`` (1 when one latent carries everything, the support size when
  all carry the same);
- top-1 and top-5 share: the part of ``Σ|v|`` in the 1 and 5 largest ``|v|``.

The paper claims wider SAEs give more monosemantic vectors: :func:`width_comparison`
builds the same behaviour's vector on several SAEs of one hook and tabulates these
figures per width, so the claim can be checked on any model.

Example:
    >>> import torch
    >>> from sas_lens.steering.vectors import SASVector
    >>> v = SASVector(torch.tensor([1, 4]), torch.tensor([3.0, -1.0]), d_sae=8)
    >>> monosemanticity(v)["top1_share"]
    0.75
"""

from __future__ import annotations

import math
from typing import Any

from sas_lens.steering.vectors import SASVector


def monosemanticity(vector: SASVector) -> dict[str, Any]:
    """Support size, effective number of latents, and the top-1 / top-5 shares of ``Σ|v|``.

    Args:
        vector: an SAS vector.

    Example:
        >>> import torch
        >>> from sas_lens.steering.vectors import SASVector
        >>> figures = monosemanticity(SASVector(torch.tensor([1, 4]), torch.tensor([3.0, -1.0]), 8))
        >>> figures["support"], round(figures["top1_share"], 2)
        (2, 0.75)
    """
    if not isinstance(vector, SASVector):
        raise TypeError(f"monosemanticity needs an SASVector, got {type(vector).__name__}.")
    magnitude = vector.values.abs().double()
    total = float(magnitude.sum())
    if total == 0.0:
        return {
            "name": vector.name,
            "d_sae": vector.d_sae,
            "support": 0,
            "effective_latents": 0.0,
            "top1_share": 0.0,
            "top5_share": 0.0,
        }
    p = magnitude[magnitude > 0] / total
    ordered = p.sort(descending=True).values
    return {
        "name": vector.name,
        "d_sae": vector.d_sae,
        "support": int((vector.values != 0).sum()),
        "effective_latents": math.exp(float(-(p * p.log()).sum())),
        "top1_share": float(ordered[:1].sum()),
        "top5_share": float(ordered[:5].sum()),
    }


def width_comparison(model, saes, pairs, **vector_kwargs: Any):
    """Build one behaviour's SAS vector on each SAE (all at one hook) and tabulate its monosemanticity.

    The residuals are collected once and shared by every SAE.

    Args:
        model: the HookedTransformer the SAEs read.
        saes: SAEs of different widths on the same hook (a list, or a dict whose keys are labels).
        pairs: the contrastive pairs (anything :func:`sas_lens.load_pairs` reads).
        vector_kwargs: passed to :func:`sas_lens.sas_vector` (``tau``, ``read`` …).

    Returns:
        ``(table, vectors)``: a DataFrame with one row per SAE, narrowest first, and the vectors.

    Example:
        >>> table, vectors = sl.width_comparison(model, {"48": sae, "96": wide_sae}, "demo:sentiment")
        >>> len(table), sorted(vectors)
        (2, ['48', '96'])
    """
    import pandas as pd

    from sas_lens.loading.saes import sae_hook_name
    from sas_lens.steering.build_vectors import sas_vectors

    labelled = list(saes.items()) if isinstance(saes, dict) else [(f"{s.cfg.d_sae}", s) for s in saes]
    if not labelled:
        raise ValueError("width_comparison needs at least one SAE.")
    hooks = {sae_hook_name(sae) for _, sae in labelled}
    if len(hooks) != 1:
        raise ValueError(f"width_comparison compares SAEs of one hook; these read {sorted(hooks)}.")
    narrowest_first = dict(sorted(labelled, key=lambda item: item[1].cfg.d_sae))
    vectors = sas_vectors(model, narrowest_first, pairs, **vector_kwargs)  # one pass over the pairs
    rows = [{"sae": label, **monosemanticity(vector)} for label, vector in vectors.items()]
    return pd.DataFrame(rows).set_index("sae"), vectors


def compare_widths(model, saes, vectors: list[SASVector]):
    """:func:`width_comparison` for each vector's own pair set and settings, stacked with a ``behaviour`` column.

    Each vector is rebuilt on every SAE in ``saes`` from the pair source and every
    setting recorded in its provenance (rule, τ, read, gate, ...: see
    :func:`~sas_lens.steering.build_vectors.rebuild_settings`).

    Args:
        model: the HookedTransformer the SAEs read.
        saes: SAEs of one hook, of different widths.
        vectors: SAS vectors whose provenance names a loadable pair set.

    Example:
        >>> table = compare_widths(model, [sae, wide_sae], [sl.sas_vector(model, sae, "demo:sentiment")])
    """
    import pandas as pd

    from sas_lens.loading.pairs import load_pairs
    from sas_lens.steering.build_vectors import rebuild_settings

    tables = []
    for vector in vectors:
        extraction = vector.provenance.extraction
        source = extraction.get("pairs", {}).get("source")
        if not source or source == "<in memory>":
            raise ValueError(f"{vector.name!r} records no pair file to rebuild it from; use width_comparison().")
        settings = rebuild_settings(vector)
        pairs = load_pairs(source, name=vector.name, limit=extraction["pairs"].get("n"))
        table, _ = width_comparison(model, saes, pairs, **settings)
        tables.append(table.assign(behaviour=vector.name))
    return pd.concat(tables)
