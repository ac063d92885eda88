"""A/B items per second in a λ sweep, every block run per λ against the unsteered prefix kept (PrefixCache).

The A/B cells of ``configs/caa_eval.toml`` for one behaviour at one layer: its 40 test items, SAS (the shipped
16k SAE at layer 9) and dense vectors from its first 50 training pairs, steered at the config's 11 λ values
each. Both ways run in one process on the same vectors; the probabilities must agree (the largest difference is
printed) and the ratio of items per second is the speed-up.

    .venv/bin/python bench/bench_prefix.py --behaviour refusal --layer 9
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

CAA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "caa"
LAMS = (-64, -32, -16, -8, -4, 0, 4, 8, 16, 32, 64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--behaviour", default="refusal")
    parser.add_argument("--layer", type=int, default=9)
    parser.add_argument("--items", type=int, default=40)
    parser.add_argument("--out", default="bench_prefix.json")
    args = parser.parse_args()

    import sas_lens as sl
    from sas_lens.steering.prefix import PrefixCache
    from sas_lens.steering.scoring import ab_probabilities

    torch.set_grad_enabled(False)
    model = sl.load_model()
    train = sl.load_pairs(CAA / "generate" / args.behaviour / "generate_dataset.json", limit=50)
    items = sl.load_pairs(CAA / "test" / args.behaviour / "test_dataset_ab.json", limit=args.items)
    sae = sl.load_sae("16k" if args.layer == 9 else "4k", layer=args.layer, model=model)
    sas, dense = sl.sas_vector(model, sae, train), sl.dense_vector(model, train, layer=args.layer)
    runs = [({}, None)] + [({sas: lam}, sae) for lam in LAMS if lam] + [({dense: lam}, None) for lam in LAMS if lam]

    def sweep(prefix) -> tuple[float, float, list]:
        """Wall and CPU seconds (CPU time: this process only, robust to other jobs sharing the machine)."""
        wall, cpu = time.perf_counter(), time.process_time()
        probabilities = [
            ab_probabilities(model, items, steering=steering, sae=s, prefix=prefix) for steering, s in runs
        ]
        return time.perf_counter() - wall, time.process_time() - cpu, probabilities

    ab_probabilities(model, items, steering=runs[1][0], sae=sae)  # warm-up: tokenizer caches, allocator
    full_s, full_cpu, full = sweep(None)
    cache = PrefixCache()
    cached_s, cached_cpu, cached = sweep(cache)
    n = len(runs) * len(items)
    result = {
        "behaviour": args.behaviour,
        "layer": args.layer,
        "n_layers": model.cfg.n_layers,
        "runs": len(runs),
        "items": len(items),
        "threads": torch.get_num_threads(),
        "full_items_per_s": n / full_s,
        "prefix_items_per_s": n / cached_s,
        "speedup": full_s / cached_s,
        "full_items_per_cpu_s": n / full_cpu,
        "prefix_items_per_cpu_s": n / cached_cpu,
        "speedup_cpu": full_cpu / cached_cpu,
        "max_abs_difference": max(float((a - b).abs().max()) for a, b in zip(full, cached)),
        "cache_mb": cache.n_bytes / 2**20,
    }
    print(json.dumps(result, indent=1))
    Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
