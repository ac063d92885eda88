"""Why SAS vectors move sentiment so little on the embedded default, measured with a judge no one here wrote.

Vectors from public movie-review sentences (``../shared/datasets/sentiment/rt-polarity``, the first
``--pairs`` of each polarity as completion pairs after a fixed prompt); steering of neutral prompts
written here (greedy continuations); VADER's compound score (PyPI ``vaderSentiment``) as the judge and
the unsteered model's perplexity of the continuations as the cost. Prints one row per (vector, λ) and
writes them as JSON.

    .venv/bin/python bench/bench_sentiment_sas.py --pairs 100 --out sentiment_sas.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "sentiment" / "rt-polarity"
PROMPT = "Review:"
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
]


def review_pairs(n: int):
    from sas_lens.loading.pairs import load_pairs

    positive = (SHARED / "rt-polarity.pos.txt").read_text(encoding="utf-8").splitlines()[:n]
    negative = (SHARED / "rt-polarity.neg.txt").read_text(encoding="utf-8").splitlines()[:n]
    return load_pairs([{"prompt": PROMPT, "positive": " " + p.strip(), "negative": " " + q.strip()}
                       for p, q in zip(positive, negative)], name="rt-polarity")


def _sas(**settings):
    def build(sl, model, sae, pairs, layer, residuals):
        read = "tokens" if settings.get("read") in ("tokens", "token_mean") else "mean"
        kwargs = {k: v for k, v in settings.items() if k != "read"}
        source = residuals[read]
        if settings.get("read") == "token_mean":
            from dataclasses import replace

            source = replace(source, read="token_mean")
        return sl.sas_vector(model, sae, pairs, residuals=source, **kwargs)

    return build


VARIANTS = {
    "dense": lambda sl, model, sae, pairs, layer, residuals: sl.dense_vector(model, pairs, layer=layer,
                                                                            residuals=residuals["mean"]),
    "sas paper (mean, tau 0.7)": _sas(tau=0.7),
    "sas tokens, tau 0.1": _sas(read="tokens", tau=0.1),
    "contrast mean top64 (mean read)": _sas(selection="contrast", top_k=64),
    "contrast mean top64 (tokens)": _sas(read="tokens", selection="contrast", top_k=64),
    "contrast mean top64 (token_mean)": _sas(read="token_mean", selection="contrast", top_k=64),
    "contrast mean top256 (mean read)": _sas(selection="contrast", top_k=256),
    "contrast active top64 (mean read)": _sas(selection="contrast", top_k=64, mean_over="active"),
    "contrast frequency top64 (tokens)": _sas(read="tokens", selection="contrast", top_k=64, rank_by="frequency"),
    "contrast mean top256 (tokens)": _sas(read="tokens", selection="contrast", top_k=256),
    "all latents' mean difference (tokens)": _sas(read="tokens", selection="contrast", top_k=1 << 20),
}


def matched_lams(model, sae, vector, target: float) -> list[float | None]:
    """The negative and positive λ at which ``vector`` moves the next-token distribution by ``target`` KL."""
    from sas_lens.steering.strength import strength_for_kl

    lams = []
    for sign in (-1.0, 1.0):
        try:
            lams.append(strength_for_kl(model, vector, target, NEUTRAL_PROMPTS, sae=sae, sign=sign, high=256.0))
        except ValueError as err:
            print(f"  {err}")
            lams.append(None)
    return lams


def judge(texts: list[str]) -> float:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer = SentimentIntensityAnalyzer()
    return statistics.mean(analyzer.polarity_scores(t)["compound"] for t in texts)


def measure(model, sae, steering: dict, max_new_tokens: int) -> dict:
    from sas_lens.steering.fluency import fluency
    from sas_lens.steering.generation import generate

    texts = generate(model, NEUTRAL_PROMPTS, steering=steering, sae=sae, max_new_tokens=max_new_tokens,
                     backend="hf", batch_size=len(NEUTRAL_PROMPTS))
    return {"sentiment": judge(texts), **fluency(model, NEUTRAL_PROMPTS, texts), "example": texts[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--lams", type=float, nargs="+", default=[-4.0, -2.0, -1.0, 1.0, 2.0, 4.0])
    parser.add_argument("--out", default="sentiment_sas.json")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--matched-kl", type=float, default=None,
                        help="instead of --lams, steer each vector at the ±λ where the mean next-token KL from the "
                             "unsteered model on the neutral prompts is this (nats)")
    args = parser.parse_args()

    import sas_lens as sl
    from sas_lens.steering.diagnostics import gated_share
    from sas_lens.steering.extraction import collect_residuals

    torch.set_grad_enabled(False)
    model = sl.load_model()
    sae = sl.load_sae(model=model)
    layer = sae.cfg.metadata.hook_name and int(sae.cfg.metadata.hook_name.split(".")[1])
    pairs = review_pairs(args.pairs)
    started = time.perf_counter()
    by_token = collect_residuals(model, pairs, layer, read="tokens")
    by_mean = collect_residuals(model, pairs, layer, read="mean")
    residuals = {"mean": by_mean, "tokens": by_token}
    vectors = {name: VARIANTS[name](sl, model, sae, pairs, layer, residuals) for name in args.variants}
    print(f"vectors built in {time.perf_counter() - started:.0f} s")
    for name, vector in vectors.items():
        if hasattr(vector, "diagnostics"):
            print(f"{name}: {vector.diagnostics.summary()}")
            print("  gated off on the neutral prompts (share of support × token edits that are exactly 0): "
                  + ", ".join(f"λ={lam:g}: {share:.2f}" for lam, share in gated_share(
                      model, sae, vector, args.lams, NEUTRAL_PROMPTS).items())
                  + "; share of the decoded size gated off: "
                  + ", ".join(f"λ={lam:g}: {share:.2f}" for lam, share in gated_share(
                      model, sae, vector, args.lams, NEUTRAL_PROMPTS, by="norm").items()))
    rows = [{"vector": "unsteered", "lam": 0.0, "size": 0, **measure(model, sae, {}, args.max_new_tokens)}]
    print(rows[-1])
    for name, vector in vectors.items():
        size = len(vector) if hasattr(vector, "indices") else int(vector.vector.numel())
        if size == 0:
            continue
        for lam in matched_lams(model, sae, vector, args.matched_kl) if args.matched_kl else args.lams:
            if lam is None:
                rows.append({"vector": name, "lam": None, "size": size, "note": "KL target not reached"})
            else:
                rows.append({"vector": name, "lam": lam, "size": size,
                             **measure(model, sae, {vector: lam}, args.max_new_tokens)})
            print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in rows[-1].items()})
    Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
