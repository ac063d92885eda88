"""Composition grids: two vectors steered at once over a grid of (λ_a, λ_b), each behaviour scored by its own judge.

The paper's claim is that sparse vectors compose: steering two behaviours at once, each with its
own λ, shifts each independently. A grid measures it: every λ pair steers the same prompts (or
A/B items), every judge scores every cell, and the fluency of the continuations is kept beside.
Independence shows as judge A depending on λ_a alone (flat along λ_b), and the cross-talk of a
vector as how much it moves the *other* behaviour's judge.

Judges are of two kinds: a text judge (any ``texts → float``: the VADER sentiment score of
:mod:`sas_lens.evaluation.judges`, a topic similarity) scores the continuations; an
:class:`ABJudge` scores the steered model on A/B items directly.

Example:
    >>> grid = sl.composition_grid(model, sae, {sentiment: [-4, 0, 4], caution: [0, 4]},
    ...                            {"sentiment": vader_mean, "caution": ABJudge(sl.load_pairs("demo:caution"))},
    ...                            prompts, max_new_tokens=4, progress=False)
    >>> len(grid)   # 3 × 2 cells, 2 judges
    12
    >>> [fig.layout.title.text for fig in composition_heatmaps(grid)]
    ['Composition: sentiment', 'Composition: caution']
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import plotly.graph_objects as go

from sas_lens.analysis.figures import _LAYOUT
from sas_lens.steering.fluency import fluency
from sas_lens.steering.generation import generate


@dataclass(frozen=True)
class ABJudge:
    """Scores a steering by the mean p(behaviour-matching answer) on A/B ``items`` (no generation)."""

    items: object  # a PairSet of A/B items

    def score(self, model, steering: Mapping, sae) -> float:
        """The mean p(matching answer) under ``steering``.

        Args:
            model: the steered model.
            steering: ``{vector: λ}``.
            sae: the SAE(s) of SAS vectors.

        Example:
            >>> 0.0 <= ABJudge(sl.load_pairs("demo:caution")).score(model, {caution: 4.0}, sae) <= 1.0
            True
        """
        from sas_lens.steering.scoring import ab_probabilities

        return float(ab_probabilities(model, self.items, steering=steering, sae=sae).mean())


def composition_grid(
    model,
    sae,
    grids: Mapping,
    judges: Mapping[str, Callable[[list[str]], float] | ABJudge],
    prompts: Sequence[str] = (),
    *,
    max_new_tokens: int = 24,
    backend: str = "tl",
    positions: str = "all",
    progress: bool = True,
):
    """Every λ pair of two (or more) vectors, each cell scored by every judge, with the continuations' fluency.

    Args:
        model: a HookedTransformer.
        sae: the SAE(s) of the SAS vectors (``None`` for dense vectors only).
        grids: ``{vector: λ values}``, two vectors for a grid (more make a hypercube); SAS, dense or mixed.
        judges: ``{name: judge}``: a text judge (``texts → float``) scores the continuations of
            ``prompts``; an :class:`ABJudge` scores the steered model on its items.
        prompts: the prompts steered (needed by text judges).
        max_new_tokens: tokens per continuation.
        backend: ``"tl"`` or ``"hf"`` (see :func:`~sas_lens.steering.generation.generate`).
        positions: where steering acts during generation.
        progress: show a tqdm bar.

    Returns:
        A tidy DataFrame, one row per cell and judge: ``lam_<i>`` for each vector (``df.attrs["vectors"]``
        names them in order), ``judge``, ``score``, and the continuations' ``perplexity`` (under the
        unsteered model) and ``distinct_2`` (empty for A/B-only grids).

    Raises:
        ValueError: fewer than two vectors, an empty λ list, a non-finite λ, no judges, or text judges
            without prompts.

    Example:
        >>> grid = composition_grid(model, sae, {sentiment: [-4, 0, 4], formality: [-4, 4]},
        ...                         {"sentiment": vader_mean}, prompts, max_new_tokens=4, progress=False)
        >>> grid.attrs["vectors"] == [sentiment.name, formality.name], sorted(set(grid.lam_0))
        (True, [-4.0, 0.0, 4.0])
    """
    import math

    import pandas as pd
    from tqdm.auto import tqdm

    vectors = list(grids)
    if len(vectors) < 2:
        raise ValueError("A composition grid needs two vectors or more: {vec_a: [λ...], vec_b: [λ...]}.")
    for vector, lams in grids.items():
        if not len(lams) or not all(isinstance(x, (int, float)) and math.isfinite(x) for x in lams):
            raise ValueError(f"The λ values of {vector.name!r} must be a non-empty list of finite numbers, got {lams}.")
    if not judges:
        raise ValueError("Give at least one judge: {name: texts → float} or {name: ABJudge(items)}.")
    text_judges = {name: j for name, j in judges.items() if not isinstance(j, ABJudge)}
    prompts = list(prompts)
    if text_judges and not prompts:
        raise ValueError(f"The text judges {sorted(text_judges)} need prompts to steer.")
    cells = list(itertools.product(*(grids[v] for v in vectors)))
    rows = []
    for lams in tqdm(cells, desc="composition grid", unit="cell", disable=not progress):
        steering = {vector: float(lam) for vector, lam in zip(vectors, lams) if lam != 0}
        where = {f"lam_{i}": float(lam) for i, lam in enumerate(lams)}
        costs = {"perplexity": None, "distinct_2": None}
        scores = {}
        if text_judges:
            texts = generate(
                model,
                prompts,
                steering=steering,
                sae=sae,
                max_new_tokens=max_new_tokens,
                backend=backend,
                positions=positions,
                batch_size=len(prompts),
            )
            costs = fluency(model, prompts, texts)
            scores.update({name: float(judge(texts)) for name, judge in text_judges.items()})
        for name, judge in judges.items():
            if isinstance(judge, ABJudge):
                scores[name] = judge.score(model, steering, sae)
        rows += [{**where, "judge": name, "score": scores[name], **costs} for name in judges]
    table = pd.DataFrame(rows)
    table.attrs["vectors"] = [v.name for v in vectors]
    return table


def independence(grid) -> "object":
    """How much each judge depends on each vector: the spread of its score along each λ axis.

    For judge J and vector i: the mean, over the other vectors' λ, of ``max − min`` of J along λ_i.
    A composition is independent when each judge moves along its own vector's axis and stays flat
    along the others' (its cross-talk).

    Args:
        grid: a :func:`composition_grid` table.

    Example:
        >>> list(independence(grid).columns)
        ['judge', 'spread along sentiment', 'spread along caution']
    """
    import pandas as pd

    lam_columns = [c for c in grid.columns if c.startswith("lam_")]
    names = grid.attrs.get("vectors") or lam_columns
    rows = []
    for judge, cells in grid.groupby("judge", sort=False):
        row = {"judge": judge}
        for column, name in zip(lam_columns, names):
            others = [c for c in lam_columns if c != column]
            spread = (
                cells.groupby(others)["score"].agg(lambda s: s.max() - s.min())
                if others
                else pd.Series([cells["score"].max() - cells["score"].min()])
            )
            row[f"spread along {name}"] = float(spread.mean())
        rows.append(row)
    return pd.DataFrame(rows)


def composition_heatmaps(grid, title: str = "Composition") -> list[go.Figure]:
    """One heatmap per judge over (λ of the first vector, λ of the second).

    Args:
        grid: a two-vector :func:`composition_grid` table.
        title: prefix of each figure's title.

    Example:
        >>> composition_heatmaps(grid)[0].data[0].z.shape   # λ of the second vector × λ of the first
        (2, 3)
    """
    names = grid.attrs.get("vectors") or ["a", "b"]
    figures = []
    for judge, cells in grid.groupby("judge", sort=False):
        table = cells.pivot_table(index="lam_1", columns="lam_0", values="score")
        fig = go.Figure(
            go.Heatmap(
                z=table.values,
                x=[f"{c:g}" for c in table.columns],
                y=[f"{i:g}" for i in table.index],
                colorscale="RdBu",
                text=table.round(3).values,
                texttemplate="%{text}",
            )
        )
        fig.update_layout(
            title=f"{title}: {judge}", xaxis_title=f"λ {names[0]}", yaxis_title=f"λ {names[1]}", **_LAYOUT
        )
        figures.append(fig)
    return figures


def independence_curves(grid, judge: str, along: int = 0, title: str | None = None) -> go.Figure:
    """``judge``'s score against the λ of vector ``along``, one line per λ of the other vector.

    Parallel lines: the other vector leaves this judge alone; lines that fan out: interference.

    Args:
        grid: a two-vector :func:`composition_grid` table.
        judge: which judge to plot.
        along: the vector on the x axis (0 or 1).
        title: the figure's title.

    Example:
        >>> len(independence_curves(grid, "sentiment", along=0).data)   # a line per λ of the other vector
        2
    """
    names = grid.attrs.get("vectors") or ["a", "b"]
    other = 1 - along
    cells = grid[grid["judge"] == judge]
    if cells.empty:
        raise ValueError(f"No judge {judge!r} in this grid; judges: {sorted(grid['judge'].unique())}.")
    fig = go.Figure()
    for lam, line in cells.groupby(f"lam_{other}"):
        line = line.sort_values(f"lam_{along}")
        fig.add_scatter(
            x=line[f"lam_{along}"], y=line["score"], mode="lines+markers", name=f"λ {names[other]} = {lam:g}"
        )
    fig.update_layout(
        title=title or f"{judge} against λ {names[along]}",
        xaxis_title=f"λ {names[along]}",
        yaxis_title=judge,
        **_LAYOUT,
    )
    return fig
