"""The main job on the embedded default: what `sas-lens demo` runs.

Loads Gemma 3 270M (converting it on the first run) and the shipped SAE, builds
an SAS vector (the library's default settings) and a dense one from each shipped demo pair
set, prints their sizes and top latents, sweeps λ on the held-out items of the A/B set
(caution), scores the latents against a shipped topic (medicine), shows unsteered against
steered continuations (each vector alone, the topic, a vector and the topic composed) with
the scores of judges no one here wrote (VADER sentiment, sentence-embedding similarity), and writes an HTML
report (vector cards with top contexts, overlap, monosemanticity across the
shipped SAE widths, λ curves, the topic's latents). Everything it writes goes
under one folder (``--out``).

Top contexts come from ``corpus`` (e.g. the Wikipedia text the SAE was trained
on); without one, from the texts of the shipped demo pair sets.
"""

from __future__ import annotations

import resource
import time
from contextlib import contextmanager
from pathlib import Path

DEMO_PROMPTS = ["I thought the film was", "Dear team, about tomorrow's meeting:", "After work I usually"]
# λ means code units for SAS and residual units for dense vectors, so each vector steers at the λ that
# moves the next-token distribution on the demo prompts by the same mean KL (matched cost), and the
# λ sweep runs in multiples of each vector's λ at KL 0.1.
STEER_KL = 0.3
SWEEP_MULTIPLES = (-4.0, -2.0, -1.0, 0.0, 1.0, 2.0, 4.0)
HELD_OUT_AB_ITEMS = 12  # of an A/B demo set, kept out of its vectors for the λ sweep
DEMO_TOPIC = "medicine"
# Measured on the three demo prompts with the shipped 15 medicine texts, latents ranked with per-prompt token
# means: topic similarity of the continuations 0.082 unsteered, unchanged at strengths 4 and 6, 0.26 at 12,
# 0.37 at 16. With the original's summary ("avg", the library's default) amplify did not move medicine at all
# in bench/bench_topic.py (0.080 → 0.080 at 8; token means 0.109), so the demo ranks by token means.
TOPIC_LATENTS, TOPIC_STRENGTH, TOPIC_SUMMARY = 64, 12.0, "token_mean"
COMPOSED = "sentiment"  # composed with the topic, each at its own λ
TOPIC_MIN_PROMPTS = 5  # a latent's topic score counts once it fires on this many reference prompts


def run_demo(
    out_dir: str | Path = "sas_lens_output", max_new_tokens: int = 24, corpus=None, index_tokens: int = 100_000
) -> dict:
    """Run the demo; print what it does and return its timings (seconds, and peak memory in GiB).

    Args:
        out_dir: the folder for everything the demo writes (vectors, continuations, report).
        max_new_tokens: tokens per steered continuation.
        corpus: text files for the latents' top contexts (default: the shipped demo pair texts).
        index_tokens: corpus tokens to index.

    Example:
        >>> timings = run_demo("sas_lens_output")   # doctest: +SKIP
    """
    out_dir = Path(out_dir)
    (out_dir / "vectors").mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    with _timed(timings, "load_model_s"):
        model, sae, layer = _load(timings)
    with _timed(timings, "vectors_s"):
        vectors, held_out = _build_vectors(model, sae, layer, out_dir)
    print(f"vectors built in {timings['vectors_s']:.1f} s, saved under {out_dir / 'vectors'}")
    with _timed(timings, "lambda_sweep_s"):
        sweeps = {name: _lambda_sweep(model, sae, *vectors[name], items) for name, items in held_out.items()}
    topic = report_path = None
    if sae is not None:
        with _timed(timings, "topic_alignment_s"):
            topic = _align_topic(model, sae)
        with _timed(timings, "report_s"):
            report_path = _write_report(model, sae, vectors, out_dir, corpus, index_tokens, sweeps, topic)
    with _timed(timings, "generation_s"):
        _show_continuations(model, sae, vectors, topic, out_dir, max_new_tokens)
    timings["total_s"] = time.perf_counter() - started
    timings["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"\ncontinuations written to {out_dir / 'continuations.txt'}")
    if report_path is not None:
        print(f"report: {report_path.resolve()}")
    print("timings: " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    return timings


@contextmanager
def _timed(timings: dict[str, float], key: str):
    start = time.perf_counter()
    yield
    timings[key] = time.perf_counter() - start


def _load(timings: dict[str, float]):
    """The embedded model, the shipped SAE (``None`` if none ships) and its layer, described as they load."""
    from sas_lens.errors import NoDefaultSAEError
    from sas_lens.loading.models import default_model_dir, load_model
    from sas_lens.loading.saes import hook_layer, load_sae, sae_hook_name

    was_cached = (default_model_dir() / "config.json").exists()
    start = time.perf_counter()
    model = load_model()
    print(
        f"model: {model.cfg.model_name} (4-bit Q4_K_M weights, dequantised to float32), "
        f"{model.cfg.n_layers} layers, d_model={model.cfg.d_model}"
    )
    print(
        f"cache: {default_model_dir()} ({'warm' if was_cached else 'cold: converted now'}); "
        f"load_model(): {time.perf_counter() - start:.1f} s"
    )
    try:
        sae = load_sae(model=model)
    except NoDefaultSAEError as err:
        print(f"no shipped SAE ({err}); showing dense vectors only")
        return model, None, 9
    print(f"SAE: {sae.cfg.d_sae} latents at {sae_hook_name(sae)} ({sae.cfg.architecture()})")
    return model, sae, hook_layer(sae_hook_name(sae))


def _build_vectors(model, sae, layer: int, out_dir: Path):
    """An SAS and a dense vector per shipped demo set (A/B sets keep their last items out), saved and printed."""
    from sas_lens.loading.pairs import demo_sets, load_pairs
    from sas_lens.steering.build_vectors import dense_vector, sas_vector
    from sas_lens.steering.extraction import collect_residuals

    vectors, held_out = {}, {}
    for name in demo_sets():
        pairs = load_pairs(f"demo:{name}")
        if pairs.kind == "ab":
            pairs, held_out[name] = pairs.split(len(pairs) - HELD_OUT_AB_ITEMS)  # the last items held out
        residuals = collect_residuals(model, pairs, layer, progress=False)  # one pass for both vectors
        dense = dense_vector(model, pairs, layer=layer, residuals=residuals)
        dense.save(out_dir / "vectors" / f"{name}.dense.safetensors")
        line = f"  {name:<11} {len(pairs)} {pairs.kind} pairs: dense norm {float(dense.vector.norm()):.0f}"
        sas = None
        if sae is not None:
            sas = sas_vector(model, sae, pairs, residuals=residuals)
            sas.save(out_dir / "vectors" / f"{name}.sas.safetensors")
            n_pos, n_neg = int((sas.values > 0).sum()), int((sas.values < 0).sum())
            line += f"; SAS {len(sas)} of {sae.cfg.d_sae} latents ({n_pos} +, {n_neg} -)"
        vectors[name] = (sas, dense)
        print(line)
    return vectors, held_out


def _align_topic(model, sae):
    from sas_lens.topic.alignment import demo_topic_texts, topic_scores

    start = time.perf_counter()
    topic = topic_scores(model, sae, demo_topic_texts(DEMO_TOPIC), name=DEMO_TOPIC, summary=TOPIC_SUMMARY)
    print(
        f"\ntopic {DEMO_TOPIC!r}: latents scored against {topic.metadata['n_alignment_texts']} shipped "
        f"texts in {time.perf_counter() - start:.1f} s; most aligned, firing on >= {TOPIC_MIN_PROMPTS} "
        "reference prompts (latent, score): "
        + ", ".join(f"{latent} {score:.2f}" for latent, score in topic.top(5, TOPIC_MIN_PROMPTS))
    )
    return topic


def _matched_strength(model, sae, vector, target: float) -> float | None:
    """The λ at which ``vector`` moves the demo prompts' next-token distribution by ``target`` mean KL."""
    from sas_lens.errors import StrengthNotReachedError
    from sas_lens.steering.strength import strength_for_kl

    try:
        return strength_for_kl(model, vector, target, DEMO_PROMPTS, sae=sae, high=1024.0, rtol=0.1)
    except StrengthNotReachedError as err:  # a vector too weak to reach the target: say so, steer nothing
        print(f"  {err}")
        return None


def _judges() -> dict:
    """Each judged demo behaviour's judge: ``{behaviour: (label, texts → mean score)}``, reference texts read
    and embedded once."""
    from sas_lens.evaluation.judges import sentiment_scores
    from sas_lens.loading.embeddings import embed
    from sas_lens.loading.pairs import load_pairs
    from sas_lens.topic.alignment import demo_topic_texts
    from sas_lens.topic.evaluation import topic_centroid

    def mean_similarity(reference: list[str]):
        centroid = topic_centroid(reference)  # embedded once, not per run
        return lambda texts: float((embed(texts) @ centroid).mean())

    return {
        "sentiment": ("VADER sentiment", lambda texts: sum(sentiment_scores(texts)) / len(texts)),
        "topic-food": (
            "similarity to food texts",
            mean_similarity([pair.positive for pair in load_pairs("demo:topic-food")]),
        ),
        DEMO_TOPIC: (f"similarity to {DEMO_TOPIC} texts", mean_similarity(demo_topic_texts(DEMO_TOPIC))),
    }


def _show_continuations(model, sae, vectors: dict, topic, out_dir: Path, max_new_tokens: int) -> None:
    """Unsteered against steered continuations of the demo prompts (each vector at matched KL, the topic,
    both composed), with a judge's mean score where the behaviour has one."""
    from sas_lens.steering.generation import generate
    from sas_lens.steering.hf_backend import preferred_backend

    backend = preferred_backend(model)
    unsteered = generate(model, DEMO_PROMPTS, max_new_tokens=max_new_tokens, backend=backend)
    runs = []
    print(
        f"\nsteering at matched cost: each vector at the λ where the mean next-token KL on the demo prompts is "
        f"{STEER_KL:g}"
    )
    strengths = {}
    for name, (sas, dense) in vectors.items():
        for method, vector in (("SAS", sas), ("dense", dense)):
            lam = (
                None
                if vector is None or (method == "SAS" and not len(vector))
                else _matched_strength(model, sae, vector, STEER_KL)
            )
            if lam is not None:
                strengths[(name, method)] = lam
                runs.append((f"{name}, {method}, λ={lam:.3g}", {vector: lam}, name))
    if topic is not None:
        amplify = topic.vector(TOPIC_LATENTS, min_prompts=TOPIC_MIN_PROMPTS)
        runs.append(
            (
                f"topic {DEMO_TOPIC!r}, amplify {TOPIC_LATENTS} latents, strength {TOPIC_STRENGTH:g}",
                {amplify: TOPIC_STRENGTH},
                DEMO_TOPIC,
            )
        )
        sas, _ = vectors[COMPOSED]
        if (COMPOSED, "SAS") in strengths:
            lam = strengths[(COMPOSED, "SAS")]
            runs.append(
                (
                    f"{COMPOSED} SAS λ={lam:.3g} + topic {DEMO_TOPIC!r} strength {TOPIC_STRENGTH:g}, composed",
                    {sas: lam, amplify: TOPIC_STRENGTH},
                    COMPOSED,
                )
            )
    report = []
    judges = _judges()
    unsteered_scores = {behaviour: judge(unsteered) for behaviour, (_, judge) in judges.items()}
    for label, steering, behaviour in runs:
        steered = generate(
            model, DEMO_PROMPTS, steering=steering, sae=sae, max_new_tokens=max_new_tokens, backend=backend
        )
        score = ""
        if behaviour in judges:
            name, judge = judges[behaviour]
            score = f"  ({name}: {unsteered_scores[behaviour]:+.2f} unsteered, {judge(steered):+.2f} steered)"
        print(f"\n[{label}]{score}")
        for prompt, before, after in zip(DEMO_PROMPTS, unsteered, steered):
            print(f"  {prompt!r}\n     unsteered: {before!r}\n     steered:   {after!r}")
            report.append(f"[{label}]{score} {prompt}\n  - {before}\n  + {after}\n")
    (out_dir / "continuations.txt").write_text("\n".join(report))


def _lambda_sweep(model, sae, sas, dense, items):
    """p(behaviour-matching answer) on held-out items at :data:`SWEEP_MULTIPLES` of each vector's λ at KL 0.1."""
    import pandas as pd

    from sas_lens.evaluation.behaviour import ab_cell, mean_ci

    rows = []
    for method, vector in (("sas", sas), ("dense", dense)):
        if vector is None or (method == "sas" and not len(vector)):
            continue
        unit = _matched_strength(model, sae, vector, 0.1)
        if unit is None:
            continue
        for multiple in SWEEP_MULTIPLES:
            mean, low, high = mean_ci(ab_cell(model, items, method, vector, multiple * unit, sae=sae))
            rows.append(
                {
                    "method": method,
                    "lam": multiple,
                    "lam_value": multiple * unit,
                    "mean": mean,
                    "ci_low": low,
                    "ci_high": high,
                }
            )
    table = pd.DataFrame(rows)
    print(
        f"\nλ sweep on the {len(items)} held-out items of demo:{items.name} (p of the matching answer, mean; "
        "λ in multiples of each vector's λ at KL 0.1):"
    )
    print("  λ      " + "  ".join(f"{m:>6g}" for m in SWEEP_MULTIPLES))
    for method, group in table.groupby("method", sort=False):
        print(f"  {method:<6} " + "  ".join(f"{p:6.3f}" for p in group["mean"]))
    return table


def _write_report(model, sae, vectors: dict, out_dir: Path, corpus, index_tokens: int, sweeps: dict, topic) -> Path:
    """Print each SAS vector's top latents and write the HTML report; returns its path."""
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
            print(
                f"  {row['latent']:>6} {row['value']:+7.2f}  promotes {' '.join(row['promotes'])!r:<40} "
                f"e.g. {context[-70:]!r}"
            )
    if len(sparse) >= 2:
        from sas_lens.analysis.overlap import overlap_matrix

        matrix = overlap_matrix(sparse, sae=sae)
        print("\noverlap between SAS vectors (Jaccard of supports / weighted Jaccard):")
        for name in matrix.names:
            cells = "  ".join(
                f"{matrix.jaccard.loc[name, other]:.2f}/{matrix.weighted_jaccard.loc[name, other]:.2f}"
                for other in matrix.names
            )
            print(f"  {name:<11} {cells}")
    from sas_lens.loading.saes import hook_layer, load_sae, shipped_sae_per_width

    # one SAE per width, the one named after it ("4k", not "4k-6.4M"): widths at one token budget
    names = shipped_sae_per_width(hook_layer(sae.cfg.metadata.hook_name)).values()
    others = [
        s
        for s in (load_sae(name, model=model) for name in names)
        if sae_fingerprint(s) != sae_fingerprint(sae) and s.cfg.metadata.hook_name == sae.cfg.metadata.hook_name
    ]
    width_table = None
    if others and sparse:
        width_table = compare_widths(model, [sae, *others], sparse)
        print("\nmonosemanticity across widths (effective number of latents / support):")
        for behaviour, rows in width_table.groupby("behaviour"):
            cells = ", ".join(
                f"{int(r.d_sae)}: {r.effective_latents:.1f} / {int(r.support)}"
                for r in rows.sort_values("d_sae").itertuples()
            )
            print(f"  {behaviour:<11} {cells}")
    from sas_lens.analysis.figures import lambda_sweep_figure
    from sas_lens.analysis.report import Section, topic_section

    sections = [
        Section(
            f"λ sweep: demo:{name}, held-out items",
            f"<p>p(behaviour-matching answer) on the {HELD_OUT_AB_ITEMS} items the vectors were not "
            "built from, with 95% confidence bands.</p>",
            [
                lambda_sweep_figure(
                    table, title=f"demo:{name}: p(matching answer) across λ (multiples of each vector's λ at KL 0.1)"
                )
            ],
        )
        for name, table in sweeps.items()
        if len(table)
    ]
    if topic is not None:
        sections.append(topic_section([topic], model=model, sae=sae, index=index, min_prompts=TOPIC_MIN_PROMPTS))
    all_vectors = [v for pair in vectors.values() for v in pair if v is not None]
    return write_report(
        out_dir / "report.html",
        all_vectors,
        model=model,
        sae=sae,
        index=index,
        width_table=width_table,
        sections=sections,
        title="sas_lens demo report",
    )


def _demo_texts() -> list[str]:
    from sas_lens.loading.pairs import ABItem, demo_sets, load_pairs

    texts = []
    for name in demo_sets():
        for pair in load_pairs(f"demo:{name}"):
            if isinstance(pair, ABItem):
                texts.append(pair.question)
            else:
                texts.extend([pair.prompt + pair.positive, pair.prompt + pair.negative])
    return texts
