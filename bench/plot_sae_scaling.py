"""The scaling table and figure of issue 26: each layer-9 SAE's measures against its training tokens.

Reads what the other benches wrote, measures nothing: each SAE's held-out ``eval.json`` (``enwiki2015_AD``,
written by ``bench/scale_saes.py`` or shipped), the readability lines of ``bench/bench_sae_readability.py``
and the sentiment cells of ``bench/bench_efficiency.py`` (``<steering-dir>/sentiment-<name>.jsonl``, the
default rule, contrast top 16; likewise ``sports-<name>.jsonl``). Prints one markdown table and writes one SVG with a panel per measure,
training tokens on a log x-axis, one line per width.

    .venv/bin/python bench/plot_sae_scaling.py 4k 16k ~/sae_scale/l9-4k-6.4M ~/sae_scale/l9-16k-6.4M \\
        --readability ~/sae_readability/results.jsonl --steering-dir ~/bench_scale --svg docs/sae_scaling.svg
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_sae_domains import read_rows  # noqa: E402

DEFAULT_RULE = "contrast top16 (default)"
WIDTH_COLOURS = {4096: "#1f77b4", 16384: "#d62728"}


def sae_record(name: str, readability: dict, steering_dir: Path) -> dict:
    """Everything the table and figure show for one SAE (shipped short name or training folder)."""
    from sas_lens.loading.saes import shipped_saes

    folder = Path(name).expanduser() if "/" in name else shipped_saes(9)[name]
    evaluation = json.loads((folder / "eval.json").read_text())
    if (folder / "card.json").exists():  # shipped: the card records the training run
        card = json.loads((folder / "card.json").read_text())
        tokens, wall_s = card["tokens_seen"], card["training_wall_s"]
    else:
        training = json.loads((folder / "training.json").read_text())
        tokens, wall_s = training["tokens_seen"], training.get("training_s_this_run")
    shifts = {
        (behaviour, r["kl_target"], r["sign"]): r["shift"]
        for behaviour in ("sentiment", "sports")
        for r in read_rows(steering_dir / f"{behaviour}-{Path(name).name}.jsonl")
        if r["method"] == DEFAULT_RULE
    }
    evaluation["eval_tokens"] = evaluation.pop("tokens")  # held-out tokens, not training tokens
    return {**evaluation, "name": Path(name).name, "tokens": tokens, "wall_s": wall_s,
            "readability": readability.get(name), "shifts": shifts}  # fmt: skip


def table(records: list[dict]) -> str:
    def cell(value, spec):
        return "–" if value is None else format(value, spec)

    lines = [
        "| SAE | latents | training tokens | training wall s | EV | CE rec. | L0 | dead | dense | coherence − random "
        "| common-token share | sentiment KL 0.1 + / − | KL 0.4 + / − | sports KL 0.1 + / − | KL 0.4 + / − |",
        "|---" * 15 + "|",
    ]
    for r in records:
        readable = r["readability"]
        coherence = (
            f"{readable['coherence_minus_random']:+.3f} ± {readable['coherence_minus_random_se']:.3f}"
            if readable
            else "–"
        )
        common = f"{readable['common_token_share']:.2f}" if readable else "–"
        steering = " | ".join(
            f"{cell(r['shifts'].get((b, kl, 1)), '+.2f')} / {cell(r['shifts'].get((b, kl, -1)), '+.2f')}"
            for b in ("sentiment", "sports")
            for kl in (0.1, 0.4)
        )
        lines.append(
            f"| `{r['name']}` | {r['d_sae']:,} | {r['tokens'] / 1e6:.1f}M | {cell(r['wall_s'], ',.0f')} "
            f"| {r['explained_variance']:.3f} | {r['ce_loss_recovered']:.3f} | {r['mean_l0']:.1f} "
            f"| {r['dead_fraction']:.1%} | {r['dense_fraction']:.2%} | {coherence} | {common} | {steering} |"
        )
    return "\n".join(lines)


PANELS = [  # title, value of a record (None: not measured) or a steering behaviour, y range
    ("held-out EV", lambda r: r["explained_variance"], (0.85, 1.0)),
    ("CE loss recovered", lambda r: r["ce_loss_recovered"], (0.95, 1.0)),
    ("top-10 coherence − random windows", lambda r: (r["readability"] or {}).get("coherence_minus_random"), (0, 0.12)),
    ("sentiment shift at KL 0.1, + solid / − dashed", "sentiment", (-0.5, 0.5)),
    ("sports shift at KL 0.1, + solid / − dashed", "sports", (-0.2, 0.2)),
]


PANEL_W, PANEL_H, LEFT, TOP, GAP = 300, 200, 55, 40, 70
TOKEN_RANGE = (math.log10(1e6), math.log10(2e7))


def panel(records: list[dict], x0: float, y0: float, title: str, value, low: float, high: float) -> list[str]:
    """One measure's panel at ``(x0, y0)``: its value against training tokens, one line per width."""
    low_x, high_x = TOKEN_RANGE

    def x(tokens: float) -> float:
        return x0 + (math.log10(tokens) - low_x) / (high_x - low_x) * PANEL_W

    def y(v: float) -> float:
        return y0 + (high - v) / (high - low) * PANEL_H

    parts = [
        f'<text x="{x0 + PANEL_W / 2}" y="{y0 - 10}" text-anchor="middle">{title}</text>',
        f'<rect x="{x0}" y="{y0}" width="{PANEL_W}" height="{PANEL_H}" fill="none" stroke="#999"/>',
        f'<text x="{x0 + PANEL_W / 2}" y="{y0 + PANEL_H + 30}" text-anchor="middle">training tokens</text>',
    ]
    for k in range(5):
        tick = low + k * (high - low) / 4
        parts.append(f'<line x1="{x0}" x2="{x0 + PANEL_W}" y1="{y(tick)}" y2="{y(tick)}" stroke="#eee"/>')
        parts.append(f'<text x="{x0 - 4}" y="{y(tick) + 4}" text-anchor="end">{tick:g}</text>')
    for tokens, label in ((1e6, "1M"), (1.6e6, "1.6M"), (6.4e6, "6.4M"), (1.5e7, "15M")):
        parts.append(f'<text x="{x(tokens)}" y="{y0 + PANEL_H + 15}" text-anchor="middle">{label}</text>')
    series = (  # a steering panel (its behaviour's name): both signs, negative dashed
        [(lambda r, s=s: r["shifts"].get((value, 0.1, s)), "" if s > 0 else ' stroke-dasharray="5,3"') for s in (1, -1)]
        if isinstance(value, str)
        else [(value, "")]
    )
    for d_sae, colour in WIDTH_COLOURS.items():
        for get, dash in series:
            points = [
                (x(r["tokens"]), y(v))
                for r in sorted(records, key=lambda r: r["tokens"])
                if r["d_sae"] == d_sae and (v := get(r)) is not None
            ]
            if len(points) > 1:
                path = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
                parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>')
            parts.extend(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{colour}"/>' for px, py in points)
    return parts


def figure_svg(records: list[dict]) -> str:
    width, height = LEFT + 3 * (PANEL_W + GAP), TOP + 2 * (PANEL_H + GAP) + 20
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
        'font-size="12"><rect width="100%" height="100%" fill="white"/>'
    ]
    for i, (title, value, (low, high)) in enumerate(PANELS):
        x0, y0 = LEFT + (i % 3) * (PANEL_W + GAP), TOP + (i // 3) * (PANEL_H + GAP)
        parts += panel(records, x0, y0, title, value, low, high)
    for i, (d_sae, colour) in enumerate(WIDTH_COLOURS.items()):
        lx, ly = LEFT + i * 140, height - 12
        parts.append(f'<line x1="{lx}" x2="{lx + 18}" y1="{ly - 4}" y2="{ly - 4}" stroke="{colour}" stroke-width="2"/>')
        parts.append(f'<text x="{lx + 24}" y="{ly}">{d_sae // 1024}k latents</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("saes", nargs="+", help="shipped layer-9 names (4k, 16k) or training folders")
    parser.add_argument("--readability", type=Path, required=True)
    parser.add_argument("--steering-dir", type=Path, required=True)
    parser.add_argument("--svg", type=Path, help="write the figure here")
    args = parser.parse_args()
    readability = {r["sae"]: r for r in read_rows(args.readability.expanduser())}
    records = [sae_record(name, readability, args.steering_dir.expanduser()) for name in args.saes]
    print(table(records))
    if args.svg:
        args.svg.write_text(figure_svg(records))


if __name__ == "__main__":
    main()
