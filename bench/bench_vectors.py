"""SAS variants, dense CAA and prompting on the embedded default, at matched cost, judged by scorers no one here wrote.

Behaviours (vectors from public data in ``../shared/datasets``, the first ``--pairs`` of each side as
completion pairs after a fixed prompt):

- ``sentiment``: rt-polarity positive vs negative review sentences; judge: VADER's compound score
  (PyPI ``vaderSentiment``), mean over the continuations;
- ``sports``, ``scitech``: AG News articles of that class vs the other classes; judge: cosine of the
  continuation's all-MiniLM-L6-v2 embedding to the mean embedding of held-out articles of that class
  (rows after the first 1,000 of each class), mean over the continuations.

Each vector steers 32 neutral prompts written here (greedy, ``--max-new-tokens``). Matched cost: for each
vector and sign, λ₁ is the strength at which the mean next-token KL from the unsteered model on those
prompts is 0.1 nats; the vector is steered at 1, 2, 3, … × λ₁ until the continuations' median perplexity
under the unsteered model passes ``--budget`` × the unsteered one. The summary row of a vector and sign is
its largest judge shift within the budget. Prompting steers with a sentence put before each prompt
(perplexity still of the continuation given the bare prompt).

    .venv/bin/python bench/bench_vectors.py sentiment --out bench_sentiment.json
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import time
from pathlib import Path

import torch

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets"
NEUTRAL_PROMPTS = [
    "I went to the cinema last night and the film was",
    "The new restaurant on the corner is",
    "My week at the office has been",
    "The book I finished yesterday was",
    "Our trip to the coast turned out to be",
    "The concert on Saturday was",
    "This phone I bought last month is",
    "The weather this weekend was",
    "The meeting this morning was",
    "The hotel we stayed in was",
    "The new album by the band is",
    "Dinner at my parents' house was",
    "The game last night was",
    "My first day at the new school was",
    "The museum exhibition was",
    "The train ride home was",
    "Yesterday I met an old friend and",
    "The news this morning said that",
    "When I opened the letter, I",
    "The report on my desk describes",
    "Last summer our family decided to",
    "The best thing about this town is",
    "My neighbour told me that",
    "The lecture this afternoon was about",
    "I have been thinking a lot about",
    "The package that arrived today",
    "Here is what happened at work:",
    "The article I read online argued that",
    "Walking through the park, I noticed",
    "The documentary we watched was",
    "Our team spent the whole day",
    "The town council announced that",
]
AGNEWS_CLASSES = {"world": "1", "sports": "2", "business": "3", "scitech": "4"}


# ---------------------------------------------------------------- behaviours: pairs, judge, prompting prefixes
def rt_polarity(side: str) -> list[str]:
    """The rt-polarity sentences of one side, ``"pos"`` or ``"neg"``, in file order."""
    return (DATA / "sentiment" / "rt-polarity" / f"rt-polarity.{side}.txt").read_text(encoding="utf-8").splitlines()


def agnews_rows() -> list[tuple[str, str]]:
    """(class label, "title. description") for every AG News test article; its backslash line marks blanked."""
    with (DATA / "agnews" / "test.csv").open(encoding="utf-8", newline="") as handle:
        return [(label, f"{title}. {body}".replace("\\", " ")) for label, title, body in csv.reader(handle)]


def sentiment_behaviour(n: int):
    from sas_lens.loading.pairs import load_pairs

    positive = rt_polarity("pos")[:n]
    negative = rt_polarity("neg")[:n]
    pairs = load_pairs(
        [
            {"prompt": "Review:", "positive": " " + p.strip(), "negative": " " + q.strip()}
            for p, q in zip(positive, negative)
        ],
        name="rt-polarity",
    )

    def judge(texts: list[str]) -> float:
        from sas_lens.evaluation.judges import sentiment_scores

        return statistics.mean(sentiment_scores(texts))

    prefixes = {
        +1: "I loved it, it was wonderful and made me so happy. ",
        -1: "I hated it, it was awful and made me so sad. ",
    }
    return pairs, judge, prefixes


def topic_behaviour(topic: str, n: int):
    from sas_lens.loading.embeddings import embed
    from sas_lens.loading.pairs import load_pairs
    from sas_lens.topic.evaluation import topic_centroid

    rows = agnews_rows()
    label = AGNEWS_CLASSES[topic]
    on = [text for lab, text in rows if lab == label]
    off = [text for lab, text in rows if lab != label]
    pairs = load_pairs(
        [{"prompt": "News:", "positive": " " + p[:300], "negative": " " + q[:300]} for p, q in zip(on[:n], off[:n])],
        name=f"agnews-{topic}",
    )
    centroid = topic_centroid(on[1000:1400])  # held out from the pairs

    def judge(texts: list[str]) -> float:
        return float((embed(texts) @ centroid).mean())

    noun = {"sports": "sports", "scitech": "science and technology"}[topic]
    prefixes = {+1: f"This is a story about {noun}. ", -1: f"This story has nothing to do with {noun}. "}
    return pairs, judge, prefixes


# ---------------------------------------------------------------- the vectors compared
VARIANTS = [
    "dense (CAA)",
    "paper (mean read, tau 0.7)",
    "paper (tokens read, tau 0.1)",
    "contrast top8 (mean read)",
    "contrast top16 (mean read)",
    "contrast top64 (mean read)",
    "contrast top16 (tokens read)",
    "contrast top16 (mean read, sae gate)",
    "decompose top16",
    "decompose top32",
]


def variants(sl, model, sae, pairs, residuals, names):
    layer = int(sae.cfg.metadata.hook_name.split(".")[1])

    def sas(read, **settings):
        return lambda: sl.sas_vector(model, sae, pairs, residuals=residuals[read], **settings)

    table = {
        "dense (CAA)": lambda: sl.dense_vector(model, pairs, layer=layer, residuals=residuals["mean"]),
        "paper (mean read, tau 0.7)": sas("mean", selection="paper", tau=0.7),
        "paper (tokens read, tau 0.1)": sas("tokens", selection="paper", tau=0.1),
        "contrast top8 (mean read)": sas("mean", selection="contrast", top_k=8),
        "contrast top16 (mean read)": sas("mean", selection="contrast", top_k=16),
        "contrast top64 (mean read)": sas("mean", selection="contrast", top_k=64),
        "contrast top16 (tokens read)": sas("tokens", selection="contrast", top_k=16),
        "contrast top16 (token_mean read)": sas("token_mean", selection="contrast", top_k=16),
        "contrast top16 (mean read, sae gate)": sas("mean", selection="contrast", top_k=16, gate="sae"),
        "decompose top16": sas("mean", selection="decompose", top_k=16),
        "decompose top32": sas("mean", selection="decompose", top_k=32),
        "decompose top64": sas("mean", selection="decompose", top_k=64),
    }
    return {name: table[name]() for name in names}


# ---------------------------------------------------------------- measuring
def measure(model, sae, judge, steering: dict, max_new_tokens: int, prompts=None, positions: str = "all") -> dict:
    from sas_lens.steering.fluency import fluency
    from sas_lens.steering.generation import generate

    texts = generate(
        model,
        prompts or NEUTRAL_PROMPTS,
        steering=steering,
        sae=sae,
        max_new_tokens=max_new_tokens,
        backend="hf",
        batch_size=len(NEUTRAL_PROMPTS),
        positions=positions,
    )
    return {"judge": judge(texts), **fluency(model, NEUTRAL_PROMPTS, texts), "example": texts[0]}


def sweep(model, sae, judge, vector, sign: int, base: dict, args) -> list[dict]:
    """Rows at 1, 2, 3, … × the λ of KL 0.1, until the perplexity budget is passed."""
    from sas_lens.steering.strength import strength_for_kl

    try:
        unit = strength_for_kl(model, vector, 0.1, NEUTRAL_PROMPTS, sae=sae, sign=sign, high=512.0, rtol=0.1)
    except ValueError as err:
        return [{"sign": sign, "note": str(err)}]
    rows = []
    for multiple in range(1, args.max_multiple + 1):
        row = {
            "sign": sign,
            "multiple": multiple,
            "lam": unit * multiple,
            **measure(model, sae, judge, {vector: unit * multiple}, args.max_new_tokens, positions=args.positions),
        }
        row["shift"] = row["judge"] - base["judge"]
        rows.append(row)
        print("   ", {k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
        if row["perplexity"] is None or row["perplexity"] > args.budget * base["perplexity"]:
            break
    return rows


def best_within_budget(rows: list[dict], sign: int, base: dict, budget: float) -> dict | None:
    fine = [r for r in rows if r.get("perplexity") is not None and r["perplexity"] <= budget * base["perplexity"]]
    return max(fine, key=lambda r: sign * r["shift"], default=None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("behaviour", choices=["sentiment", "sports", "scitech"])
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--budget", type=float, default=1.5, help="perplexity budget, × unsteered")
    parser.add_argument("--max-multiple", type=int, default=4)
    parser.add_argument("--variants", nargs="+", default=None)
    parser.add_argument(
        "--positions",
        default="all",
        choices=["all", "generated", "prompt"],
        help="where steering acts during generation (the λ unit is still the KL on every prompt token)",
    )
    parser.add_argument("--skip-prompting", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    import sas_lens as sl
    from sas_lens.steering.extraction import collect_residuals

    torch.set_grad_enabled(False)
    started = time.perf_counter()
    model = sl.load_model()
    sae = sl.load_sae(model=model)
    layer = int(sae.cfg.metadata.hook_name.split(".")[1])
    pairs, judge, prefixes = (
        sentiment_behaviour(args.pairs)
        if args.behaviour == "sentiment"
        else topic_behaviour(args.behaviour, args.pairs)
    )
    residuals = {read: collect_residuals(model, pairs, layer, read=read) for read in ("mean", "tokens", "token_mean")}
    vectors = variants(sl, model, sae, pairs, residuals, args.variants or VARIANTS)
    base = measure(model, sae, judge, {}, args.max_new_tokens)
    print("unsteered", base, flush=True)
    result = {
        "behaviour": args.behaviour,
        "positions": args.positions,
        "pairs": len(pairs),
        "prompts": len(NEUTRAL_PROMPTS),
        "budget": args.budget,
        "unsteered": base,
        "vectors": {},
    }
    for sign, prefix in ({} if args.skip_prompting else prefixes).items():
        row = measure(model, sae, judge, {}, args.max_new_tokens, prompts=[prefix + p for p in NEUTRAL_PROMPTS])
        row["shift"] = row["judge"] - base["judge"]
        result["vectors"].setdefault("prompting", {"size": None, "rows": []})["rows"].append({"sign": sign, **row})
        print("prompting", sign, {k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()})
    for name, vector in vectors.items():
        size = len(vector) if hasattr(vector, "indices") else None
        print(
            f"{name}: {size if size is not None else 'dense'} latents; "
            + (vector.diagnostics.summary() if getattr(vector, "diagnostics", None) is not None else ""),
            flush=True,
        )
        entry = result["vectors"][name] = {"size": size, "rows": []}
        if size == 0:
            continue
        for sign in (+1, -1):
            entry["rows"] += sweep(model, sae, judge, vector, sign, base, args)
    print(
        f"\nmatched cost (perplexity ≤ {args.budget} × {base['perplexity']:.2f}); judge unsteered {base['judge']:.3f}"
    )
    for name, entry in result["vectors"].items():
        cells = []
        for sign in (+1, -1):
            best = best_within_budget(entry["rows"], sign, base, args.budget)
            entry[f"best_{'+' if sign > 0 else '-'}"] = best
            cells.append("—" if best is None else f"{best['shift']:+.3f} (ppl {best['perplexity']:.2f})")
        print(f"  {name:40s} size {entry['size']!s:>5}   + {cells[0]:22s}  − {cells[1]}")
    result["seconds"] = time.perf_counter() - started
    Path(args.out or f"bench_{args.behaviour}.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
