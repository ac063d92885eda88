"""Layer-9 SAEs at 4x and ~10x the shipped SAEs' tokens (issue 26): one resumable job, stage by stage.

Stages, each skipped once its output is complete, so the job can be killed at any point and rerun with
the same command: (1) the activation pass over ``enwiki2015_AA..AC`` grown to the tokens the next SAE needs
(``build_activation_cache`` appends whole batches and resumes where the last one ended); (2) each SAE's
training (``train_sae`` checkpoints ten times per run and resumes from the latest); (3) its held-out
evaluation on ``enwiki2015_AD`` (``eval.json``). Every SAE trained on N tokens reads the first N rows of
the one cache, so the 6.4M-token SAEs' tokens are the first 6.4M of the ~15M-token ones', and the shipped
1.6M-token SAEs' are the first 1.6M of both. ``progress.jsonl`` logs each stage's wall time and tokens/s.

    HF_HUB_OFFLINE=1 nohup .venv/bin/python bench/scale_saes.py --work ~/sae_scale > ~/sae_scale/log.txt 2>&1 &

On a GPU machine (the whole job in one run; not yet run there: none was lent to this issue):

    HF_HUB_OFFLINE=1 .venv/bin/python bench/scale_saes.py --work sae_scale --device cuda --pass-batch 256
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "corpus"
TRAIN_FILES = [CORPUS / f"enwiki2015_{part}.txt" for part in ("AA", "AB", "AC")]
HELD_OUT = [CORPUS / "enwiki2015_AD.txt"]
LAYER = 9
ALL_TOKENS = 16_000_000  # more than AA..AC hold: "all" means the whole of it, cut to whole batches
# (width, tokens) in the order they run: the cheapest answer to "do more tokens help?" first.
RUNS = [(4096, 6_400_000), (16384, 6_400_000), (4096, ALL_TOKENS), (16384, ALL_TOKENS)]


def log(work: Path, **record) -> None:
    record["time"] = time.strftime("%Y-%m-%d %H:%M:%S")
    print(json.dumps(record), flush=True)
    with open(work / "progress.jsonl", "a") as handle:
        handle.write(json.dumps(record) + "\n")


def grow_cache(model, cache_dir: Path, n_tokens: int, work: Path, batch_size: int) -> int:
    """Grow the training cache to ``n_tokens`` rows (or all the text has); its row count."""
    from sas_lens.sae_training.activation_cache import ActivationCache, build_activation_cache

    before = ActivationCache(cache_dir).n_rows if (cache_dir / "meta.json").exists() else 0
    started = time.perf_counter()
    cache = build_activation_cache(
        model, f"blocks.{LAYER}.hook_resid_post", TRAIN_FILES, cache_dir, n_tokens, batch_size=batch_size
    )
    seconds = time.perf_counter() - started
    if cache.n_rows > before:
        log(
            work,
            stage="activation pass",
            rows_before=before,
            rows=cache.n_rows,
            seconds=round(seconds, 1),
            tokens_per_s=round((cache.n_rows - before) / seconds, 1),
        )
    return cache.n_rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path.home() / "sae_scale")
    parser.add_argument("--only-cache", action="store_true", help="stop after the activation pass")
    parser.add_argument("--device", default="cpu", help="where the model runs and the SAEs train: cpu, cuda")
    parser.add_argument("--pass-batch", type=int, default=16, help="sequences per forward of the activation pass")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)

    import sas_lens as sl
    from sas_lens.sae_training.evaluate import evaluate_sae
    from sas_lens.sae_training.train import SAETrainingConfig, train_sae

    model = sl.load_model(device=args.device)
    cache_dir = args.work / "activations" / f"l{LAYER}"
    for d_sae, wanted in RUNS:
        available = grow_cache(model, cache_dir, wanted, args.work, args.pass_batch)
        if args.only_cache:
            continue
        cfg = SAETrainingConfig(
            layer=LAYER, d_sae=d_sae, k=64, n_tokens=min(wanted, available) // 4096 * 4096, device=args.device
        )
        out = args.work / f"l{LAYER}-{d_sae // 1024}k-{cfg.n_tokens / 1e6:.1f}M"
        if not (out / "training.json").exists():
            started = time.perf_counter()
            train_sae(cfg, out_dir=out, model=model, cache_dir=cache_dir)
            training = json.loads((out / "training.json").read_text())
            log(
                work=args.work,
                stage="training",
                sae=out.name,
                seconds_this_run=round(time.perf_counter() - started, 1),
                tokens_per_s=training["training_tokens_per_s"],
            )
        if not (out / "eval.json").exists():
            sae = sl.load_sae(out, model=model)
            figures = evaluate_sae(
                model, sae, HELD_OUT, cache_dir=args.work / "activations" / "heldout", out_json=out / "eval.json"
            )  # written atomically
            log(
                args.work,
                stage="evaluation",
                sae=out.name,
                **{
                    k: figures[k]
                    for k in ("explained_variance", "ce_loss_recovered", "mean_l0", "dead_fraction", "dense_fraction")
                },
            )


if __name__ == "__main__":
    main()
