"""The main job on the embedded default: what `sas-lens demo` runs.

Loads Gemma 3 270M (converting it on the first run) and the shipped SAE, builds
an SAS and a dense vector from each shipped demo pair set, prints their sizes and
top latents, sweeps λ on the held-out items of the A/B set (caution), scores the
latents against a shipped topic (medicine), shows unsteered against steered
continuations (each vector alone, the topic, a vector and the topic composed), and writes an HTML
report (vector cards with top contexts, overlap, monosemanticity across the
shipped SAE widths, λ curves, the topic's latents). Everything it writes goes
under one folder (``--out``).

Top contexts come from ``corpus`` (e.g. the Wikipedia text the SAE was trained
on); without one, from the texts of the shipped demo pair sets.
"""

from __future__ import annotations

import resource
import time
from pathlib import Path

DEMO_PROMPTS = ["I thought the film was", "Dear team, about tomorrow's meeting:", "After work I usually"]
SAS_STRENGTH = 4.0
DENSE_STRENGTH = 4.0
HELD_OUT_AB_ITEMS = 12  # of an A/B demo set, kept out of its vectors for the λ sweep
SWEEP_LAMS = (-16.0, -8.0, -4.0, 0.0, 4.0, 8.0, 16.0)
DEMO_TOPIC = "medicine"
# Measured on the three demo prompts with the shipped 15 medicine texts: topic similarity of the
# continuations 0.082 unsteered, unchanged at strengths 4 and 6, 0.26 at 12, 0.37 at 16.
TOPIC_LATENTS, TOPIC_STRENGTH = 64, 12.0
COMPOSED = "sentiment"  # composed with the topic, each at its own λ (the SAS sentiment and topic-food
# vectors share their one latent at τ = 0.7, so composing those two would show nothing new)
TOPIC_MIN_PROMPTS = 5  # a latent's topic score counts once it fires on this many reference prompts


def run_demo(out_dir: str | Path = "sas_lens_output", max_new_tokens: int = 24, corpus=None,
             index_tokens: int = 100_000) -> dict:
    """Run the demo; print what it does and return its timings."""
    import sas_lens as sl
    from sas_lens.loading.models import default_model_dir
    from sas_lens.steering.extraction import collect_residuals
    from sas_lens.steering.hf_backend import preferred_backend

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
    except sl.errors.NoDefaultSAEError as err:
        print(f"no shipped SAE ({err}); showing dense vectors only")
        sae = None
    layer = int(sae.cfg.metadata.hook_name.split(".")[1]) if sae is not None else 9
    if sae is not None:
        print(f"SAE: {sae.cfg.d_sae} latents at {sae.cfg.metadata.hook_name} ({sae.cfg.architecture()})")

    start = time.perf_counter()
    vectors, held_out = {}, {}
    for name in sl.demo_sets():
        pairs = sl.load_pairs(f"demo:{name}")
        if pairs.kind == "ab":
            pairs, held_out[name] = pairs.split(len(pairs) - HELD_OUT_AB_ITEMS)  # the last items held out
        residuals = collect_residuals(model, pairs, layer, progress=False)  # one pass for both vectors
        dense = sl.dense_vector(model, pairs, layer=layer, residuals=residuals)
        dense.save(out_dir / "vectors" / f"{name}.dense.safetensors")
        line = f"  {name:<11} {len(pairs)} {pairs.kind} pairs: dense norm {float(dense.vector.norm()):.0f}"
        sas = None
        if sae is not None:
            sas = sl.sas_vector(model, sae, pairs, tau=0.7, residuals=residuals)
            sas.save(out_dir / "vectors" / f"{name}.sas.safetensors")
            n_pos, n_neg = int((sas.values > 0).sum()), int((sas.values < 0).sum())
            line += f"; SAS {len(sas)} of {sae.cfg.d_sae} latents ({n_pos} +, {n_neg} -)"
        vectors[name] = (sas, dense)
        print(line)
    timings["vectors_s"] = time.perf_counter() - start
    print(f"vectors built in {timings['vectors_s']:.1f} s, saved under {out_dir / 'vectors'}")

    start = time.perf_counter()
    sweeps = {}
    for name, items in held_out.items():
        sweeps[name] = _lambda_sweep(model, sae, *vectors[name], items)
    timings["lambda_sweep_s"] = time.perf_counter() - start
    topic = None
    if sae is not None:
        start = time.perf_counter()
        topic = sl.topic_scores(model, sae, sl.demo_topic_texts(DEMO_TOPIC), name=DEMO_TOPIC)
        timings["topic_alignment_s"] = time.perf_counter() - start
        print(f"\ntopic {DEMO_TOPIC!r}: latents scored against {topic.metadata['n_alignment_texts']} shipped "
              f"texts in {timings['topic_alignment_s']:.1f} s; most aligned, firing on >= {TOPIC_MIN_PROMPTS} "
              "reference prompts (latent, score): "
              + ", ".join(f"{latent} {score:.2f}" for latent, score in topic.top(5, TOPIC_MIN_PROMPTS)))
        start = time.perf_counter()
        report_path = _write_report(model, sae, vectors, out_dir, corpus, index_tokens, sweeps, topic)
        timings["report_s"] = time.perf_counter() - start

    start = time.perf_counter()
    backend = preferred_backend(model)
    unsteered = sl.generate(model, DEMO_PROMPTS, max_new_tokens=max_new_tokens, backend=backend)
    report = []
    runs = []
    for name, (sas, dense) in vectors.items():
        if sas is not None:
            runs.append((f"{name}, SAS, λ={SAS_STRENGTH:g}", {sas: SAS_STRENGTH}))
        runs.append((f"{name}, dense, λ={DENSE_STRENGTH:g}", {dense: DENSE_STRENGTH}))
    if topic is not None:
        amplify = topic.vector(TOPIC_LATENTS, min_prompts=TOPIC_MIN_PROMPTS)
        runs.append((f"topic {DEMO_TOPIC!r}, amplify {TOPIC_LATENTS} latents, strength {TOPIC_STRENGTH:g}",
                     {amplify: TOPIC_STRENGTH}))
        sas, _ = vectors[COMPOSED]
        if sas is not None and len(sas):
            runs.append((f"{COMPOSED} SAS λ={SAS_STRENGTH:g} + topic {DEMO_TOPIC!r} strength {TOPIC_STRENGTH:g}, "
                         "composed", {sas: SAS_STRENGTH, amplify: TOPIC_STRENGTH}))
    for label, steering in runs:
        steered = sl.generate(model, DEMO_PROMPTS, steering=steering, sae=sae,
                              max_new_tokens=max_new_tokens, backend=backend)
        print(f"\n[{label}]")
        for prompt, before, after in zip(DEMO_PROMPTS, unsteered, steered):
            print(f"  {prompt!r}\n     unsteered: {before!r}\n     steered:   {after!r}")
            report.append(f"[{label}] {prompt}\n  - {before}\n  + {after}\n")
    timings["generation_s"] = time.perf_counter() - start
    (out_dir / "continuations.txt").write_text("\n".join(report))

    timings["total_s"] = time.perf_counter() - started
    timings["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"\ncontinuations written to {out_dir / 'continuations.txt'}")
    if sae is not None:
        print(f"report: {report_path.resolve()}")
    print("timings: " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    return timings


def _lambda_sweep(model, sae, sas, dense, items):
    """p(behaviour-matching answer) on held-out items across :data:`SWEEP_LAMS`, printed and returned."""
    import pandas as pd

    from sas_lens.evaluation.behaviour import ab_cell, mean_ci

    rows = []
    for method, vector in (("sas", sas), ("dense", dense)):
        if vector is None or (method == "sas" and not len(vector)):
            continue
        for lam in SWEEP_LAMS:
            mean, low, high = mean_ci(ab_cell(model, items, method, vector, lam, sae=sae))
            rows.append({"method": method, "lam": lam, "mean": mean, "ci_low": low, "ci_high": high})
    table = pd.DataFrame(rows)
    print(f"\nλ sweep on the {len(items)} held-out items of demo:{items.name} (p of the matching answer, mean):")
    print("  λ      " + "  ".join(f"{lam:>6g}" for lam in SWEEP_LAMS))
    for method, group in table.groupby("method", sort=False):
        print(f"  {method:<6} " + "  ".join(f"{p:6.3f}" for p in group["mean"]))
    return table


def _write_report(model, sae, vectors: dict, out_dir: Path, corpus, index_tokens: int, sweeps: dict,
                  topic) -> Path:
    """Print each SAS vector's top latents and write the HTML report; returns its path."""
    import sas_lens as sl
    from sas_lens.analysis.attribution import top_latents
    from sas_lens.analysis.latent_index import latent_index
    from sas_lens.analysis.monosemanticity import compare_widths
    from sas_lens.analysis.report import write_report
    from sas_lens.loading.saes import sae_fingerprint

    if corpus is None:
        corpus = out_dir / "demo_texts.txt"
        corpus.write_text("\n\n".join(_demo_texts()), encoding="utf-8")
    index = latent_index(model, sae, corpus, n_tokens=index_tokens)
    print(f"\nlatent index: {index.n_tokens} tokens of {corpus} ({index.metadata['cached_at']})")
    sparse = [sas for sas, _ in vectors.values() if sas is not None and len(sas)]
    if not sparse:
        print("no SAS vector has a latent at this τ; the report shows the dense vectors only")
    for vector in sparse:
        table = top_latents(vector, sae, model, k=5, index=index, n_tokens=4, n_contexts=1)
        print(f"top latents of {vector.name}:")
        for row in table.to_dict("records"):
            context = row["contexts"][0] if row["contexts"] else "(did not fire on the corpus sample)"
            print(f"  {row['latent']:>6} {row['value']:+7.2f}  promotes {' '.join(row['promotes'])!r:<40} "
                  f"e.g. {context[-70:]!r}")
    if len(sparse) >= 2:
        from sas_lens.analysis.overlap import overlap_matrix

        matrix = overlap_matrix(sparse, sae=sae)
        print("\noverlap between SAS vectors (Jaccard of supports / weighted Jaccard):")
        for name in matrix.names:
            cells = "  ".join(f"{matrix.jaccard.loc[name, other]:.2f}/{matrix.weighted_jaccard.loc[name, other]:.2f}"
                              for other in matrix.names)
            print(f"  {name:<11} {cells}")
    shipped = [sl.load_sae(name, model=model) for name in sl.shipped_saes()]
    others = [s for s in shipped if sae_fingerprint(s) != sae_fingerprint(sae) and s.cfg.metadata.hook_name ==
              sae.cfg.metadata.hook_name]
    width_table = None
    if others and sparse:
        width_table = compare_widths(model, [sae, *others], sparse)
        print("\nmonosemanticity across widths (effective number of latents / support):")
        for behaviour, rows in width_table.groupby("behaviour"):
            cells = ", ".join(f"{int(r.d_sae)}: {r.effective_latents:.1f} / {int(r.support)}"
                              for r in rows.sort_values("d_sae").itertuples())
            print(f"  {behaviour:<11} {cells}")
    from sas_lens.analysis.figures import lambda_sweep_figure
    from sas_lens.analysis.report import Section, topic_section

    sections = [Section(f"λ sweep: demo:{name}, held-out items",
                        f"<p>p(behaviour-matching answer) on the {HELD_OUT_AB_ITEMS} items the vectors were not "
                        "built from, with 95% confidence bands.</p>",
                        [lambda_sweep_figure(table, title=f"demo:{name}: p(matching answer) across λ")])
                for name, table in sweeps.items() if len(table)]
    if topic is not None:
        sections.append(topic_section([topic], model=model, sae=sae, index=index,
                                      min_prompts=TOPIC_MIN_PROMPTS))
    all_vectors = [v for pair in vectors.values() for v in pair if v is not None]
    return write_report(out_dir / "report.html", all_vectors, model=model, sae=sae, index=index,
                        width_table=width_table, sections=sections, title="sas_lens demo report")


def _demo_texts() -> list[str]:
    import sas_lens as sl
    from sas_lens.loading.pairs import ABItem

    texts = []
    for name in sl.demo_sets():
        for pair in sl.load_pairs(f"demo:{name}"):
            if isinstance(pair, ABItem):
                texts.append(pair.question)
            else:
                texts.extend([pair.prompt + pair.positive, pair.prompt + pair.negative])
    return texts
