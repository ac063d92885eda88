"""The main job on the embedded default: what `sas-lens demo` runs.

For now it loads Gemma 3 270M (converting it on the first run), generates from a
prompt, and reports where the cache is and how long each step took; later
issues grow it into the full steering demo.
"""

from __future__ import annotations

import resource
import time
from pathlib import Path

DEMO_PROMPT = "The best way to learn about sparse autoencoders is"


def run_demo(out_dir: str | Path = "sas_lens_output", prompt: str = DEMO_PROMPT, max_new_tokens: int = 24) -> dict:
    """Run the demo and return its timings (also printed)."""
    from sas_lens.models import default_model_dir, load_model

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    was_cached = (default_model_dir() / "config.json").exists()
    start = time.perf_counter()
    model = load_model()
    load_s = time.perf_counter() - start
    print(f"model: {model.cfg.model_name} (4-bit Q4_K_M weights, dequantised to float32), "
          f"{model.cfg.n_layers} layers, d_model={model.cfg.d_model}")
    print(f"cache: {default_model_dir()} ({'warm' if was_cached else 'cold: converted now'})")
    print(f"load_model(): {load_s:.1f} s")

    start = time.perf_counter()
    text = model.generate(prompt, max_new_tokens=max_new_tokens, do_sample=False, verbose=False)
    gen_s = time.perf_counter() - start
    print(f"greedy continuation ({max_new_tokens} tokens, {gen_s:.1f} s):\n  {text!r}")
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"peak memory: {peak_gib:.1f} GiB")
    summary = {"load_s": load_s, "generate_s": gen_s, "cold_cache": not was_cached, "peak_rss_gib": peak_gib, "text": text}
    (out_dir / "demo.txt").write_text(text + "\n")
    return summary
