"""The three model kinds on the embedded Gemma 3 270M: load time, memory, and whether they steer alike (issue 30).

Each kind loads in a fresh process (peak resident memory is that process's): ``"tl"`` (HookedSAETransformer,
from its cache after the first load), ``"bridge"`` (TransformerLens's TransformerBridge around the
transformers model) and ``"hf"`` (the plain transformers model as ``HookedHF``). Each then computes
next-token log-probabilities on the 32 neutral prompts of ``bench_vectors.py``, unsteered and steered by the
demo sentiment vector (built once on the ``"tl"`` model, saved, loaded by each) at λ = 34 (a strong edit: next-token KL about 2.7),
and the parent compares them: the largest absolute log-probability difference and the mean KL between kinds.

    .venv/bin/python bench/bench_model_kinds.py --out ~/bench_model_kinds
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

LAM = 34.0


def _memory_mb() -> dict[str, float]:
    """Resident and peak resident memory of this process, from /proc (``ru_maxrss`` would carry the parent's
    peak across ``exec``)."""
    status = Path("/proc/self/status").read_text()
    return {key: int(re.search(rf"{key}:\s+(\d+) kB", status).group(1)) / 1024 for key in ("VmRSS", "VmHWM")}


def child(kind: str, out: Path) -> None:
    import torch
    from bench_vectors import NEUTRAL_PROMPTS

    import sas_lens as sl

    start = time.perf_counter()
    model = sl.load_model(kind=kind, device="cpu")
    load_s = time.perf_counter() - start
    memory_after_load = _memory_mb()
    sae = sl.load_sae("16k", model=model)
    vector = sl.load_vector(out / "sentiment.safetensors", model=model, sae=sae)
    rows = {}
    for label, steering in (("unsteered", {}), ("steered", {vector: LAM})):
        with torch.no_grad(), sl.steer(model, steering, sae=sae):
            rows[label] = np.stack(
                [torch.log_softmax(model(model.to_tokens(p))[0, -1].double(), -1).numpy() for p in NEUTRAL_PROMPTS]
            )
    np.savez(out / f"{kind}.npz", **rows)
    record = {"kind": kind, "load_s": load_s, **{f"{k}_after_load": v for k, v in memory_after_load.items()}}
    (out / f"{kind}.json").write_text(json.dumps(record | {f"{k}_at_end": v for k, v in _memory_mb().items()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="~/bench_model_kinds")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    out = Path(args.out).expanduser()
    if args.child:
        return child(args.child, out)
    out.mkdir(parents=True, exist_ok=True)
    import sas_lens as sl

    model = sl.load_model()  # converts / caches once, outside the timed children
    sl.sas_vector(model, sl.load_sae("16k", model=model), "demo:sentiment").save(out / "sentiment.safetensors")
    del model
    for kind in ("tl", "bridge", "hf"):
        subprocess.run([sys.executable, __file__, "--out", str(out), "--child", kind], check=True)
    results = {kind: json.loads((out / f"{kind}.json").read_text()) for kind in ("tl", "bridge", "hf")}
    probs = {kind: np.load(out / f"{kind}.npz") for kind in results}
    for kind in ("bridge", "hf"):
        for label in ("unsteered", "steered"):
            a, b = probs["tl"][label], probs[kind][label]
            results[kind][f"{label}_max_abs_logprob_diff_vs_tl"] = float(np.abs(a - b).max())
            results[kind][f"{label}_kl_tl_vs_kind"] = float((np.exp(a) * (a - b)).sum(-1).mean())
    for kind in results:
        effect = probs[kind]
        results[kind]["steering_kl"] = float(
            (np.exp(effect["steered"]) * (effect["steered"] - effect["unsteered"])).sum(-1).mean()
        )
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
