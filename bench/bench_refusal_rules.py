"""The efficiency curve on a CAA behaviour (issue 27, item 5): every rule's A/B shift at matched next-token KL.

``configs/matched_kl_eval.toml`` (refusal A/B at layer 9 of the embedded Gemma 3 270M, 200 training pairs,
50 test items, λ of each sign searched to the KL targets on the first 8 test prompts) run once per rule,
each rule an override of that config's ``methods``, ``[sas]`` and ``[dense]`` tables, each in its own
folder under ``--out`` (``sas-lens eval`` runs, so each resumes where it was stopped). Prompting has no λ:
its row is the A/B cell with the behaviour's instruction (+) or its opposite (−), at whatever KL that costs.

    .venv/bin/python bench/bench_refusal_rules.py --out bench/results/refusal-16k   # every rule, in order
    .venv/bin/python bench/bench_refusal_rules.py --out bench/results/refusal-16k --rules "dense fitted"
    .venv/bin/python bench/bench_refusal_rules.py --out bench/results/refusal-16k --table
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

KL_TARGETS = (0.05, 0.1, 0.2, 0.4)  # the config's
CONFIG = Path(__file__).resolve().parents[1] / "configs" / "matched_kl_eval.toml"
# rule → (the config's method that carries it, its overrides). The README's rows, in the efficiency table's order.
RULES = {
    "prompting": ("prompting", {"lams": {"prompting": (-1.0, 0.0, 1.0)}, "kl_targets": ()}),
    "dense (CAA)": ("dense", {}),
    "dense fitted": ("dense", {"dense": {"fit": "preference"}}),
    "paper (tau 0.7, sae gate)": ("sas", {"sas": {"selection": "paper"}}),
    "contrast top16 (default)": ("sas", {}),
    "contrast top16, output score >= 0.01": ("sas", {"sas": {"min_output_score": 0.01}}),
    "contrast top16, density <= 0.01, no BOS": ("sas", {"sas": {"max_density": 0.01, "drop_bos": True}}),
    "attribution top16": ("sas", {"sas": {"selection": "attribution"}}),
    "contrast top16 fitted": ("sas", {"sas": {"fit": "preference"}}),
    "attribution top16 fitted": ("sas", {"sas": {"selection": "attribution", "fit": "preference"}}),
}


def rule_config(name: str, sae: str):
    from sas_lens.evaluation.config import load_config

    method, overrides = RULES[name]
    overrides = {"lams": {method: (0.0,)}, **overrides}  # λ = 0: the unsteered A/B cell the shifts start from
    return dataclasses.replace(
        load_config(CONFIG), methods=(method,), cost_lams={method: ()}, saes={"9": sae}, **overrides
    )


def folder(out: Path, name: str) -> Path:
    return out / "".join(c if c.isalnum() else "_" for c in name).strip("_")


def run(args) -> None:
    import sas_lens as sl

    model = sl.load_model()
    for name in args.rules or RULES:
        print(f"== {name}", flush=True)
        sl.run_evaluation(rule_config(name, args.sae), folder(args.out, name), model=model)


def table(args) -> None:
    import pandas as pd

    from sas_lens.evaluation.results import matched_kl_table
    from sas_lens.steering.vectors import load_vector

    print("| method | latents | " + " | ".join(f"KL {kl} + / −" for kl in KL_TARGETS) + " | works |")
    print("| --- | --- |" + " --- |" * (len(KL_TARGETS) + 1))
    for name in args.rules or RULES:
        cells_file = folder(args.out, name) / "cells.jsonl"
        if not cells_file.exists():
            continue
        records = [json.loads(line) for line in cells_file.read_text().splitlines() if line.strip()]
        base = next((r["mean"] for r in records if r["kind"] == "ab" and r["lam"] == 0), None)
        if name == "prompting":
            p = {r["lam"]: r["mean"] for r in records if r["kind"] == "ab"}
            shifts = " / ".join(f"{p[s] - base:+.3f}" if s in p else "–" for s in (1.0, -1.0))
            print(f"| {name} | – | {shifts} (KL not matched) |" + " |" * (len(KL_TARGETS) - 1) + " – |")
            continue
        rows = matched_kl_table(records)
        if rows.empty:
            continue
        by_kl = {row["kl"]: row for _, row in rows.iterrows()}
        shift = {
            (kl, sign): by_kl[kl][f"shift({label})"]
            for kl in KL_TARGETS
            for sign, label in ((1, "+"), (-1, "-"))
            if kl in by_kl and not pd.isna(by_kl[kl][f"shift({label})"])
        }
        parts = [" / ".join(f"{shift[kl, s]:+.3f}" if (kl, s) in shift else "–" for s in (1, -1)) for kl in KL_TARGETS]
        right = sum(value * sign > 0 for (_, sign), value in shift.items())
        works = "yes" if right == 2 * len(KL_TARGETS) else f"{right}/{2 * len(KL_TARGETS)}"
        method = RULES[name][0]
        vector = folder(args.out, name) / "vectors" / f"refusal-L9-{method}.safetensors"
        latents = len(load_vector(vector)) if method == "sas" and vector.exists() else "–"
        print(f"| {name} | {latents} | " + " | ".join(parts) + f" | {works} |")
    print(f"\nunsteered p = {base:.3f}" if base is not None else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=lambda s: Path(s).expanduser(), required=True)
    parser.add_argument("--sae", default="16k", help="the layer-9 SAE (a shipped name or a folder)")
    parser.add_argument("--rules", nargs="*", help="a subset of: " + "; ".join(RULES))
    parser.add_argument("--table", action="store_true", help="print the table of what --out holds")
    args = parser.parse_args()
    table(args) if args.table else run(args)


if __name__ == "__main__":
    main()
