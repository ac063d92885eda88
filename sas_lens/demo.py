"""The main job on the embedded default: what `sas-lens demo` runs.

Loads Gemma 3 270M (converting it on the first run) and the shipped SAE, builds
an SAS and a dense vector from each shipped demo pair set, prints their sizes,
and shows unsteered against steered continuations. Everything it writes goes
under one folder (``--out``).
"""

from __future__ import annotations

import resource
import time
from pathlib import Path

DEMO_PROMPTS = ["I thought the film was", "Dear team, about tomorrow's meeting:", "After work I usually"]
SAS_STRENGTH = 4.0
DENSE_STRENGTH = 4.0


def run_demo(out_dir: str | Path = "sas_lens_output", max_new_tokens: int = 24) -> dict:
    """Run the demo; print what it does and return its timings."""
    import sas_lens as sl
    from sas_lens.models import default_model_dir

    out_dir = Path(out_dir)
    (out_dir / "vectors").mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    started = time.perf_counter()

    was_cached = (default_model_dir() / "config.json").exists()
    start = time.perf_counter()
    model = sl.load_model()
    timings["load_model_s"] = time.perf_counter() - start
    print(f"model: {model.cfg.model_name} (4-bit Q4_K_M weights, dequantised to float32), "
          f"{model.cfg.n_layers} layers, d_model={model.cfg.d_model}")
    print(f"cache: {default_model_dir()} ({'warm' if was_cached else 'cold: converted now'}); "
          f"load_model(): {timings['load_model_s']:.1f} s")

    try:
        sae = sl.load_sae(model=model)
    except sl.NoDefaultSAEError as err:
        print(f"no shipped SAE ({err}); showing dense vectors only")
        sae = None
    layer = int(sae.cfg.metadata.hook_name.split(".")[1]) if sae is not None else 9
    if sae is not None:
        print(f"SAE: {sae.cfg.d_sae} latents at {sae.cfg.metadata.hook_name} ({sae.cfg.architecture()})")

    start = time.perf_counter()
    vectors = {}
    for name in sl.demo_sets():
        pairs = sl.load_pairs(f"demo:{name}")
        dense = sl.dense_vector(model, pairs, layer=layer)
        dense.save(out_dir / "vectors" / f"{name}.dense.safetensors")
        line = f"  {name:<11} {len(pairs)} {pairs.kind} pairs: dense norm {float(dense.vector.norm()):.0f}"
        sas = None
        if sae is not None:
            sas = sl.sas_vector(model, sae, pairs, tau=0.7)
            sas.save(out_dir / "vectors" / f"{name}.sas.safetensors")
            n_pos, n_neg = int((sas.values > 0).sum()), int((sas.values < 0).sum())
            line += f"; SAS {len(sas)} of {sae.cfg.d_sae} latents ({n_pos} +, {n_neg} -)"
        vectors[name] = (sas, dense)
        print(line)
    timings["vectors_s"] = time.perf_counter() - start
    print(f"vectors built in {timings['vectors_s']:.1f} s, saved under {out_dir / 'vectors'}")

    start = time.perf_counter()
    unsteered = sl.generate(model, DEMO_PROMPTS, max_new_tokens=max_new_tokens, backend="hf")
    report = []
    for name, (sas, dense) in vectors.items():
        runs = [("dense", {dense: DENSE_STRENGTH})]
        if sas is not None:
            runs.insert(0, ("SAS", {sas: SAS_STRENGTH}))
        for label, steering in runs:
            steered = sl.generate(model, DEMO_PROMPTS, steering=steering, sae=sae,
                                  max_new_tokens=max_new_tokens, backend="hf")
            strength = next(iter(steering.values()))
            print(f"\n[{name}, {label}, λ={strength:g}]")
            for prompt, before, after in zip(DEMO_PROMPTS, unsteered, steered):
                print(f"  {prompt!r}\n     unsteered: {before!r}\n     steered:   {after!r}")
                report.append(f"[{name} {label} λ={strength:g}] {prompt}\n  - {before}\n  + {after}\n")
    timings["generation_s"] = time.perf_counter() - start
    (out_dir / "continuations.txt").write_text("\n".join(report))

    timings["total_s"] = time.perf_counter() - started
    timings["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"\ncontinuations written to {out_dir / 'continuations.txt'}")
    print("timings: " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    return timings
