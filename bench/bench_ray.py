"""The same evaluation run serially and on a local Ray cluster: identical cells, and the wall time of each.

A small CAA grid on the embedded default (refusal at layer 9: SAS on the shipped 16k SAE and dense from 50
training pairs, λ ∈ {−8, −4, 0, 4, 8}, 20 A/B items, MMLU 10 items and 2,000 held-out tokens at the cost λs),
once serially with every core and once on a local Ray cluster of ``--actors`` single-CPU actors. Every cell's
figures are compared; the driver's serial parts on Ray (building vectors and units, writing results) are
timed, and the rest is what N GPUs would split.

    .venv/bin/python bench/bench_ray.py --actors 2 --out bench_ray.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--work", default="bench_ray_runs")
    parser.add_argument("--out", default="bench_ray.json")
    args = parser.parse_args()

    import shutil

    from sas_lens.distributed import RayExecutor
    from sas_lens.evaluation import results as results_module
    from sas_lens.evaluation.config import EvalConfig
    from sas_lens.evaluation.resources import EvalResources
    from sas_lens.evaluation.runner import run_evaluation

    cfg = EvalConfig(
        behaviours=("refusal",),
        data_dir=str(DATA / "caa"),
        layers=(9,),
        methods=("sas", "dense"),
        saes={"9": "16k"},
        lams={"sas": (-8.0, -4.0, 0.0, 4.0, 8.0), "dense": (-8.0, -4.0, 0.0, 4.0, 8.0)},
        cost_lams={"sas": (-8.0, 8.0), "dense": (-8.0, 8.0)},
        train_pairs=50,
        test_items=20,
        open_ended=0,
        mmlu=10,
        truthfulqa=0,
        heldout_text=str(DATA / "corpus" / "enwiki2015_AD.txt"),
        perplexity_tokens=2000,
    )
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    timings: dict[str, float] = {}

    def timed(name, function):
        def wrapper(*a, **k):
            started = time.perf_counter()
            try:
                return function(*a, **k)
            finally:
                timings[name] = timings.get(name, 0.0) + time.perf_counter() - started

        return wrapper

    started = time.perf_counter()
    serial = run_evaluation(cfg, work / "serial", progress=False)
    serial_s = time.perf_counter() - started

    # the driver's serial parts of the Ray run, timed where they happen
    EvalResources.prepare = timed("driver_prepare_s", EvalResources.prepare)
    results_module.write_results = timed("driver_write_results_s", results_module.write_results)
    executor = RayExecutor(actors=args.actors, cpus_per_actor=1)
    started = time.perf_counter()
    executor.connect()
    timings["ray_init_s"] = time.perf_counter() - started
    on_ray = run_evaluation(cfg, work / "ray", progress=False, executor=executor)
    ray_s = time.perf_counter() - started

    worst, compared = 0.0, 0
    for a, b in zip(serial, on_ray):
        assert a["key"] == b["key"] and a.keys() == b.keys(), (a["key"], b["key"])
        for name in a.keys() - {"seconds"}:
            if isinstance(a[name], float):
                worst, compared = max(worst, abs(a[name] - b[name])), compared + 1
            else:
                assert a[name] == b[name], (a["key"], name)
    cell_s = sum(r["seconds"] for r in on_ray)
    result = {
        "cells": len(serial),
        "actors": args.actors,
        "serial_wall_s": serial_s,
        "ray_wall_s": ray_s,
        "max_abs_difference": worst,
        "figures_compared": compared,
        "sum_of_cell_seconds_on_ray": cell_s,
        **timings,
        "retried": executor.report["retried"],
        "failed": executor.report["failed"],
    }
    serial_part = timings["driver_prepare_s"] + timings["driver_write_results_s"]
    result["driver_serial_share"] = serial_part / ray_s
    print(json.dumps(result, indent=1))
    Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
