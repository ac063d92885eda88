"""Output scores of every latent of the shipped layer-9 SAEs: the cost, what the best-scored latents write, and
where the demo sentiment vector's latents stand. With --ship, the scores are written beside the SAEs' weights.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_output_scores.py --ship
"""

from __future__ import annotations

import argparse
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--saes", nargs="+", default=["4k", "16k"])
    parser.add_argument("--ship", action="store_true", help="write the scores into the package (maintainers)")
    args = parser.parse_args()

    import sas_lens as sl
    from sas_lens.analysis.attribution import logit_lens
    from sas_lens.steering.output_scores import ship_output_scores

    torch.set_grad_enabled(False)
    model = sl.load_model()
    for name in args.saes:
        sae = sl.load_sae(name, model=model)
        started, cpu = time.perf_counter(), time.process_time()
        if args.ship:
            print(f"wrote {ship_output_scores(model, sae)}")
            scores = sl.output_scores(model, sae, progress=False)  # read back from the shipped file
        else:
            scores = sl.output_scores(model, sae, cache=False)
        seconds = time.perf_counter() - started
        print(
            f"{name}: {sae.cfg.d_sae} latents scored in {seconds:.1f} s wall, {time.process_time() - cpu:.1f} s CPU "
            f"({torch.get_num_threads()} threads)"
        )
        print(scores.describe().round(4).to_string())
        best = scores.nlargest(8, "output_score").index.tolist()
        for latent, (promotes, _) in zip(best, logit_lens(sae, model, best, 5)):
            print(f"  {latent:>6} score {scores.loc[latent, 'output_score']:.3f}  writes {promotes}")
        vec = sl.sas_vector(model, sae, sl.load_pairs("demo:sentiment"))
        table = sl.top_latents(vec, sae, model, k=8, scores=scores)
        rank = scores["output_score"].rank(ascending=False)
        print(f"  demo sentiment vector ({len(vec)} latents), top 8 by |value|:")
        for row in table.itertuples():
            print(
                f"  {row.latent:>6} value {row.value:+7.2f}  output score {row.output_score:.3f} "
                f"(rank {int(rank[row.latent])} of {len(scores)})  promotes {row.promotes}"
            )


if __name__ == "__main__":
    main()
