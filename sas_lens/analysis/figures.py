"""Plotly figures of vectors, overlaps, widths, token traces and evaluation sweeps.

Every function returns a ``plotly.graph_objects.Figure`` and never shows it: in
Jupyter the figure renders as the cell's value; :mod:`sas_lens.analysis.report` embeds it.

Example:
    >>> fig = top_latents_figure(sl.top_latents(vec, sae, model))
    >>> fig.layout.title.text
    'Top latents'
"""

from __future__ import annotations

import plotly.graph_objects as go

POSITIVE, NEGATIVE = "#2b6cb0", "#c53030"
_LAYOUT = dict(template="plotly_white", margin=dict(l=60, r=20, t=50, b=50), height=380)


def top_latents_figure(table, title: str = "Top latents") -> go.Figure:
    """Horizontal bars of a :func:`~sas_lens.analysis.attribution.top_latents` table; hover shows the logit lens.

    Args:
        table: the DataFrame :func:`~sas_lens.analysis.attribution.top_latents` returns.
        title: the figure's title.

    Example:
        >>> fig = top_latents_figure(sl.top_latents(vec, sae, model))   # in Jupyter, the cell's value renders
        >>> len(fig.data[0].y) == len(vec.indices)
        True
    """
    rows = table.iloc[::-1]  # the largest on top
    hover = [
        f"promotes: {', '.join(map(str, up))}<br>suppresses: {', '.join(map(str, down))}"
        for up, down in zip(rows["promotes"], rows["suppresses"])
    ]
    fig = go.Figure(
        go.Bar(
            x=rows["value"],
            y=[f"latent {i}" for i in rows["latent"]],
            orientation="h",
            marker_color=[POSITIVE if v > 0 else NEGATIVE for v in rows["value"]],
            hovertext=hover,
            hoverinfo="x+y+text",
        )
    )
    fig.update_layout(title=title, xaxis_title="value in the vector", **_LAYOUT)
    return fig


def overlap_heatmap(matrix, measure: str = "jaccard", title: str | None = None) -> go.Figure:
    """Heatmap of one measure of an :class:`~sas_lens.analysis.overlap.OverlapMatrix`.

    Args:
        matrix: from :func:`~sas_lens.analysis.overlap.overlap_matrix`.
        measure: ``jaccard``, ``weighted_jaccard``, ``jaccard_pos``, ``jaccard_neg`` or ``cosine_decoded``.
        title: the figure's title (default: the measure).

    Example:
        >>> fig = overlap_heatmap(sl.overlap_matrix([sentiment, caution, formality]), "weighted_jaccard")
        >>> fig.data[0].z.shape
        (3, 3)
    """
    table = matrix.measure(measure)
    if table is None:
        raise ValueError(f"This overlap matrix has no {measure!r}; pass sae= to overlap_matrix for it.")
    signed = measure.startswith("cosine")
    fig = go.Figure(
        go.Heatmap(
            z=table.values,
            x=list(table.columns),
            y=list(table.index),
            zmin=-1 if signed else 0,
            zmax=1,
            colorscale="RdBu" if signed else "Blues",
            text=table.round(2).values,
            texttemplate="%{text}",
        )
    )
    fig.update_layout(title=title or f"Overlap between vectors ({measure.replace('_', ' ')})", **_LAYOUT)
    fig.update_yaxes(autorange="reversed")
    return fig


def monosemanticity_figure(table, title: str = "Monosemanticity across SAE widths") -> go.Figure:
    """Effective number of latents and support size per SAE width, with the top-1 share on a second axis.

    ``table``: rows indexed by SAE label with ``d_sae, support, effective_latents, top1_share``
    (from :func:`~sas_lens.analysis.monosemanticity.width_comparison`); several behaviours may be
    stacked with a ``behaviour`` column.

    Args:
        table: see above.
        title: the figure's title.

    Example:
        >>> table, _ = sl.width_comparison(model, {"narrow": sae, "wide": wide_sae}, "demo:sentiment", top_k=4)
        >>> fig = monosemanticity_figure(table)
    """
    fig = go.Figure()
    groups = table.groupby("behaviour") if "behaviour" in table else [("", table)]
    for behaviour, rows in groups:
        rows = rows.sort_values("d_sae")
        label = f"{behaviour}: " if behaviour else ""
        fig.add_trace(
            go.Scatter(
                x=rows["d_sae"], y=rows["effective_latents"], mode="lines+markers", name=f"{label}effective latents"
            )
        )
        fig.add_trace(
            go.Scatter(
                x=rows["d_sae"],
                y=rows["top1_share"],
                mode="lines+markers",
                yaxis="y2",
                line=dict(dash="dot"),
                name=f"{label}top-1 share",
            )
        )
    fig.update_layout(
        title=title,
        xaxis=dict(title="SAE width (latents)", type="log"),
        yaxis=dict(title="effective number of latents"),
        yaxis2=dict(title="top-1 share of |v|", overlaying="y", side="right", range=[0, 1]),
        **_LAYOUT,
    )
    return fig


def token_activation_figure(
    tokens: list[str], activations, latents: list[int], title: str = "Latent activation per token"
) -> go.Figure:
    """Heatmap of :func:`~sas_lens.analysis.attribution.trace_latents`: latents down, tokens across.

    Args:
        tokens: the tokens, as :func:`~sas_lens.analysis.attribution.trace_latents` returns them.
        activations: ``[n_tokens, len(latents)]``.
        latents: the latent ids (row labels).
        title: the figure's title.

    Example:
        >>> tokens, acts = sl.trace_latents(model, sae, "the movie was good", [0, 3])
        >>> z = token_activation_figure(tokens, acts, [0, 3]).data[0].z   # a row per latent, a column per token
        >>> (len(z), len(z[0])) == (2, len(tokens))
        True
    """
    fig = go.Figure(
        go.Heatmap(
            z=activations.T.tolist(),
            x=list(range(len(tokens))),
            y=[f"latent {i}" for i in latents],
            colorscale="Viridis",
            customdata=[tokens] * len(latents),
            hovertemplate="%{customdata}: %{z:.3g}<extra></extra>",
        )
    )
    fig.update_xaxes(tickmode="array", tickvals=list(range(len(tokens))), ticktext=tokens, tickangle=-45)
    fig.update_layout(title=title, **_LAYOUT)
    return fig


def lambda_sweep_figure(results, title: str = "Behaviour probability across λ") -> go.Figure:
    """λ curves with confidence bands: one line per ``method`` (and ``behaviour`` if present).

    ``results``: a DataFrame with ``method, lam, mean, ci_low, ci_high``.

    Args:
        results: see above.
        title: the figure's title.

    Example:
        >>> import pandas as pd
        >>> fig = lambda_sweep_figure(pd.DataFrame({"method": ["sas"] * 2, "lam": [0.0, 4.0], "mean": [0.5, 0.6],
        ...                                       "ci_low": [0.45, 0.55], "ci_high": [0.55, 0.65]}))
        >>> len(fig.data) >= 1
        True
    """
    fig = go.Figure()
    keys = ["behaviour", "method"] if "behaviour" in results else ["method"]
    for key, rows in results.groupby(keys):
        rows = rows.sort_values("lam")
        name = " / ".join(map(str, key if isinstance(key, tuple) else (key,)))
        fig.add_trace(
            go.Scatter(
                x=list(rows["lam"]) + list(rows["lam"])[::-1],
                y=list(rows["ci_high"]) + list(rows["ci_low"])[::-1],
                fill="toself",
                line=dict(width=0),
                opacity=0.2,
                showlegend=False,
                hoverinfo="skip",
                name=name,
            )
        )
        fig.add_trace(go.Scatter(x=rows["lam"], y=rows["mean"], mode="lines+markers", name=name))
    fig.update_layout(
        title=title, xaxis_title="λ", yaxis=dict(title="p(behaviour-matching answer)", range=[0, 1]), **_LAYOUT
    )
    return fig


def layer_lambda_heatmap(results, value: str = "mean", title: str = "Behaviour probability, layer × λ") -> go.Figure:
    """Heatmap of ``value`` over ``layer`` (rows) and ``lam`` (columns).

    Args:
        results: a DataFrame with ``layer``, ``lam`` and ``value``'s columns (e.g. A/B cells of ``sas-lens eval``).
        value: the column to colour by.
        title: the figure's title.

    Example:
        >>> import pandas as pd
        >>> cells = pd.DataFrame({"layer": [6, 6, 9, 9], "lam": [0, 4, 0, 4], "mean": [0.5, 0.7, 0.5, 0.9]})
        >>> [[float(v) for v in row] for row in layer_lambda_heatmap(cells).data[0].z]   # rows: layers 6, 9; columns: λ 0, 4
        [[0.5, 0.7], [0.5, 0.9]]
    """
    table = results.pivot_table(index="layer", columns="lam", values=value)
    fig = go.Figure(
        go.Heatmap(
            z=table.values,
            x=[str(c) for c in table.columns],
            y=[str(i) for i in table.index],
            colorscale="RdBu",
            zmid=0.5,
            text=table.round(2).values,
            texttemplate="%{text}",
        )
    )
    fig.update_layout(title=title, xaxis_title="λ", yaxis_title="layer", **_LAYOUT)
    return fig
