"""Topic alignment benchmark on the embedded model (issue 7), every figure measured in one run here.

    python bench/bench_topic.py [--prompts 12] [--new-tokens 40] [--finetune-steps 60] [--out bench_topic.json]

For three topics (medicine: Wikipedia paragraphs about disease and treatment from the shared corpus;
sports and business: AG News test headlines+descriptions), with alignment texts drawn from
``../shared/datasets``: time to align (latent scoring, with the reference activations cold and cached),
then generations from neutral prompts, scored for topic similarity (mean cosine of the generation's
embedding to the alignment texts' centroid) and fluency (perplexity under the unsteered model, distinct-2),
for: unsteered, swap (the original method), amplify at several strengths, and a full fine-tune of the model
on the same texts (its wall time is the paper's "fine-tuning" cost). Per-token overhead: seconds per generated
token steered minus unsteered, same backend (transformers), same prompts.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import math
import re
import time
from pathlib import Path

import torch

import sas_lens as sl
from sas_lens.capability import text_perplexity
from sas_lens.embeddings import embed
from sas_lens.hf_backend import hf_model_for
from sas_lens.open_ended import distinct_n
from sas_lens.topic_alignment import topic_scores

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
PROMPTS = [
    "Yesterday I heard that", "The most interesting thing about this week is", "Let me tell you about",
    "Here is what happened:", "In the news today,", "My friend asked me about", "It all started when",
    "Everyone is talking about", "The report says that", "I have been thinking about", "Last year,",
    "According to experts,",
]


def agnews_texts(label: str, n: int) -> list[str]:
    """AG News test items of one class (1 World, 2 Sports, 3 Business, 4 Sci/Tech): title + description."""
    texts = []
    with open(SHARED / "agnews" / "test.csv", newline="", encoding="utf-8") as handle:
        for row in csv.reader(handle):
            if row[0] == label:
                texts.append(re.sub(r"\s+", " ", f"{row[1]}. {row[2]}").replace("\\", " ").strip())
            if len(texts) == n:
                break
    return texts


def medicine_texts(n: int) -> list[str]:
    """Wikipedia paragraphs (held-out file) that use several medical words."""
    words = ("patients", "disease", "treatment", "symptoms", "medical", "clinical", "infection", "diagnosis")
    texts = []
    with open(SHARED / "corpus" / "enwiki2015_AD.txt", encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if 80 < len(line) < 600 and sum(w in line.lower() for w in words) >= 3:
                texts.append(line)
            if len(texts) == n:
                break
    return texts


def score(model, texts: list[str], prompts: list[str], centroid: torch.Tensor) -> dict:
    similarity = embed(texts) @ centroid
    perplexities = [text_perplexity(model, p, t) for p, t in zip(prompts, texts)]
    finite = [x for x in perplexities if math.isfinite(x)]
    return {"topic_similarity": float(similarity.mean()),
            "perplexity_median": float(torch.tensor(finite).median()) if finite else None,
            "distinct_2": sum(distinct_n(t, 2) for t in texts) / len(texts), "example": texts[0][:160]}


def timed_generate(model, prompts, new_tokens, **kwargs) -> tuple[list[str], float]:
    start = time.perf_counter()
    texts = sl.generate(model, prompts, max_new_tokens=new_tokens, backend="hf", batch_size=len(prompts),
                        min_new_tokens=new_tokens, **kwargs)
    return texts, (time.perf_counter() - start) / (len(prompts) * new_tokens)


def finetune(model, texts: list[str], steps: int, lr: float = 2e-5) -> tuple[object, float]:
    """Full fine-tune of a copy of the transformers twin on ``texts`` (causal LM loss); returns it and its seconds."""
    hf = copy.deepcopy(hf_model_for(model)).train()
    tokenizer = model.tokenizer
    optimiser = torch.optim.AdamW(hf.parameters(), lr=lr)
    start = time.perf_counter()
    for step in range(steps):
        batch = [texts[(step * 4 + i) % len(texts)] for i in range(4)]
        enc = tokenizer(batch, return_tensors="pt", padding=True, truncation=True, max_length=96)
        labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
        loss = hf(**enc, labels=labels).loss
        loss.backward()
        optimiser.step()
        optimiser.zero_grad()
    return hf.eval(), time.perf_counter() - start


@torch.no_grad()
def finetuned_generate(model, hf, prompts, new_tokens) -> list[str]:
    tokenizer = model.tokenizer
    tokenizer.padding_side = "left"
    enc = tokenizer(prompts, return_tensors="pt", padding=True)
    out = hf.generate(**enc, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
    return tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=12)
    parser.add_argument("--new-tokens", type=int, default=40)
    parser.add_argument("--texts", type=int, default=200, help="alignment texts per topic")
    parser.add_argument("--finetune-steps", type=int, default=60)
    parser.add_argument("--strengths", type=float, nargs="+", default=[2.0, 4.0, 8.0])
    parser.add_argument("--out", default="bench_topic.json")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    model = sl.load_model()
    sae = sl.load_sae(model=model)
    prompts = PROMPTS[: args.prompts]
    topics = {"medicine": medicine_texts(args.texts), "sports": agnews_texts("2", args.texts),
              "business": agnews_texts("3", args.texts)}
    plain, plain_s = timed_generate(model, prompts, args.new_tokens)
    results = {"machine": "2-core CPU VM, no GPU", "prompts": len(prompts), "new_tokens": args.new_tokens,
               "unsteered_s_per_token": plain_s, "topics": {}}
    for name, texts in topics.items():
        row: dict = {"n_alignment_texts": len(texts)}
        centroid = torch.nn.functional.normalize(embed(texts).mean(0), dim=0)
        start = time.perf_counter()
        alignment = topic_scores(model, sae, texts, name=name)
        row["align_s"] = time.perf_counter() - start  # reference activations cached after the first topic
        row["top_latents"] = alignment.top(5)
        row["unsteered"] = score(model, plain, prompts, centroid)
        swapped, swap_s = timed_generate(model, prompts, args.new_tokens, steering={alignment.swap(32): 1.0}, sae=sae)
        row["swap k=32"] = {**score(model, swapped, prompts, centroid), "overhead_s_per_token": swap_s - plain_s}
        vector = alignment.vector(64)
        for strength in args.strengths:
            texts_out, s = timed_generate(model, prompts, args.new_tokens, steering={vector: strength}, sae=sae)
            row[f"amplify x{strength:g}"] = {**score(model, texts_out, prompts, centroid),
                                             "overhead_s_per_token": s - plain_s}
        with torch.enable_grad():
            tuned, tune_s = finetune(model, texts, args.finetune_steps)
        row["finetune"] = {**score(model, finetuned_generate(model, tuned, prompts, args.new_tokens), prompts, centroid),
                           "finetune_s": tune_s, "steps": args.finetune_steps}
        del tuned
        results["topics"][name] = row
        print(json.dumps({name: row}, indent=1, default=str), flush=True)
    Path(args.out).write_text(json.dumps(results, indent=1, default=str))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
