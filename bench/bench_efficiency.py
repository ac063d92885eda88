"""The efficiency curve (issue 27): each method's judged shift at matched next-token KL 0.05, 0.1, 0.2, 0.4, both signs.

Same behaviours, judges, prompts and generation as ``bench/bench_vectors.py`` (rt-polarity sentiment
judged by VADER; AG News topics judged by similarity to held-out articles; 32 neutral prompts, greedy).
For each vector and sign, λ is the strength at which the mean next-token KL from the unsteered model on
the prompts equals the target (``sl.strength_for_kl``); the row is the judge's shift from the unsteered
continuations and their median perplexity under the unsteered model. A method "works" when it moves the
judge the right way at every KL. Prompting has no λ: it is one row per sign, at the KL it happens to cost.

Every cell is appended to ``--out`` (JSON lines) as soon as it is measured, and cells already there are
skipped, so the job resumes where it was stopped. Each vector is saved beside it (``<out>-vectors/``, with
its build time) and loaded, not rebuilt, on a resumed run: a fitted vector costs 4–20 min on a 2-core VM.
The files of the README's tables are committed under ``bench/results/`` (from 2026-12-04; the earlier ones
lived in a home folder that did not outlive its machine).

    .venv/bin/python bench/bench_efficiency.py scitech --sae 4k --out bench/results/scitech-4k.jsonl
    .venv/bin/python bench/bench_efficiency.py scitech --sae 4k --out bench/results/scitech-4k.jsonl --table
    .venv/bin/python bench/bench_efficiency.py sentiment --out sentiment.jsonl --svg docs/efficiency_sentiment.svg
"""

from __future__ import annotations

import argparse
import html
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_vectors import NEUTRAL_PROMPTS, measure, sentiment_behaviour, topic_behaviour  # noqa: E402

KL_TARGETS = (0.05, 0.1, 0.2, 0.4)
METHODS = [
    "prompting",
    "dense (CAA)",
    "dense fitted",
    "paper (tau 0.7, sae gate)",
    "contrast top16 (default)",
    "contrast top16, output score >= 0.01",
    "contrast top16, density <= 0.01, no BOS",
    "attribution top16",
    "attribution top32",
    "contrast top16 fitted",
    "attribution top16 fitted",
]


def build(sl, model, sae, pairs, residuals, name: str):
    layer = int(sae.cfg.metadata.hook_name.split(".")[1])

    def sas(**settings):
        return sl.sas_vector(model, sae, pairs, residuals=residuals, **settings)

    if name == "dense (CAA)":
        return sl.dense_vector(model, pairs, layer=layer, residuals=residuals)
    if name == "dense fitted":
        return sl.dense_vector(model, pairs, layer=layer, residuals=residuals, fit="preference")
    return {
        "paper (tau 0.7, sae gate)": lambda: sas(selection="paper", tau=0.7),
        "contrast top16 (default)": lambda: sas(),
        "contrast top16, output score >= 0.01": lambda: sas(min_output_score=0.01),
        "contrast top16, density <= 0.01, no BOS": lambda: sas(max_density=0.01, drop_bos=True),
        "attribution top16": lambda: sas(selection="attribution", top_k=16),
        "attribution top32": lambda: sas(selection="attribution", top_k=32),
        "contrast top16 fitted": lambda: sas(fit="preference"),
        "attribution top16 fitted": lambda: sas(selection="attribution", top_k=16, fit="preference"),
    }[name]()


def saved_or_built(sl, model, sae, pairs, residuals, name: str, out: Path):
    """The vector of ``name`` and the seconds its build took: loaded from ``<out>-vectors/`` if saved there."""
    folder = out.with_name(out.stem + "-vectors")
    path = folder / ("".join(c if c.isalnum() else "_" for c in name) + ".safetensors")
    seconds_file = path.with_suffix(".seconds")
    if path.exists() and seconds_file.exists():
        return sl.load_vector(path, model=model, sae=sae), float(seconds_file.read_text())
    start = time.perf_counter()
    vector = build(sl, model, sae, pairs, residuals, name)
    seconds = time.perf_counter() - start
    folder.mkdir(parents=True, exist_ok=True)
    vector.save(path)
    seconds_file.write_text(f"{seconds:.1f}\n")
    return vector, seconds


def done_cells(path: Path) -> set[tuple]:
    if not path.exists():
        return set()
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {(row["method"], row.get("kl_target"), row.get("sign")) for row in rows}


def append(path: Path, row: dict) -> None:
    with path.open("a") as handle:
        handle.write(json.dumps(row) + "\n")
    print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items() if k != "example"}, flush=True)


def run(args) -> None:
    import sas_lens as sl
    from sas_lens.errors import StrengthNotReachedError
    from sas_lens.steering.extraction import collect_residuals
    from sas_lens.steering.strength import next_token_kl, strength_for_kl

    out = Path(args.out).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    done = done_cells(out)
    model = sl.load_model()
    sae = sl.load_sae(args.sae)
    layer = int(sae.cfg.metadata.hook_name.split(".")[1])
    if args.behaviour == "sentiment":
        pairs, judge, prefixes = sentiment_behaviour(args.pairs)
    else:
        pairs, judge, prefixes = topic_behaviour(args.behaviour, args.pairs)
    if ("unsteered", None, None) not in done:
        append(out, {"method": "unsteered", **measure(model, sae, judge, {}, args.max_new_tokens)})
    base = next(json.loads(line) for line in out.read_text().splitlines() if '"unsteered"' in line)
    residuals = collect_residuals(model, pairs, layer, read="mean")
    for name in args.methods or METHODS:
        if name == "prompting":
            for sign, prefix in prefixes.items():
                if (name, None, sign) in done:
                    continue
                prompts = [prefix + p for p in NEUTRAL_PROMPTS]
                row = measure(model, sae, judge, {}, args.max_new_tokens, prompts=prompts)
                append(
                    out, {"method": name, "kl_target": None, "sign": sign, "shift": row["judge"] - base["judge"], **row}
                )
            continue
        if all((name, kl, sign) in done for kl in args.kl for sign in (1, -1)):
            continue
        vector, seconds = saved_or_built(sl, model, sae, pairs, residuals, name, out)
        n_latents = len(vector.indices) if hasattr(vector, "indices") else None  # dense: None; SAS: 0 and up
        for kl in args.kl:
            for sign in (1, -1):
                if (name, kl, sign) in done:
                    continue
                cell = {"method": name, "kl_target": kl, "sign": sign, "latents": n_latents, "build_s": seconds}
                try:
                    lam = strength_for_kl(
                        model, vector, kl, NEUTRAL_PROMPTS, sae=sae, sign=sign, high=4096.0, rtol=0.05
                    )
                except StrengthNotReachedError as err:
                    append(out, {**cell, "note": str(err)})
                    continue
                steering = {vector: lam}
                row = measure(model, sae, judge, steering, args.max_new_tokens)
                kl_measured = next_token_kl(model, steering, NEUTRAL_PROMPTS, sae=sae)
                append(out, {**cell, "lam": lam, "kl": kl_measured, "shift": row["judge"] - base["judge"], **row})


def table(args) -> None:
    rows = [json.loads(line) for line in Path(args.out).expanduser().read_text().splitlines() if line.strip()]
    base = next(row for row in rows if row["method"] == "unsteered")
    print(f"unsteered: judge {base['judge']:.3f}, perplexity {base['perplexity']:.2f}\n")
    header = " | ".join(f"KL {kl} + / −" for kl in KL_TARGETS)
    print(f"| method | latents | {header} | works |")
    print("| --- | --- |" + " --- |" * (len(KL_TARGETS) + 1))
    for name in METHODS:
        cells = {(row.get("kl_target"), row.get("sign")): row for row in rows if row["method"] == name}
        if not cells:
            continue
        if name == "prompting":
            plus, minus = cells.get((None, 1)), cells.get((None, -1))
            text = " / ".join(f"{c['shift']:+.2f} ({c['perplexity']:.1f})" if c else "–" for c in (plus, minus))
            print(f"| {name} | – | {text} (KL not matched) |" + " |" * (len(KL_TARGETS) - 1) + " – |")
            continue
        parts, right = [], []
        latents = next((c["latents"] for c in cells.values() if c.get("latents") is not None), None)
        for kl in KL_TARGETS:
            pair = []
            for sign in (1, -1):
                cell = cells.get((kl, sign))
                if cell is None or "shift" not in cell:
                    pair.append("–")
                    right.append(False)
                    continue
                pair.append(f"{cell['shift']:+.2f} ({cell['perplexity']:.1f})")
                right.append(cell["shift"] * sign > 0)
            parts.append(" / ".join(pair))
        works = "yes" if all(right) else f"{sum(right)}/{len(right)}"
        print(f"| {name} | {'–' if latents is None else latents} | " + " | ".join(parts) + f" | {works} |")
    shifts = [row for row in rows if row.get("kl_target") == 0.1 and "shift" in row]
    if shifts:
        dense = {row["sign"]: row["shift"] for row in shifts if row["method"] == "dense (CAA)"}
        print("\nshift at KL 0.1 as a multiple of dense's (+ / −):")
        for name in METHODS[2:]:
            own = {row["sign"]: row["shift"] for row in shifts if row["method"] == name}
            if own and dense:
                ratios = [own.get(s, float("nan")) / dense[s] if dense.get(s) else float("nan") for s in (1, -1)]
                print(f"  {name}: {ratios[0]:+.2f} / {ratios[1]:+.2f}")


FIGURE_METHODS = {  # name in --out: (label, colour); the figure shows these only, to stay readable
    "dense (CAA)": ("dense (CAA)", "#222222"),
    "dense fitted": ("dense fitted", "#888888"),
    "contrast top16 (default)": ("SAS contrast top 16 (default)", "#1f77b4"),
    "attribution top16": ("SAS attribution top 16", "#d62728"),
    "attribution top16 fitted": ("SAS attribution top 16, fitted", "#ff9896"),
    "contrast top16, output score >= 0.01": ("SAS contrast, output score ≥ 0.01", "#2ca02c"),
}


def figure_svg(args) -> str:
    """The efficiency curve as a standalone SVG: shift against KL target, one panel per sign of λ."""
    rows = [json.loads(line) for line in Path(args.out).expanduser().read_text().splitlines() if line.strip()]
    width, height, left, top, panel_w, panel_h = 860, 400, 60, 40, 330, 280
    low, high = -0.6, 0.6
    xs = {kl: left + 20 + i * (panel_w - 40) / (len(KL_TARGETS) - 1) for i, kl in enumerate(KL_TARGETS)}

    def y(shift: float) -> float:
        return top + (high - shift) / (high - low) * panel_h

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
        'font-size="12"><rect width="100%" height="100%" fill="white"/>'
    ]
    for panel, sign in enumerate((1, -1)):
        dx = panel * (panel_w + 40)
        title = "steering towards positive (λ &gt; 0)" if sign > 0 else "steering towards negative (λ &lt; 0)"
        parts.append(f'<text x="{dx + left + panel_w / 2}" y="{top - 15}" text-anchor="middle">{title}</text>')
        parts.append(
            f'<rect x="{dx + left}" y="{top}" width="{panel_w}" height="{panel_h}" fill="none" stroke="#999"/>'
        )
        for tick in (-0.6, -0.4, -0.2, 0.0, 0.2, 0.4, 0.6):
            colour = "#555" if tick == 0 else "#eee"
            parts.append(
                f'<line x1="{dx + left}" x2="{dx + left + panel_w}" y1="{y(tick)}" y2="{y(tick)}" stroke="{colour}"/>'
            )
            parts.append(f'<text x="{dx + left - 5}" y="{y(tick) + 4}" text-anchor="end">{tick:+.1f}</text>')
        for kl, x in xs.items():
            parts.append(f'<text x="{dx + x}" y="{top + panel_h + 16}" text-anchor="middle">{kl}</text>')
        parts.append(
            f'<text x="{dx + left + panel_w / 2}" y="{top + panel_h + 34}" text-anchor="middle">'
            "matched next-token KL (nats)</text>"
        )
        for name, (_, colour) in FIGURE_METHODS.items():
            cells = {
                r["kl_target"]: r["shift"]
                for r in rows
                if r["method"] == name and r.get("sign") == sign and "shift" in r
            }
            points = [(dx + xs[kl], y(cells[kl])) for kl in KL_TARGETS if kl in cells]
            if len(points) > 1:
                path = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
                parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
            parts.extend(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{colour}"/>' for px, py in points)
    parts.append(
        f'<text x="15" y="{top + panel_h / 2}" transform="rotate(-90 15 {top + panel_h / 2})" '
        'text-anchor="middle">judged shift from unsteered</text>'
    )
    for i, (label, colour) in enumerate(FIGURE_METHODS.values()):
        lx, ly = left + (i % 3) * 270, top + panel_h + 52 + (i // 3) * 16
        parts.append(f'<line x1="{lx}" x2="{lx + 18}" y1="{ly - 4}" y2="{ly - 4}" stroke="{colour}" stroke-width="2"/>')
        parts.append(f'<text x="{lx + 24}" y="{ly}">{html.escape(label)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("behaviour", choices=["sentiment", "sports", "scitech"])
    parser.add_argument("--out", required=True)
    parser.add_argument("--sae", default="16k")
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--kl", nargs="*", type=float, default=list(KL_TARGETS), help="the KL targets to measure")
    parser.add_argument("--methods", nargs="*", help="a subset of: " + "; ".join(METHODS))
    parser.add_argument("--table", action="store_true", help="print the table of what --out holds")
    parser.add_argument("--svg", help="write the efficiency curve of what --out holds to this SVG file")
    args = parser.parse_args()
    if args.svg:
        Path(args.svg).write_text(figure_svg(args))
    elif args.table:
        table(args)
    else:
        run(args)


if __name__ == "__main__":
    main()
