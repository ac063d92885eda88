"""How well SAEs trained on Wikipedia reconstruct other English text (issue 26): EV, CE recovered, L0 per domain.

Domains: held-out Wikipedia (``enwiki2015_AD``), AG News test articles (title and description), rt-polarity
review sentences and the CAA test questions (A/B items and open-ended prompts of every behaviour). Each is
written once as one document per line into ``--work`` (outside the project: the data is read, never
shipped), its layer activations are cached there and shared by every SAE of that hook, and each SAE's
figures come from ``evaluate_sae`` on the same first ``--tokens`` tokens (CE loss recovered on
``--loss-sequences`` 128-token sequences). Evaluation only: none of this
text trains an SAE. One JSON line per (SAE, domain) is appended to ``--out``; finished ones are skipped.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_sae_domains.py 4k 16k ~/sae_scale/l9-4k-6.4M \\
        --work ~/sae_domains --out ~/sae_domains/results.jsonl
    .venv/bin/python bench/bench_sae_domains.py --out ~/sae_domains/results.jsonl --table
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_vectors import DATA, agnews_rows, rt_polarity  # noqa: E402  (the same readers as the steering benches)


def domain_texts() -> dict[str, list[str]]:
    """Each domain's documents, one string each (newlines folded so that one line is one document)."""
    agnews = [text for _, text in agnews_rows()]
    reviews = rt_polarity("pos") + rt_polarity("neg")
    caa = []
    for behaviour in sorted((DATA / "caa" / "test").iterdir()):
        for file in sorted(behaviour.glob("*.json")):
            caa += [item["question"] for item in json.loads(file.read_text()) if "question" in item]
    texts = {"agnews": agnews, "reviews": reviews, "caa": caa}
    return {name: [" ".join(doc.split()) for doc in docs if doc.strip()] for name, docs in texts.items()}


def write_domains(work: Path) -> dict[str, Path]:
    files = {"wikipedia": DATA / "corpus" / "enwiki2015_AD.txt"}
    for name, docs in domain_texts().items():
        path = work / "texts" / f"{name}.txt"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("\n".join(docs) + "\n")
        files[name] = path
    return files


def run(args) -> None:
    import sas_lens as sl
    from sas_lens.sae_training.evaluate import evaluate_sae

    out, work = Path(args.out).expanduser(), Path(args.work).expanduser()
    done = {(r["sae"], r["domain"]) for r in read_rows(out)}
    files = write_domains(work)
    model = sl.load_model()
    for name in args.saes:
        sae = sl.load_sae(name, model=model)  # a shipped name or a folder
        hook = sae.cfg.metadata.hook_name
        for domain, file in files.items():
            if (name, domain) in done:
                continue
            cache_dir = work / "activations" / f"{domain}-{hook}"
            figures = evaluate_sae(
                model, sae, [file], n_tokens=args.tokens, n_loss_sequences=args.loss_sequences, cache_dir=cache_dir
            )
            row = {"sae": name, "domain": domain, **{k: figures[k] for k in FIGURES}}
            with out.open("a") as handle:
                handle.write(json.dumps(row) + "\n")
            print(row, flush=True)


FIGURES = ("explained_variance", "ce_loss_recovered", "mean_l0", "dead_fraction", "dense_fraction", "tokens")


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def table(path: Path) -> str:
    rows = read_rows(path)
    domains = list(dict.fromkeys(r["domain"] for r in rows))
    lines = ["| SAE | " + " | ".join(f"{d} EV / CE rec." for d in domains) + " |", "|---" * (len(domains) + 1) + "|"]
    for sae in dict.fromkeys(r["sae"] for r in rows):
        cells = {r["domain"]: r for r in rows if r["sae"] == sae}
        shown = [
            f"{cells[d]['explained_variance']:.3f} / {cells[d]['ce_loss_recovered']:.3f}" if d in cells else "–"
            for d in domains
        ]
        lines.append(f"| `{Path(sae).name}` | " + " | ".join(shown) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("saes", nargs="*", help="shipped names (4k, 16k, l12-4k) or SAELens folders")
    parser.add_argument("--work", default="~/sae_domains")
    parser.add_argument("--out", required=True)
    parser.add_argument("--tokens", type=int, default=20_000)
    parser.add_argument("--loss-sequences", type=int, default=16, help="128-token sequences for CE recovered")
    parser.add_argument("--table", action="store_true", help="print the table of what --out holds")
    args = parser.parse_args()
    if args.table:
        print(table(Path(args.out).expanduser()))
    else:
        run(args)


if __name__ == "__main__":
    main()
