"""What `sas-lens eval` writes and shows: result files, the summary table, figures, a report section.

Example:
    >>> summary_table(json.loads(Path("eval_out/results.json").read_text())["cells"])   # doctest: +SKIP
"""

from __future__ import annotations

import json
from pathlib import Path

from sas_lens.errors import DataError


def write_results(
    records: list[dict], out_dir: Path, *, wall_s: float = 0.0, n_run: int = 0, cost_budget: float = 1.5
) -> None:
    """results.json, one CSV per kind, a summary table, and the figures as HTML fragments.

    Args:
        records: the run's cells.
        out_dir: the results folder.
        wall_s: the run's wall time, recorded.
        n_run: how many cells this run measured, recorded.
        cost_budget: the perplexity ratio of the matched-cost summary (:func:`matched_cost_table`).

    Example:
        >>> write_results(records, Path("eval_out"))  # doctest: +SKIP
    """
    import pandas as pd

    from sas_lens.evaluation.store import jsonable

    (out_dir / "results.json").write_text(
        json.dumps(
            {"cells": [jsonable(r) for r in records], "wall_s_this_run": round(wall_s, 1), "cells_run": n_run},
            indent=1,
            allow_nan=False,
        )
    )
    for kind in ("ab", "capability", "open", "topic"):
        rows = [{k: v for k, v in r.items() if k != "answers"} for r in records if r["kind"] == kind]
        if rows:
            pd.DataFrame(rows).to_csv(out_dir / f"{kind}.csv", index=False)
    summary = summary_table(records)
    if len(summary):
        summary.to_csv(out_dir / "summary.csv", index=False)
    matched = matched_cost_table(records, budget=cost_budget)
    if len(matched):
        matched.to_csv(out_dir / "matched_cost.csv", index=False)
    matched_kl = matched_kl_table(records)
    if len(matched_kl):
        matched_kl.to_csv(out_dir / "matched_kl.csv", index=False)
    topics = topic_table(records)
    if len(topics):
        topics.to_csv(out_dir / "topic_summary.csv", index=False)
    layers = layer_table(records)
    if len(layers):
        layers.to_csv(out_dir / "layers.csv", index=False)
    for name, table in (
        ("composition.csv", composition_table(records)),
        ("conditional.csv", conditional_table(records)),
    ):
        if len(table):
            table.to_csv(out_dir / name, index=False)


def summary_table(records: list[dict]):
    """Per behaviour, method and k at the main layer: p at −k, 0, +k, the shift, and the costs at ±k.

    One row for every k the costs were measured at (the grid's largest λ when there are none), so a
    run can show both a mild and a strong setting side by side.

    Args:
        records: the run's cells (``results.json``).

    Example:
        >>> summary_table(sl.run_evaluation(cfg, "eval_out"))  # doctest: +SKIP
    """
    import pandas as pd

    ab = pd.DataFrame([r for r in records if r["kind"] == "ab"])
    if ab.empty:
        return ab
    main_layer = ab["layer"].iloc[0]
    costs = {
        (r["kind"], r["behaviour"], r["method"], r["lam"]): r
        for r in records
        if r["kind"] != "ab" and r.get("layer", main_layer) == main_layer
    }
    rows = []
    for (behaviour, method), group in ab[ab["layer"] == main_layer].groupby(["behaviour", "method"], sort=False):
        by_lam = dict(zip(group["lam"], group["mean"]))
        cost_ks = {abs(lam) for (kind, b, m, lam) in costs if b == behaviour and m == method and lam in by_lam}
        cost_ks.discard(0.0)
        steered = {abs(lam) for lam in by_lam if lam != 0}
        if not (cost_ks or steered):  # only the unsteered cell (a matched-KL run): no k to read a shift at
            continue
        for k in sorted(cost_ks or {max(steered)}):
            row = {
                "behaviour": behaviour,
                "method": method,
                "k": k,
                "p(-k)": by_lam.get(-k),
                "p(0)": by_lam.get(0.0),
                "p(+k)": by_lam.get(k),
            }
            both = row["p(+k)"] is not None and row["p(-k)"] is not None
            row["shift"] = row["p(+k)"] - row["p(-k)"] if both else None
            for sign, lam in (("-k", -k), ("0", 0.0), ("+k", k)):
                cap = costs.get(("capability", behaviour, method, lam), {})
                opened = costs.get(("open", behaviour, method, lam), {})
                row[f"mmlu({sign})"] = cap.get("mmlu_accuracy")
                row[f"ppl({sign})"] = cap.get("perplexity")
                row[f"open_score({sign})"] = opened.get("behaviour_score")
                row[f"answer_ppl({sign})"] = opened.get("answer_perplexity")
            rows.append(row)
    return pd.DataFrame(rows)


def matched_cost_table(records: list[dict], *, budget: float = 1.5):
    """Methods compared at matched cost: per behaviour, method and direction, the strongest A/B shift whose
    held-out perplexity stays within ``budget`` × the unsteered one (main layer, λ with a capability cell).

    λ means different things for SAS (code units) and dense vectors (residual units), so equal λ is not
    equal cost; equal perplexity rise is.

    Args:
        records: the run's cells (``results.json``).
        budget: the largest perplexity ratio allowed, e.g. 1.5.

    Example:
        >>> recs = [{"kind": "ab", "behaviour": "b", "layer": 9, "method": "dense", "lam": x, "mean": 0.5 + x / 10}
        ...         for x in (-2.0, 0.0, 2.0)]
        >>> recs += [{"kind": "capability", "behaviour": "b", "method": "dense", "lam": x, "perplexity": p}
        ...          for x, p in ((-2.0, 12.0), (0.0, 10.0), (2.0, 20.0))]
        >>> matched_cost_table(recs).to_dict("records")[0]["lam(+)"]   # +2 costs 2× the perplexity: over budget
        0.0
    """
    import pandas as pd

    ab = [r for r in records if r["kind"] == "ab"]
    if not ab:
        return pd.DataFrame()
    main_layer = ab[0]["layer"]
    p_at = {(r["behaviour"], r["method"], r["lam"]): r["mean"] for r in ab if r["layer"] == main_layer}
    ppl_at = {
        (r["behaviour"], r["method"], r["lam"]): r["perplexity"]
        for r in records
        if r["kind"] == "capability" and r.get("perplexity") is not None and r.get("layer", main_layer) == main_layer
    }
    rows = []
    for behaviour, method in dict.fromkeys((b, m) for b, m, _ in p_at):
        base_ppl, base_p = ppl_at.get((behaviour, method, 0.0)), p_at.get((behaviour, method, 0.0))
        if base_ppl is None or base_p is None:
            continue
        row = {"behaviour": behaviour, "method": method, "budget": budget, "p(0)": base_p, "ppl(0)": base_ppl}
        for sign, label in ((1, "+"), (-1, "-")):
            within = [
                (lam, p_at[(behaviour, method, lam)] - base_p, ppl)
                for (b, m, lam), ppl in ppl_at.items()
                if b == behaviour
                and m == method
                and sign * lam >= 0
                and (b, m, lam) in p_at
                and ppl <= budget * base_ppl
            ]
            lam, shift, ppl = max(within, key=lambda t: sign * t[1])
            row.update({f"lam({label})": lam, f"shift({label})": shift, f"ppl({label})": ppl})
        rows.append(row)
    return pd.DataFrame(rows)


def matched_kl_table(records: list[dict]):
    """Methods at matched next-token KL (the ``ab_kl`` cells of ``kl_targets``): per behaviour, method and KL,
    the λ of each sign, the KL it reached, p and the shift from the unsteered p; ``works`` says whether the
    method moved p the right way (up for +, down for −) in every cell of the behaviour.

    Args:
        records: the run's cells (``results.json``).

    Example:
        >>> recs = [{"kind": "ab", "behaviour": "b", "layer": 9, "method": "dense", "lam": 0.0, "mean": 0.5}]
        >>> recs += [{"kind": "ab_kl", "behaviour": "b", "layer": 9, "method": "dense", "lam": s * 0.1,
        ...           "lam_value": s * 3.0, "kl": 0.1, "mean": 0.5 + s * 0.2} for s in (1, -1)]
        >>> matched_kl_table(recs)[["kl", "shift(+)", "shift(-)", "works"]].to_dict("records")
        [{'kl': 0.1, 'shift(+)': 0.2, 'shift(-)': -0.2, 'works': True}]
    """
    import pandas as pd

    from sas_lens.evaluation.plan import steers_at_zero

    cells = [r for r in records if r["kind"] == "ab_kl"]
    if not cells:
        return pd.DataFrame()
    unsteered = {
        r["behaviour"]: r["mean"]
        for r in records
        if r["kind"] == "ab" and r["lam"] == 0 and r["layer"] == cells[0]["layer"] and not steers_at_zero(r["method"])
    }
    at = {(r["behaviour"], r["method"], r["lam"]): r for r in cells}
    rows = []
    for behaviour, method, kl in dict.fromkeys((b, m, abs(lam)) for b, m, lam in at):
        base = unsteered.get(behaviour)
        row = {"behaviour": behaviour, "method": method, "kl": kl, "p(0)": base}
        for sign, label in ((1, "+"), (-1, "-")):
            cell = at.get((behaviour, method, sign * kl), {})
            p = cell.get("mean")
            row[f"lam({label})"], row[f"kl({label})"], row[f"p({label})"] = cell.get("lam_value"), cell.get("kl"), p
            row[f"shift({label})"] = round(p - base, 10) if p is not None and base is not None else None
        rows.append(row)
    table = pd.DataFrame(rows).sort_values(["behaviour", "method", "kl"], kind="stable", ignore_index=True)
    right_way = (table["shift(+)"].fillna(0) > 0) & (table["shift(-)"].fillna(0) < 0)  # unmeasured: not right
    table["works"] = right_way.groupby([table["behaviour"], table["method"]]).transform("all")
    return table


def layer_table(records: list[dict]):
    """Per behaviour, method and layer (runs that steer at more than one layer): p at ±k for the grid's
    largest k, the shift, the held-out perplexity and MMLU accuracy at −k, 0 and +k where measured, and
    which layer shifts most per method (``best``). With ``strength_unit = "kl"`` the λs are matched cost.

    SAS without Δ (``sas@delta=0``, the Δ ablation) is a method here like any other; its λ = 0 is the
    SAE spliced in, so its ``p(0)`` and ``ppl(0)`` are not the unsteered model's.

    Args:
        records: the run's cells (``results.json``).

    Example:
        >>> recs = [{"kind": "ab", "behaviour": "b", "layer": layer, "method": "dense", "lam": x,
        ...          "mean": 0.5 + x * layer / 100} for layer in (3, 9) for x in (-4.0, 0.0, 4.0)]
        >>> layer_table(recs)[["layer", "shift", "best"]].to_dict("records")
        [{'layer': 3, 'shift': 0.24, 'best': False}, {'layer': 9, 'shift': 0.72, 'best': True}]
    """
    import pandas as pd

    ab = [r for r in records if r["kind"] == "ab"]
    if len({r["layer"] for r in ab}) < 2:
        return pd.DataFrame()
    p_at = {(r["behaviour"], r["method"], r["layer"], r["lam"]): r["mean"] for r in ab}
    caps = {(r["behaviour"], r["method"], r["layer"], r["lam"]): r for r in records if r["kind"] == "capability"}
    rows = []
    for behaviour, method, layer in dict.fromkeys(key[:3] for key in p_at):
        lams = [lam for (b, m, lay, lam) in p_at if (b, m, lay) == (behaviour, method, layer)]
        k = max(abs(lam) for lam in lams)
        row = {"behaviour": behaviour, "method": method, "layer": layer, "k": k}
        for label, lam in (("-k", -k), ("0", 0.0), ("+k", k)):
            row[f"p({label})"] = p_at.get((behaviour, method, layer, lam))
        both = row["p(+k)"] is not None and row["p(-k)"] is not None
        row["shift"] = round(row["p(+k)"] - row["p(-k)"], 10) if both else None
        for label, lam in (("-k", -k), ("0", 0.0), ("+k", k)):
            cap = caps.get((behaviour, method, layer, lam), {})
            row[f"ppl({label})"] = cap.get("perplexity")
            row[f"mmlu({label})"] = cap.get("mmlu_accuracy")
        rows.append(row)
    table = pd.DataFrame(rows)
    shifts = table["shift"].fillna(float("-inf"))
    table["best"] = shifts == shifts.groupby([table["behaviour"], table["method"]]).transform("max")
    return table


def composition_table(records: list[dict]):
    """Composition cells as a tidy table: pair, method, λ of each vector, p of each behaviour.

    Args:
        records: the run's cells (``results.json``).

    Example:
        >>> recs = [{"kind": "composition", "behaviour": "a+b", "method": "sas@b=4", "lam": 2.0, "lam_b": 4.0,
        ...          "p_a": 0.6, "p_b": 0.7}]
        >>> composition_table(recs).to_dict("records")
        [{'pair': 'a+b', 'method': 'sas', 'lam_a': 2.0, 'lam_b': 4.0, 'p_a': 0.6, 'p_b': 0.7}]
    """
    import pandas as pd

    from sas_lens.evaluation.plan import base_method

    rows = []
    for r in records:
        if r["kind"] != "composition":
            continue
        a, b = r["behaviour"].split("+")
        rows.append(
            {
                "pair": r["behaviour"],
                "method": base_method(r["method"]),
                "lam_a": r["lam"],
                "lam_b": r["lam_b"],
                "p_a": r[f"p_{a}"],
                "p_b": r[f"p_{b}"],
            }
        )
    return pd.DataFrame(rows)


def conditional_table(records: list[dict]):
    """Conditional cells beside the unconditional A/B cells at the same λ: p gated and not, how often the
    condition fires on the behaviour's items and on MMLU, and MMLU accuracy gated and not.

    Args:
        records: the run's cells (``results.json``).

    Example:
        >>> recs = [{"kind": "ab", "behaviour": "b", "layer": 9, "method": "sas", "lam": 4.0, "mean": 0.7},
        ...         {"kind": "conditional", "behaviour": "b", "layer": 9, "method": "sas", "lam": 4.0, "mean": 0.65,
        ...          "fires_on_items": 0.9, "fires_on_mmlu": 0.1, "mmlu_accuracy_gated": 0.5,
        ...          "mmlu_accuracy_ungated": 0.4}]
        >>> conditional_table(recs)[["p_ungated", "p_gated", "mmlu_gated"]].to_dict("records")
        [{'p_ungated': 0.7, 'p_gated': 0.65, 'mmlu_gated': 0.5}]
    """
    import pandas as pd

    ab = {(r["behaviour"], r["layer"], r["method"], r["lam"]): r["mean"] for r in records if r["kind"] == "ab"}
    rows = [
        {
            "behaviour": r["behaviour"],
            "method": r["method"],
            "lam": r["lam"],
            "p_ungated": ab.get((r["behaviour"], r["layer"], r["method"], r["lam"])),
            "p_gated": r["mean"],
            "fires_on_items": r["fires_on_items"],
            "fires_on_mmlu": r["fires_on_mmlu"],
            "mmlu_ungated": r["mmlu_accuracy_ungated"],
            "mmlu_gated": r["mmlu_accuracy_gated"],
        }
        for r in records
        if r["kind"] == "conditional"
    ]
    return pd.DataFrame(rows)


def topic_table(records: list[dict]):
    """Per topic and steering: topic similarity, fluency, and the time costs (align, fine-tune, per token).

    Args:
        records: the run's cells (``results.json``).

    Example:
        >>> topic_table(records)  # doctest: +SKIP
    """
    import pandas as pd

    rows = []
    unsteered_s = {
        r["behaviour"]: r["s_per_token"]
        for r in records
        if r["kind"] == "topic" and r["method"] == "amplify" and r["lam"] == 0
    }
    for r in records:
        if r["kind"] != "topic":
            continue
        steering = (
            "unsteered"
            if r["method"] == "amplify" and r["lam"] == 0
            else f"fine-tune ({r['lam']:g} steps)"
            if r["method"] == "finetune"
            else f"{r['method']} {r['lam']:g}"
        )
        overhead = (
            r["s_per_token"] - unsteered_s[r["behaviour"]]
            if r["method"] != "finetune" and r["behaviour"] in unsteered_s
            else None
        )
        rows.append(
            {
                "topic": r["behaviour"],
                "steering": steering,
                "topic_similarity": r["topic_similarity"],
                "perplexity": r["perplexity"],
                "distinct_2": r["distinct_2"],
                "extra_s_per_token": overhead,
                "align_s": r["align_s"] if r["method"] != "finetune" else None,
                "finetune_s": r.get("finetune_s"),
                "coverage": r.get("coverage"),
            }
        )
    return pd.DataFrame(rows)


def composition_cross_talk(records: list[dict], out_dir: str | Path):
    """From composition cells: how far each vector alone (the other at λ = 0) moves the *other* behaviour's
    p(matching answer), beside the two vectors' overlap (read from ``<out_dir>/vectors``): Jaccard and weighted
    Jaccard of SAS supports, cosine of the vectors (of dense vectors, or of the SAS codes).

    Args:
        records: the run's cells.
        out_dir: the results folder (for the vectors).

    Example:
        >>> composition_cross_talk(records, "eval_out")  # doctest: +SKIP
    """
    import pandas as pd

    from sas_lens.analysis.overlap import cosine, jaccard, weighted_jaccard
    from sas_lens.steering.vectors import SASVector, load_vector

    table = composition_table(records)
    rows = []
    for (pair, method), cells in table.groupby(["pair", "method"], sort=False):
        a, b = pair.split("+")
        layer = next(r["layer"] for r in records if r["kind"] == "composition" and r["behaviour"] == pair)
        files = [Path(out_dir) / "vectors" / f"{name}-L{layer}-{method}.safetensors" for name in (a, b)]
        if not all(f.exists() for f in files):
            continue
        va, vb = (load_vector(f) for f in files)
        if isinstance(va, SASVector):
            ua, ub = va.dense(), vb.dense()
            overlap = {
                "jaccard": jaccard(ua != 0, ub != 0),
                "weighted_jaccard": weighted_jaccard(ua, ub),
                "cosine": cosine(ua, ub),
            }
        else:
            overlap = {"cosine": cosine(va.vector, vb.vector)}
        at = {(r.lam_a, r.lam_b): r for r in cells.itertuples()}
        base = at.get((0.0, 0.0))
        k = max(abs(x) for x in cells["lam_a"])
        for steered, judged, key, column in ((a, b, (k, 0.0), "p_b"), (b, a, (0.0, k), "p_a")):
            if base is not None and key in at:
                rows.append(
                    {
                        "method": method,
                        "steered": steered,
                        "judged": judged,
                        "lam": k,
                        "cross_talk": getattr(at[key], column) - getattr(base, column),
                        **overlap,
                    }
                )
    return pd.DataFrame(rows)


def evaluation_figures(records: list[dict], out_dir: str | Path | None = None) -> list:
    """λ curves per behaviour (main layer), layer × λ heatmaps (layer sweeps), composition heatmaps and their
    cross-talk against overlap, and the fluency-vs-effect trade-off.

    Args:
        records: the run's cells (``results.json``).
        out_dir: the results folder; with it, the cross-talk figure reads the vectors' overlap there.

    Example:
        >>> figures = evaluation_figures(records)  # doctest: +SKIP
    """
    import pandas as pd
    import plotly.graph_objects as go

    from sas_lens.analysis.figures import (
        _LAYOUT,
        lambda_sweep_figure,
        layer_lambda_heatmap,
    )

    figures = []
    ab = pd.DataFrame([r for r in records if r["kind"] == "ab"])
    if not ab.empty:
        main_layer = ab["layer"].iloc[0]
        for behaviour, rows in ab[ab["layer"] == main_layer].groupby("behaviour", sort=False):
            figures.append(
                lambda_sweep_figure(rows, title=f"{behaviour}: p(matching answer) across λ (layer {main_layer})")
            )
        for (behaviour, method), rows in ab.groupby(["behaviour", "method"], sort=False):
            if rows["layer"].nunique() > 1:
                figures.append(layer_lambda_heatmap(rows, title=f"{behaviour}, {method}: layer × λ"))
    opened = pd.DataFrame([r for r in records if r["kind"] == "open"])
    if not opened.empty:
        fig = go.Figure()
        for method, rows in opened.groupby("method"):
            fig.add_trace(
                go.Scatter(
                    x=rows["behaviour_score"],
                    y=rows["answer_perplexity"],
                    mode="markers",
                    name=method,
                    text=[f"{b} λ={lam:g}" for b, lam in zip(rows["behaviour"], rows["lam"])],
                )
            )
        fig.update_layout(
            title="Open-ended answers: behaviour score vs perplexity (fluency cost)",
            xaxis_title="behaviour score (embedding)",
            yaxis_title="answer perplexity (unsteered model)",
            **_LAYOUT,
        )
        figures.append(fig)
    composed = composition_table(records)
    for (pair, method), cells in composed.groupby(["pair", "method"], sort=False):
        a, b = pair.split("+")
        for column, behaviour in (("p_a", a), ("p_b", b)):
            table = cells.pivot_table(index="lam_b", columns="lam_a", values=column)
            fig = go.Figure(
                go.Heatmap(
                    z=table.values,
                    x=[f"{c:g}" for c in table.columns],
                    y=[f"{i:g}" for i in table.index],
                    colorscale="RdBu",
                    zmid=0.5,
                    text=table.round(3).values,
                    texttemplate="%{text}",
                )
            )
            fig.update_layout(
                title=f"{method}, {a} + {b} composed: p({behaviour})",
                xaxis_title=f"λ {a}",
                yaxis_title=f"λ {b}",
                **_LAYOUT,
            )
            figures.append(fig)
    talk = composition_cross_talk(records, out_dir) if out_dir is not None and len(composed) else []
    if len(talk):
        fig = go.Figure()
        for method, rows in talk.groupby("method", sort=False):
            measure = "weighted_jaccard" if method == "sas" else "cosine"
            fig.add_trace(
                go.Scatter(
                    x=rows[measure].abs(),
                    y=rows["cross_talk"].abs(),
                    mode="markers+text",
                    name=f"{method} ({measure.replace('_', ' ')})",
                    textposition="top center",
                    text=[f"{s} → {j}" for s, j in zip(rows["steered"], rows["judged"])],
                )
            )
        fig.update_layout(
            title="Cross-talk against overlap: each vector alone, the other behaviour's p",
            xaxis_title="overlap (weighted Jaccard for SAS, |cosine| for dense)",
            yaxis_title="|change of the other behaviour's p|",
            **_LAYOUT,
        )
        figures.append(fig)
    topics = topic_table(records)
    if len(topics):
        fig = go.Figure()
        for topic, rows in topics.groupby("topic", sort=False):
            fig.add_trace(
                go.Scatter(
                    x=rows["topic_similarity"],
                    y=rows["perplexity"],
                    mode="markers+text",
                    name=topic,
                    text=rows["steering"],
                    textposition="top center",
                )
            )
        fig.update_layout(
            title="Topic steering: similarity to the topic vs perplexity (fluency cost)",
            xaxis_title="topic similarity (embedding cosine)",
            yaxis_title="perplexity (unsteered model)",
            **_LAYOUT,
        )
        figures.append(fig)
    return figures


def evaluation_section(out_dir: str | Path):
    """A :class:`~sas_lens.analysis.report.Section` of an evaluation's results for ``sas-lens report``.

    Args:
        out_dir: a results folder of ``sas-lens eval``.

    Example:
        >>> sl.write_report("r.html", [vec], sections=[evaluation_section("eval_out")])  # doctest: +SKIP
    """
    from sas_lens.analysis.report import Section

    out_dir = Path(out_dir)
    results = out_dir / "results.json"
    if not results.exists():
        raise DataError(f"{out_dir} holds no results.json; run `sas-lens eval` first.")
    from sas_lens.evaluation.store import restored

    records = [restored(r) for r in json.loads(results.read_text())["cells"]]
    tables = [
        table.round(3).to_html(index=False, na_rep="–")
        for table in (
            summary_table(records),
            matched_cost_table(records),
            matched_kl_table(records),
            layer_table(records),
            conditional_table(records),
            topic_table(records),
        )
        if len(table)
    ]
    return Section("Evaluation", "\n".join(tables), evaluation_figures(records, out_dir))
