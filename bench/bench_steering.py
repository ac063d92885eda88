"""Steering benchmark on the embedded model (issue 4), ratios measured in one run on this machine.

    python bench/bench_steering.py [--new-tokens 64] [--prompts 8] [--rounds 3]

Greedy generation of 8 prompts x 64 new tokens, tokens/s for: unsteered, SAS (one vector), SAS (four
vectors composed), dense — per backend (TransformerLens, transformers). Then the time to build an SAS
vector from 200 CAA pairs against the forward passes it needs, run alone.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

import sas_lens as sl
from sas_lens.loading.prompts import PromptStyle, tokenize_with_spans
from sas_lens.steering.extraction import pair_texts

PROMPTS = [
    "I thought the film was",
    "The weather this weekend",
    "My new job is",
    "The restaurant on the corner",
    "Yesterday the team",
    "Honestly, the book",
    "The best thing about the city is",
    "Our holiday was",
]


def tokens_per_second(model, prompts, new_tokens, backend, steering=None, sae=None) -> float:
    # Every row generates exactly new_tokens tokens, so that all settings do the same work.
    no_early_stop = {"min_new_tokens": new_tokens} if backend == "hf" else {"stop_at_eos": False}
    start = time.perf_counter()
    sl.generate(
        model,
        prompts,
        steering=steering,
        sae=sae,
        max_new_tokens=new_tokens,
        backend=backend,
        batch_size=len(prompts),
        **no_early_stop,
    )
    return len(prompts) * new_tokens / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the median is reported")
    parser.add_argument("--skip-extraction", action="store_true", help="generation speeds only")
    args = parser.parse_args()
    prompts = PROMPTS[: args.prompts]
    model = sl.load_model()
    sae = sl.load_sae(model=model)
    vectors = [
        sl.sas_vector(model, sae, sl.load_pairs(f"demo:{name}"), tau=0.7)
        for name in ("sentiment", "formality", "topic-food", "caution")
    ]
    dense = sl.dense_vector(model, sl.load_pairs("demo:sentiment"), layer=vectors[0].layer)
    settings = {
        "unsteered": None,
        "SAS x1": {vectors[0]: 4.0},
        "SAS x4": {v: 2.0 for v in vectors},
        "dense": {dense: 4.0},
    }
    # Settings are interleaved within each round and the median over rounds is kept, so that a
    # burst of CPU steal on this shared VM hits one measurement, not one setting.
    runs: dict = {}
    for backend in ("hf", "tl"):
        sl.generate(model, prompts[:1], max_new_tokens=2, backend=backend)  # warm-up
    for round_ in range(args.rounds):
        for backend in ("hf", "tl"):
            for label, steering in settings.items():
                speed = tokens_per_second(model, prompts, args.new_tokens, backend, steering, sae)
                runs.setdefault((backend, label), []).append(speed)
                print(f"round {round_ + 1}: {backend:>2} {label:<10} {speed:7.1f} tokens/s", flush=True)
    results = {key: statistics.median(speeds) for key, speeds in runs.items()}
    for (backend, label), speed in results.items():
        print(f"median: {backend:>2} {label:<10} {speed:7.1f} tokens/s")
    for backend in ("hf", "tl"):
        base = results[(backend, "unsteered")]
        print(
            f"{backend}: SAS x1 / unsteered = {results[(backend, 'SAS x1')] / base:.3f}, "
            f"SAS x4 / unsteered = {results[(backend, 'SAS x4')] / base:.3f}, "
            f"dense / unsteered = {results[(backend, 'dense')] / base:.3f}"
        )
    print(f"hf / tl, SAS x1 steered: {results[('hf', 'SAS x1')] / results[('tl', 'SAS x1')]:.2f}x")
    print(json.dumps({f"{backend}/{label}": round(v, 2) for (backend, label), v in results.items()}))

    if args.skip_extraction:
        return
    caa = Path(__file__).resolve().parents[2] / "shared/datasets/caa/generate/sycophancy/generate_dataset.json"
    if not caa.exists():
        print(f"skipping the extraction benchmark: {caa} is not on this machine")
        return
    pairs = sl.load_pairs(caa, limit=200)
    layer = vectors[0].layer
    forward_s = plain_forwards_seconds(model, pairs, layer)
    start = time.perf_counter()
    sl.sas_vector(model, sae, pairs)
    vector_s = time.perf_counter() - start
    print(
        f"SAS vector from {len(pairs)} pairs: {vector_s:.1f} s; the same forward passes alone: {forward_s:.1f} s "
        f"({vector_s / forward_s:.2f}x)"
    )


def plain_forwards_seconds(model, pairs, layer: int, batch_size: int = 8) -> float:
    """The forward passes extraction needs, alone: same texts, batches and stopping layer, tokenised beforehand."""
    texts, spans = pair_texts(pairs, PromptStyle(), model.tokenizer)
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    batches = []
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        tokens, attention, _ = tokenize_with_spans(
            model.tokenizer, [texts[i] for i in index], [spans[i] for i in index]
        )
        batches.append((tokens, attention))
    started = time.perf_counter()
    for tokens, attention in batches:
        model(tokens, attention_mask=attention, stop_at_layer=layer + 1)
    return time.perf_counter() - started


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
