"""Topic alignment benchmark on the embedded model (issue 7), every figure measured in one run here.

    python bench/bench_topic.py [--texts 200] [--finetune-steps 30] [--out bench_topic_out]

For three topics (medicine: Wikipedia paragraphs about disease and treatment from the shared corpus;
sports and business: AG News test headlines+descriptions), with alignment texts drawn from
``../shared/datasets`` (written to text files under ``--out``, outside the project), this runs the
topic cells of ``sas-lens eval``: time to align (latent scoring; the reference activations are
dropped from the cache first, so the first topic pays for them and the others reuse them), then
continuations of neutral prompts scored for topic similarity and fluency for: unsteered, the original
method's swap, clamp and weight, amplify (ours) at several strengths, and the model fine-tuned on the
same texts (its wall time is the paper's fine-tuning cost). ``--summary`` picks how each reference
prompt is summarised (the original's ``avg`` by default). Per-token overhead: seconds per generated token
steered minus unsteered, same backend (transformers), same prompts.
"""

from __future__ import annotations

import argparse
import csv
import re
import shutil
from pathlib import Path

from sas_lens.evaluation.config import EvalConfig
from sas_lens.evaluation.results import topic_table
from sas_lens.evaluation.runner import run_evaluation
from sas_lens.loading.models import cache_dir

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"


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
    """Wikipedia paragraphs (the shared corpus, held-out file first) that use several medical words."""
    words = (
        "patient",
        "disease",
        "treatment",
        "symptom",
        "medical",
        "clinical",
        "infection",
        "diagnos",
        "therapy",
        "hospital",
        "physician",
        "drug",
    )
    texts = []
    for name in ("enwiki2015_AD.txt", "enwiki2015_AC.txt", "enwiki2015_AB.txt", "enwiki2015_AA.txt"):
        with open(SHARED / "corpus" / name, encoding="utf-8") as handle:
            for line in handle:
                line = line.strip()
                if 80 < len(line) < 600 and sum(w in line.lower() for w in words) >= 3:
                    texts.append(line)
                if len(texts) == n:
                    return texts
    return texts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--texts", type=int, default=200, help="alignment texts per topic")
    parser.add_argument("--prompts", type=int, default=12)
    parser.add_argument("--new-tokens", type=int, default=40)
    parser.add_argument("--finetune-steps", type=int, default=30)
    parser.add_argument("--strengths", type=float, nargs="+", default=[2.0, 4.0, 8.0])
    parser.add_argument("--summary", default="avg", choices=["avg", "max", "counts", "token_mean"])
    parser.add_argument("--out", default="bench_topic_out")
    args = parser.parse_args()
    out = Path(args.out)
    (out / "texts").mkdir(parents=True, exist_ok=True)
    topics = {
        "medicine": medicine_texts(args.texts),
        "sports": agnews_texts("2", args.texts),
        "business": agnews_texts("3", args.texts),
    }
    for name, texts in topics.items():
        (out / "texts" / f"{name}.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    shutil.rmtree(cache_dir() / "topic_references", ignore_errors=True)  # the first topic pays for them
    cfg = EvalConfig(
        behaviours=(),
        data_dir=str(SHARED / "caa"),
        saes={"9": None},
        topics={name: str(out / "texts" / f"{name}.txt") for name in topics},
        topic_strengths=tuple(args.strengths),
        topic_prompts=args.prompts,
        max_new_tokens=args.new_tokens,
        finetune_steps=args.finetune_steps,
        topic_summary=args.summary,
    )
    records = run_evaluation(cfg, out / "eval")
    table = topic_table(records)
    print(table.round(4).to_string(index=False))
    print(f"alignment texts per topic: {[len(t) for t in topics.values()]}; results in {out / 'eval'}")


if __name__ == "__main__":
    main()
