"""Warm start: `import sas_lens; sl.load_model()` against importing transformers and loading the same cached
weights with it, each in a fresh process (what a kernel restart is), and a second load within the process.

Both caches must be warm (run `sl.load_model()` once first). Each measurement runs ``--repeats`` times,
alternating the two, and the medians are reported with their ratio.

    .venv/bin/python bench/bench_load.py
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

SAS_LENS = """
import time, json
t0 = time.perf_counter()
import sas_lens as sl
model = sl.load_model()
t1 = time.perf_counter()
model = sl.load_model()
t2 = time.perf_counter()
print(json.dumps({"first": t1 - t0, "second": t2 - t1}))
"""

TRANSFORMERS = """
import time, json
t0 = time.perf_counter()
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from sas_lens.loading.models import default_model_dir
AutoTokenizer.from_pretrained(default_model_dir())
AutoModelForCausalLM.from_pretrained(default_model_dir(), dtype=torch.float32)
t1 = time.perf_counter()
AutoTokenizer.from_pretrained(default_model_dir())
AutoModelForCausalLM.from_pretrained(default_model_dir(), dtype=torch.float32)
t2 = time.perf_counter()
print(json.dumps({"first": t1 - t0, "second": t2 - t1}))
"""


def run(code: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HOME": __import__("os").environ["HOME"]},
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    timings = {"sas_lens": [], "transformers": []}
    for _ in range(args.repeats):
        timings["sas_lens"].append(run(SAS_LENS))
        timings["transformers"].append(run(TRANSFORMERS))
    medians = {
        name: {k: statistics.median(t[k] for t in runs) for k in ("first", "second")} for name, runs in timings.items()
    }
    for k in ("first", "second"):
        ratio = medians["sas_lens"][k] / medians["transformers"][k]
        print(
            f"{k} load: sas_lens {medians['sas_lens'][k]:.1f} s, transformers {medians['transformers'][k]:.1f} s, "
            f"ratio {ratio:.2f}"
        )
    print(json.dumps(timings))


if __name__ == "__main__":
    main()
