"""How well an SAE's latents read (issue 26): top-context coherence and common-token logit lenses.

For each SAE, a latent index of held-out Wikipedia (``enwiki2015_AD``, the first ``--index-tokens`` tokens,
the same text for every SAE) gives every latent's strongest contexts. ``--latents`` latents are drawn at
random (seeded) among those with at least ``--contexts`` indexed contexts, and for each:

- **coherence**: the mean pairwise cosine of the all-MiniLM-L6-v2 embeddings of its ``--contexts`` strongest
  context windows (12 tokens before the peak, the peak, 4 after), at most one per 64-token sequence so that
  neighbouring positions of one passage do not count as agreement, less the same figure for as many windows
  at random positions of the same text (a fresh draw per latent). The difference reads as "more alike than
  text at random", not as a calibrated score;
- **common tokens**: of the 5 tokens its decoder row promotes most (``logit_lens``, final norm applied, whole
  vocabulary), the share that occur at least 3 times in the indexed text.

One JSON line per SAE is appended to ``--out`` (finished SAEs are skipped); ``--table`` prints the table.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_sae_readability.py 4k 16k ~/sae_scale/l9-4k-6.4M \\
        --out ~/sae_readability/results.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_sae_domains import read_rows  # noqa: E402
from bench_vectors import DATA  # noqa: E402

BEFORE, AFTER = 12, 4


def mean_pairwise_cosine(embeddings) -> float:
    """Mean cosine over distinct pairs of (already normalised) embeddings."""
    n = embeddings.shape[0]
    similarity = embeddings @ embeddings.T
    return float((similarity.sum() - similarity.diagonal().sum()) / (n * (n - 1)))


def window(tokenizer, sequence: list[int], pos: int) -> str:
    return tokenizer.decode(sequence[max(1, pos - BEFORE) : pos + 1 + AFTER])


def one_per_sequence(index, latent: int, context_size: int) -> list[tuple[int, int]]:
    """``(sequence, position)`` of the latent's indexed contexts, strongest first, the first of each sequence."""
    places, seen = [], set()
    for flat in index.positions[latent].tolist():
        if flat < 0:
            break
        row, pos = divmod(flat, context_size)
        if row not in seen:
            seen.add(row)
            places.append((row, pos))
    return places


def readability(model, sae, index, n_latents: int, n_contexts: int, seed: int) -> dict:
    import torch

    from sas_lens.analysis.attribution import logit_lens
    from sas_lens.loading.embeddings import embed

    generator = torch.Generator().manual_seed(seed)
    n_seq, context_size = index.tokens.shape
    strongest = {latent: one_per_sequence(index, latent, context_size)[:n_contexts] for latent in range(sae.cfg.d_sae)}
    eligible = [latent for latent, places in strongest.items() if len(places) == n_contexts]
    if len(eligible) < n_latents:
        raise ValueError(f"only {len(eligible)} latents have {n_contexts} contexts in distinct sequences; index more.")
    latents = [eligible[i] for i in torch.randperm(len(eligible), generator=generator)[:n_latents].tolist()]
    tokens = index.tokens.tolist()
    coherence, baseline = [], []
    for latent in latents:
        windows = [window(model.tokenizer, tokens[row], pos) for row, pos in strongest[latent]]
        rows = torch.randint(n_seq, (n_contexts,), generator=generator).tolist()
        positions = torch.randint(1, context_size, (n_contexts,), generator=generator).tolist()
        random_windows = [window(model.tokenizer, tokens[r], p) for r, p in zip(rows, positions)]
        coherence.append(mean_pairwise_cosine(embed(windows)))
        baseline.append(mean_pairwise_cosine(embed(random_windows)))
    common = set(index.common_tokens(3).tolist())
    vocabulary_ids = model.tokenizer.convert_tokens_to_ids
    lens = logit_lens(sae, model, latents, 5)
    common_share = [sum(i in common for i in vocabulary_ids(promoted)) / 5 for promoted, _ in lens]
    coherence_t, baseline_t = torch.tensor(coherence), torch.tensor(baseline)
    difference = coherence_t - baseline_t
    return {
        "latents": latents,
        "coherence": float(coherence_t.mean()),
        "random_windows": float(baseline_t.mean()),
        "coherence_minus_random": float(difference.mean()),
        "coherence_minus_random_se": float(difference.std() / len(latents) ** 0.5),
        "common_token_share": sum(common_share) / len(common_share),
        "latents_mostly_common": sum(share >= 0.6 for share in common_share) / len(common_share),
        "firing_latents": int((index.fire_counts > 0).sum()),
        "eligible_latents": len(eligible),
        "d_sae": int(sae.cfg.d_sae),
        "index_tokens": int(index.n_tokens),
    }


def run(args) -> None:
    import torch

    import sas_lens as sl

    torch.set_grad_enabled(False)
    out = Path(args.out).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    done = {r["sae"] for r in read_rows(out)}
    model = sl.load_model()
    corpus = DATA / "corpus" / "enwiki2015_AD.txt"
    for name in args.saes:
        if name in done:
            continue
        sae = sl.load_sae(name, model=model)  # a shipped name or a folder
        index = sl.latent_index(model, sae, corpus, n_tokens=args.index_tokens)
        row = {"sae": name, **readability(model, sae, index, args.latents, args.contexts, args.seed)}
        with out.open("a") as handle:
            handle.write(json.dumps(row) + "\n")
        print({k: v for k, v in row.items() if k != "latents"}, flush=True)


def table(path: Path) -> str:
    lines = [
        "| SAE | firing latents | top-10 coherence | random windows | difference (± SE) | common-token share "
        "| latents ≥ 3/5 common |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in read_rows(path):
        lines.append(
            f"| `{Path(r['sae']).name}` | {r['firing_latents']:,} / {r['d_sae']:,} | {r['coherence']:.3f} "
            f"| {r['random_windows']:.3f} | {r['coherence_minus_random']:+.3f} ± {r['coherence_minus_random_se']:.3f} "
            f"| {r['common_token_share']:.2f} | {r['latents_mostly_common']:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("saes", nargs="*", help="shipped names (4k, 16k) or SAELens folders")
    parser.add_argument("--out", required=True)
    parser.add_argument("--index-tokens", type=int, default=100_000)
    parser.add_argument("--latents", type=int, default=50)
    parser.add_argument("--contexts", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--table", action="store_true", help="print the table of what --out holds")
    args = parser.parse_args()
    if args.table:
        print(table(Path(args.out).expanduser()))
    else:
        run(args)


if __name__ == "__main__":
    main()
