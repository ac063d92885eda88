"""Cross-talk between behaviour vectors, and whether their overlap predicts it.

Steering one behaviour should leave the others alone. For a set of vectors, each with its own
judge, :func:`cross_talk` steers each vector alone and scores the continuations with *every*
judge: the diagonal is each vector's own effect, the rest its cross-talk. :func:`interference_table`
puts each ordered pair's cross-talk beside the pair's overlap (Jaccard, weighted Jaccard of the
SAS supports; cosine of the decoded residual directions, for SAS and dense alike), and
:func:`overlap_predicts_interference` gives the rank correlation between them: the paper's claim
that overlap tells where vectors interfere, measured rather than assumed.

Example:
    >>> talk = cross_talk(model, vectors, judges, prompts, sae=sae, strengths=dict.fromkeys(vectors, 4.0),
    ...                   max_new_tokens=4)
    >>> summary = overlap_predicts_interference(interference_table(talk, vectors, sae))
    >>> summary.pairs.tolist()   # six ordered pairs of three vectors, for each overlap measure
    [6, 6, 6]
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence

import plotly.graph_objects as go
import torch

from sas_lens.analysis.figures import _LAYOUT
from sas_lens.steering.generation import generate
from sas_lens.steering.vectors import SASVector


def cross_talk(
    model,
    vectors: Mapping[str, object],
    judges: Mapping[str, Callable[[list[str]], float]],
    prompts: Sequence[str],
    *,
    sae=None,
    strengths: Mapping[str, float] | None = None,
    target_kl: float = 0.3,
    max_new_tokens: int = 24,
    backend: str = "tl",
):
    """Each vector steered alone (at its own strength), its continuations scored by every judge.

    Args:
        model: a HookedTransformer.
        vectors: ``{behaviour: vector}``; SAS and dense may be mixed.
        judges: ``{behaviour: texts → float}``, one per behaviour of ``vectors``.
        prompts: the prompts steered.
        sae: the SAE(s) of the SAS vectors.
        strengths: ``{behaviour: λ}``; by default each vector's λ at a mean next-token KL of
            ``target_kl`` on ``prompts`` (matched cost), positive.
        target_kl: see ``strengths``.
        max_new_tokens: tokens per continuation.
        backend: ``"tl"`` or ``"hf"``.

    Returns:
        A DataFrame, one row per (steered, judged) behaviour: ``lam``, ``score``, ``unsteered``,
        ``shift = score − unsteered``, and ``judge_sd``: the judge's standard deviation over the unsteered
        continuations, text by text (the scale that makes shifts of different judges comparable).

    Example:
        >>> talk = cross_talk(model, {"sentiment": sentiment}, {"sentiment": vader_mean}, prompts, sae=sae,
        ...                   strengths={"sentiment": 4.0}, max_new_tokens=4)
        >>> talk[["steered", "judged", "lam"]].values.tolist()
        [['sentiment', 'sentiment', 4.0]]
    """
    import pandas as pd

    from sas_lens.steering.strength import strength_for_kl

    missing = sorted(set(vectors) - set(judges))
    if missing:
        raise ValueError(f"No judge for {missing}: cross-talk scores every behaviour with its own judge.")
    prompts = list(prompts)

    def run(steering):
        return generate(
            model,
            prompts,
            steering=steering,
            sae=sae,
            max_new_tokens=max_new_tokens,
            backend=backend,
            batch_size=len(prompts),
        )

    unsteered_texts = run({})
    unsteered = {name: float(judge(unsteered_texts)) for name, judge in judges.items()}
    spread = {
        name: statistics.pstdev([float(judge([text])) for text in unsteered_texts]) for name, judge in judges.items()
    }
    rows = []
    for steered, vector in vectors.items():
        lam = (strengths or {}).get(steered)
        if lam is None:
            lam = strength_for_kl(model, vector, target_kl, prompts, sae=sae, high=1024.0, rtol=0.1)
        texts = run({vector: lam})
        for judged, judge in judges.items():
            score = float(judge(texts))
            rows.append(
                {
                    "steered": steered,
                    "judged": judged,
                    "lam": lam,
                    "score": score,
                    "unsteered": unsteered[judged],
                    "shift": score - unsteered[judged],
                    "judge_sd": spread[judged],
                }
            )
    return pd.DataFrame(rows)


def _decoded(vector, sae) -> torch.Tensor:
    if isinstance(vector, SASVector):
        return vector.values @ sae.W_dec.detach().float().cpu()[vector.indices]
    return vector.vector.float().cpu()


def interference_table(talk, vectors: Mapping[str, object], sae=None):
    """Each ordered pair's cross-talk beside its overlap.

    ``cross_talk`` is the shift vector A causes in B's judge, in standard deviations of B's judge over the
    unsteered continuations (``judge_sd``), so that judges on different scales compare; ``own_effect`` is
    B's own shift on the same scale. ``|cross_talk|`` is what overlap should predict. (A ratio to B's own
    shift would explode for a vector that barely moves its own judge.)

    Args:
        talk: a :func:`cross_talk` table.
        vectors: the same ``{behaviour: vector}``.
        sae: the SAE of the SAS vectors (for the decoded directions).

    Example:
        >>> table = interference_table(talk, vectors, sae)
        >>> len(table), float(table.jaccard.max()) <= 1.0
        (6, True)
    """
    import pandas as pd

    from sas_lens.analysis.overlap import jaccard, weighted_jaccard

    shift = {(r.steered, r.judged): r.shift / r.judge_sd if r.judge_sd else float("nan") for r in talk.itertuples()}
    rows = []
    for a, va in vectors.items():
        for b, vb in vectors.items():
            if a == b or (a, b) not in shift or (b, b) not in shift:
                continue
            row = {
                "steered": a,
                "judged": b,
                "method": _method(va, vb),
                "cross_talk": shift[(a, b)],
                "own_effect": shift[(b, b)],
            }
            da, db = _decoded(va, sae), _decoded(vb, sae)
            row["cosine_decoded"] = float(torch.nn.functional.cosine_similarity(da, db, dim=0))
            if isinstance(va, SASVector) and isinstance(vb, SASVector):
                ua, ub = va.dense(), vb.dense()
                row["jaccard"], row["weighted_jaccard"] = jaccard(ua != 0, ub != 0), weighted_jaccard(ua, ub)
            rows.append(row)
    return pd.DataFrame(rows)


def _method(va, vb) -> str:
    kinds = {"sas" if isinstance(v, SASVector) else "dense" for v in (va, vb)}
    return kinds.pop() if len(kinds) == 1 else "mixed"


def overlap_predicts_interference(table, measures: Sequence[str] = ("jaccard", "weighted_jaccard", "cosine_decoded")):
    """Spearman rank correlation between ``|cross_talk|`` and each overlap measure, per method.

    For ``cosine_decoded`` the absolute cosine is used (a vector pointing against another interferes
    as much as one pointing along it).

    Args:
        table: an :func:`interference_table`.
        measures: the overlap columns to correlate with.

    Example:
        >>> overlap_predicts_interference(interference_table(talk, vectors, sae)).measure.tolist()
        ['jaccard', 'weighted_jaccard', 'cosine_decoded']
    """
    import pandas as pd

    rows = []
    for method, pairs in table.groupby("method", sort=False):
        for measure in measures:
            if measure not in pairs or pairs[measure].isna().all():
                continue
            x = pairs[measure].abs() if measure == "cosine_decoded" else pairs[measure]
            y = pairs["cross_talk"].abs()
            rho = x.rank().corr(y.rank()) if len(pairs) > 2 else float("nan")
            rows.append({"method": method, "measure": measure, "pairs": len(pairs), "spearman": rho})
    return pd.DataFrame(rows)


def interference_figure(table, measure: str = "cosine_decoded", title: str | None = None) -> go.Figure:
    """``|cross_talk|`` against an overlap measure, one marker per ordered pair, coloured by method.

    Args:
        table: an :func:`interference_table`.
        measure: the overlap on the x axis.
        title: the figure's title.

    Example:
        >>> fig = interference_figure(interference_table(talk, vectors, sae), "weighted_jaccard")
        >>> [trace.name for trace in fig.data]
        ['sas']
    """
    fig = go.Figure()
    for method, pairs in table.groupby("method", sort=False):
        if measure not in pairs:
            continue
        x = pairs[measure].abs() if measure == "cosine_decoded" else pairs[measure]
        fig.add_scatter(
            x=x,
            y=pairs["cross_talk"].abs(),
            mode="markers",
            name=method,
            text=[f"{a} → {b}" for a, b in zip(pairs["steered"], pairs["judged"])],
        )
    fig.update_layout(
        title=title or f"Cross-talk against {measure}",
        xaxis_title=measure,
        yaxis_title="|cross-talk| (judge standard deviations)",
        **_LAYOUT,
    )
    return fig
