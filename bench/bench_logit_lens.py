"""The demo sentiment vector's top latents read three ways: the old lens, the final norm applied, common tokens only.

Old: ``W_dec[i] · W_U`` (what ``logit_lens`` computed before the final RMSNorm's weight was applied).
Fixed: ``logit_lens`` (decoder row through the final norm, whole 262k vocabulary). Common: the same lens
among the tokens seen at least 3 times in a latent index of held-out Wikipedia (``enwiki2015_AD``).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_logit_lens.py --index-tokens 30000
    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_logit_lens.py --selection attribution   # the output-side rule
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "corpus" / "enwiki2015_AD.txt"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", default="demo:sentiment")
    parser.add_argument("--index-tokens", type=int, default=30_000)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument(
        "--selection", default="contrast", help="sas_vector's rule: contrast (default), attribution, ..."
    )
    args = parser.parse_args()

    import sas_lens as sl
    from sas_lens.analysis.attribution import logit_lens

    torch.set_grad_enabled(False)
    model = sl.load_model()
    sae = sl.load_sae(model=model)
    vec = sl.sas_vector(model, sae, sl.load_pairs(args.pairs), selection=args.selection)
    index = sl.latent_index(model, sae, CORPUS, n_tokens=args.index_tokens)
    common = index.common_tokens(3)
    order = vec.values.abs().argsort(descending=True)[: args.k]
    latents = vec.indices[order].tolist()
    old = (sae.W_dec[latents].float() @ model.W_U).topk(5, dim=-1).indices.tolist()
    fixed = logit_lens(sae, model, latents, 5)
    restricted = logit_lens(sae, model, latents, 5, vocabulary=common)
    w = model.ln_final.w
    print(
        f"final norm weight: min {float(w.min()):.3g}, max {float(w.max()):.3g}; "
        f"common tokens: {len(common):,} of {model.cfg.d_vocab:,} (>= 3 times in {index.n_tokens:,} tokens)"
    )
    print("| latent | value | old lens (`W_dec·W_U`) | final norm applied | common tokens only |")
    print("|---|---|---|---|---|")
    show = lambda tokens: ", ".join(repr(t)[1:-1] for t in tokens)  # noqa: E731
    for i, latent in enumerate(latents):
        print(
            f"| {latent} | {float(vec.values[order[i]]):+.2f} | {show(model.tokenizer.convert_ids_to_tokens(old[i]))} "
            f"| {show(fixed[i][0])} | {show(restricted[i][0])} |"
        )


if __name__ == "__main__":
    main()
