"""One self-contained HTML report of steering vectors: cards, overlap, widths, and extra sections.

The file opens offline: plotly's JavaScript is inlined once, every figure is a
``div`` that uses it, and there are no other assets.

Example:
    >>> index = sl.latent_index(model, sae, "corpus/", n_tokens=200, progress=False)
    >>> page = write_report("report.html", [sentiment, caution], model=model, sae=sae, index=index)
    >>> 'src="http' in page.read_text()   # everything inlined: no script from a network
    False
"""

from __future__ import annotations

import datetime
import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sas_lens.steering.card import card_fields
from sas_lens.steering.vectors import DenseVector, SASVector

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #1a202c; }
h1 { margin-bottom: 0.2rem; } .meta { color: #4a5568; }
section, .card { border: 1px solid #e2e8f0; border-radius: 8px; padding: 1rem 1.2rem; margin: 1.2rem 0; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 0.5rem 0; }
th, td { border-bottom: 1px solid #e2e8f0; padding: 0.25rem 0.5rem; text-align: left; vertical-align: top; }
mark { background: #fefcbf; font-weight: 600; } .pos { color: #2b6cb0; } .neg { color: #c53030; }
.context { font-family: ui-monospace, monospace; white-space: pre-wrap; font-size: 0.8rem; }
"""


@dataclass
class Section:
    """A titled block of the report: any HTML and any plotly figures (e.g. an evaluation's results)."""

    title: str
    html: str = ""
    figures: list = field(default_factory=list)


def _figure_html(fig) -> str:
    return fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False})


def _table_html(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{row.get(c, '')}</td>" for c in columns) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _context_html(context: str) -> str:
    """A context from :func:`~sas_lens.analysis.attribution.mark_context`, its «peak» token highlighted."""
    escaped = html.escape(context)
    return f'<div class="context">{escaped.replace("«", "<mark>").replace("»", "</mark>")}</div>'


def _metadata_rows(vector) -> list[dict[str, str]]:
    return [{"field": html.escape(k), "value": html.escape(v)} for k, v in card_fields(vector).items()]


def vector_card(vector, *, model=None, sae=None, index=None, k: int = 10, scores=None) -> str:
    """The HTML card of one vector: provenance, and for SAS vectors their monosemanticity and top latents.

    Args:
        vector: an SAS or dense vector.
        model, sae: for the top-latent table (logit lens).
        index: a latent index, for contexts and frequencies.
        k: top latents shown.
        scores: the SAE's :func:`~sas_lens.steering.output_scores.output_scores`, for an output-score column.

    Example:
        >>> html = vector_card(vec, model=model, sae=sae)
        >>> vec.name in html and html.count("<tr>") > len(vec.indices)   # a row per latent, and the metadata
        True
    """
    from sas_lens.analysis.monosemanticity import monosemanticity

    parts = [
        f"<div class='card'><h3>{html.escape(vector.name)}</h3>",
        _table_html(_metadata_rows(vector), ["field", "value"]),
    ]
    if isinstance(vector, DenseVector):
        parts.append(f"<p>Dense (CAA) vector, norm {float(vector.vector.norm()):.4g}.</p></div>")
        return "".join(parts)
    figures = monosemanticity(vector)
    parts.append(
        f"<p>{figures['support']} of {vector.d_sae} latents; effective number {figures['effective_latents']:.2f}; "
        f"top-1 share {figures['top1_share']:.2f}, top-5 share {figures['top5_share']:.2f}.</p>"
    )
    if vector.diagnostics is not None:  # a vector built in this run: why Algorithm 1 kept what it kept
        parts.append(f"<p class='meta'>{html.escape(vector.diagnostics.summary())}</p>")
        if len(vector.diagnostics.table):
            parts.append(_figure_html(vector.diagnostics.figure()))
    if model is not None and sae is not None and len(vector):
        from sas_lens.analysis.attribution import top_latents
        from sas_lens.analysis.figures import top_latents_figure

        table = top_latents(vector, sae, model, k=k, index=index, scores=scores)
        rows = []
        for row in table.to_dict("records"):
            cls = "pos" if row["value"] > 0 else "neg"
            rows.append(
                {
                    "latent": f"<a href='{html.escape(row['neuronpedia'])}'>{row['latent']}</a>"
                    if row.get("neuronpedia")
                    else str(row["latent"]),
                    "value": f"<span class='{cls}'>{row['value']:+.3f}</span>",
                    "promotes": html.escape(" ".join(map(str, row["promotes"]))),
                    "suppresses": html.escape(" ".join(map(str, row["suppresses"]))),
                    "frequency": f"{row['frequency']:.2%}" if "frequency" in row else "",
                    "output score": f"{row['output_score']:.3f}" if "output_score" in row else "",
                    "top contexts": "".join(_context_html(c) for c in row.get("contexts", [])),
                }
            )
        columns = (
            ["latent", "value", "promotes", "suppresses"]
            + (["output score"] if scores is not None else [])
            + (["frequency", "top contexts"] if index is not None else [])
        )
        parts.append(_table_html(rows, columns))
        lens_vocabulary = (
            f"among the {len(index.common_tokens()):,} tokens seen at least 3 times in the indexed text"
            if index is not None
            else "over the whole vocabulary"
        )
        parts.append(
            f"<p class='meta'>Promotes / suppresses: the logit lens of each latent's decoder row through "
            f"the model's final norm and unembedding, {lens_vocabulary}.</p>"
        )
        parts.append(_figure_html(top_latents_figure(table, title=f"Top latents of {vector.name}")))
    parts.append("</div>")
    return "".join(parts)


def overlap_section(vectors: Sequence[SASVector], sae=None) -> Section:
    """Heatmaps of Jaccard and weighted Jaccard, and the latents each pair shares.

    Args:
        vectors: SAS vectors of one SAE.
        sae: that SAE (adds the decoded cosine).

    Example:
        >>> section = overlap_section([sentiment, caution, formality], sae)
        >>> sl.write_report("r.html", [], sections=[section]).exists(), len(section.figures) > 0
        (True, True)
    """
    from sas_lens.analysis.figures import overlap_heatmap
    from sas_lens.analysis.overlap import overlap_matrix, shared_latents

    matrix = overlap_matrix(list(vectors), sae=sae)
    tables = []
    for i, u in enumerate(vectors):
        for v in vectors[i + 1 :]:
            shared = shared_latents(u, v)
            if len(shared):
                rows = [
                    {"latent": str(r["latent"]), u.name: f"{r[u.name]:+.3f}", v.name: f"{r[v.name]:+.3f}"}
                    for r in shared.to_dict("records")
                ]
                tables.append(
                    f"<h4>{html.escape(u.name)} ∩ {html.escape(v.name)}</h4>"
                    + _table_html(rows, ["latent", u.name, v.name])
                )
    shared_html = "".join(tables) or "<p>No two vectors share a latent.</p>"
    figures = [overlap_heatmap(matrix, "jaccard"), overlap_heatmap(matrix, "weighted_jaccard")]
    if matrix.cosine_decoded is not None:
        figures.append(overlap_heatmap(matrix, "cosine_decoded"))
    return Section("Overlap between vectors", shared_html, figures)


def topic_section(
    alignments: Sequence, *, model=None, sae=None, index=None, k: int = 10, min_prompts: int = 5
) -> Section:
    """Each topic alignment's most aligned latents among those firing on ``min_prompts`` reference prompts
    (the ones "amplify" steers with): score, how many prompts they fire on, and with ``model``/``sae``
    what they promote.

    Args:
        alignments: :class:`~sas_lens.topic.alignment.TopicAlignment` objects.
        model, sae: for the logit lens of each latent.
        index: a latent index, for contexts.
        k: latents per topic.
        min_prompts: see above.

    Example:
        >>> section = topic_section([topic], model=model, sae=sae)
        >>> "medicine" in section.html
        True
    """
    from sas_lens.steering.vectors import check_vector_fits

    parts = []
    for alignment in alignments:
        rows = {
            latent: {"latent": str(latent), "score": f"{score:.3f}"} for latent, score in alignment.top(k, min_prompts)
        }
        columns = ["latent", "score"]
        if alignment.n_firing is not None:
            for latent, row in rows.items():
                row["fires on (reference prompts)"] = str(int(alignment.n_firing[latent]))
            columns.append("fires on (reference prompts)")
        if model is not None and sae is not None:
            from sas_lens.analysis.attribution import top_latents

            amplify = alignment.vector(k, min_prompts=min_prompts)  # the same latents as top(k, min_prompts)
            check_vector_fits(amplify, sae=sae)
            for row in top_latents(amplify, sae, model, k=k, index=index, n_contexts=1).to_dict("records"):
                rows[row["latent"]]["promotes"] = html.escape(" ".join(map(str, row["promotes"])))
                rows[row["latent"]]["top context"] = "".join(_context_html(c) for c in row.get("contexts", []))
            columns += ["promotes"] + (["top context"] if index is not None else [])
        meta = alignment.metadata
        parts.append(
            f"<h3>{html.escape(alignment.name)}</h3><p class='meta'>{meta.get('n_alignment_texts')} "
            f"alignment texts, {meta.get('n_reference_prompts')} reference prompts (latents shown fire on at "
            f"least {min_prompts}), scored in "
            f"{meta.get('scoring_s', float('nan')):.1f} s.</p>" + _table_html(list(rows.values()), columns)
        )
    return Section("Topic alignments", "".join(parts))


def monosemanticity_section(width_table) -> Section:
    """The width comparison from :func:`~sas_lens.analysis.monosemanticity.width_comparison`.

    Args:
        width_table: the table, optionally with a ``behaviour`` column.

    Example:
        >>> from sas_lens.analysis.monosemanticity import compare_widths
        >>> section = monosemanticity_section(compare_widths(model, [sae, wide_sae], [sentiment]))
        >>> len(section.figures)
        1
    """
    from sas_lens.analysis.figures import monosemanticity_figure

    table = width_table.reset_index()
    columns = [
        c
        for c in ("behaviour", "sae", "d_sae", "support", "effective_latents", "top1_share", "top5_share")
        if c in table
    ]
    rows = [
        {c: (f"{r[c]:.3f}" if isinstance(r[c], float) else html.escape(str(r[c]))) for c in columns}
        for r in table.to_dict("records")
    ]
    return Section(
        "Monosemanticity across SAE widths", _table_html(rows, columns), [monosemanticity_figure(width_table)]
    )


def write_report(
    path: str | Path,
    vectors: Sequence[SASVector | DenseVector],
    *,
    model=None,
    sae=None,
    index=None,
    width_table=None,
    sections: Sequence[Section] = (),
    title: str = "sas_lens report",
    k: int = 10,
    scores=None,
) -> Path:
    """Write the report to ``path`` and return it.

    Args:
        path: the HTML file to write (self-contained: plotly is inlined).
        vectors: SAS and dense vectors, one card each; the SAS ones of one SAE get an overlap section.
        model, sae: for the top-latent tables (logit lens); ``index`` adds contexts and frequencies.
        width_table: a :func:`~sas_lens.analysis.monosemanticity.width_comparison` table (optionally with a
            ``behaviour`` column) for the width section.
        sections: further sections (e.g. evaluation results), appended in order.
        title: the page title.
        k: top latents per SAS vector card.
        scores: ``sae``'s :func:`~sas_lens.steering.output_scores.output_scores`, shown in the top-latent tables.

    Example:
        >>> sl.write_report("report.html", [vec, dense], model=model, sae=sae).name
        'report.html'
    """
    from plotly.offline import get_plotlyjs

    if not vectors and not sections:
        raise ValueError("Nothing to report: pass vectors or sections.")
    body = [
        f"<h1>{html.escape(title)}</h1><p class='meta'>Written {datetime.datetime.now():%Y-%m-%d %H:%M} "
        f"by sas_lens{_describe(model, sae)}.</p>"
    ]
    if vectors:
        body.append("<h2>Vectors</h2>")
        body.extend(vector_card(v, model=model, sae=sae, index=index, k=k, scores=scores) for v in vectors)
    all_sections = list(sections)
    sparse = [v for v in vectors if isinstance(v, SASVector)]
    if len(sparse) >= 2:
        all_sections.insert(0, overlap_section(sparse, sae))
    if width_table is not None:
        all_sections.insert(1 if len(sparse) >= 2 else 0, monosemanticity_section(width_table))
    for section in all_sections:
        body.append(
            f"<section><h2>{html.escape(section.title)}</h2>{section.html}"
            + "".join(_figure_html(f) for f in section.figures)
            + "</section>"
        )
    page = (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style><script type='text/javascript'>{get_plotlyjs()}</script></head>"
        f"<body>{''.join(body)}</body></html>"
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


def _describe(model, sae) -> str:
    parts = []
    if model is not None:
        parts.append(f"model {model.cfg.model_name}")
    if sae is not None:
        parts.append(f"SAE {sae.cfg.metadata.hook_name} ({sae.cfg.d_sae} latents)")
    return (" for " + ", ".join(html.escape(p) for p in parts)) if parts else ""
