"""SAS against dense at every layer with a shipped SAE, with and without the reconstruction error Δ (sentiment).

The paper's layer experiments on the embedded default: the sentiment vectors of ``bench_vectors.py`` (100 +
100 rt-polarity sentences after "Review:"), built at each layer that has a shipped SAE, steer the neutral
prompts; VADER judges the continuations, perplexity under the unsteered model prices them.

Per layer and sign: λ₁ is each vector's strength at a mean next-token KL of 0.1 on the prompts; dense and
SAS (the library's default vector) steer at 1 and 2 × their own λ₁. SAS without Δ (``with_delta(False)``)
steers at SAS's λs — the ablation changes nothing else — and at λ = 0, where it is the SAE spliced in.

    .venv/bin/python bench/bench_layers.py --out bench_layers.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from bench_vectors import NEUTRAL_PROMPTS, sentiment_behaviour


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", default="4k", help="the shipped SAE width used at every layer")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--multiples", type=float, nargs="+", default=[1.0, 2.0])
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--out", default="bench_layers.json")
    parser.add_argument(
        "--layers",
        type=int,
        nargs="*",
        default=None,
        help="only these layers; rows of other layers already in --out are kept (a resumed run)",
    )
    args = parser.parse_args()

    import sas_lens as sl
    from sas_lens.loading.saes import shipped_sae_at
    from sas_lens.steering.fluency import fluency
    from sas_lens.steering.generation import generate
    from sas_lens.steering.strength import strength_for_kl

    torch.set_grad_enabled(False)
    started = time.perf_counter()
    prompts = NEUTRAL_PROMPTS[: args.prompts]
    model = sl.load_model()
    pairs, judge, _ = sentiment_behaviour(100)

    def measure(steering: dict, sae) -> dict:
        texts = generate(
            model,
            prompts,
            steering=steering,
            sae=sae,
            max_new_tokens=args.max_new_tokens,
            backend="hf",
            batch_size=len(prompts),
        )
        return {"judge": judge(texts), **fluency(model, prompts, texts), "example": texts[0]}

    base = measure({}, None)
    print("unsteered", base, flush=True)
    layers = [
        layer
        for layer in range(model.cfg.n_layers)
        if shipped_sae_at(layer, args.width) and (args.layers is None or layer in args.layers)
    ]
    earlier = json.loads(Path(args.out).read_text())["rows"] if Path(args.out).exists() else []
    rows = [row for row in earlier if row["layer"] not in layers]
    for layer in layers:
        sae = sl.load_sae(args.width, layer=layer, model=model)
        vectors = {"dense": sl.dense_vector(model, pairs, layer=layer), "sas": sl.sas_vector(model, sae, pairs)}
        spliced = measure({vectors["sas"].with_delta(False): 0.0}, sae)
        rows.append(
            {
                "layer": layer,
                "method": "sas, no Δ",
                "multiple": 0.0,
                "lam": 0.0,
                **spliced,
                "shift": spliced["judge"] - base["judge"],
            }
        )
        print(layer, "SAE spliced in", round(spliced["judge"], 3), round(spliced["perplexity"], 2), flush=True)
        for sign in (+1, -1):
            units = {
                name: strength_for_kl(model, vector, 0.1, prompts, sae=sae, sign=sign, high=1024.0, rtol=0.1)
                for name, vector in vectors.items()
            }
            for multiple in args.multiples:
                runs = [
                    ("dense", vectors["dense"], units["dense"]),
                    ("sas", vectors["sas"], units["sas"]),
                    ("sas, no Δ", vectors["sas"].with_delta(False), units["sas"]),
                ]
                for method, vector, unit in runs:
                    row = {
                        "layer": layer,
                        "method": method,
                        "multiple": sign * multiple,
                        "lam": unit * multiple,
                        **measure({vector: unit * multiple}, sae),
                    }
                    row["shift"] = row["judge"] - base["judge"]
                    rows.append(row)
                    print(
                        layer,
                        method,
                        sign * multiple,
                        f"λ={row['lam']:.3g}",
                        f"shift {row['shift']:+.3f}",
                        f"ppl {row['perplexity']:.2f}",
                        repr(row["example"][:60]),
                        flush=True,
                    )
        Path(args.out).write_text(
            json.dumps(
                {
                    "unsteered": base,
                    "rows": rows,
                    "width": args.width,
                    "prompts": len(prompts),
                    "seconds": time.perf_counter() - started,
                },
                indent=1,
            )
        )
    print(
        f"\nshift of the VADER judge (unsteered {base['judge']:.3f}, perplexity {base['perplexity']:.2f}); "
        "perplexity in brackets"
    )
    for layer in sorted({r["layer"] for r in rows}):
        cells = [
            f"{r['method']} {r['multiple']:+g}: {r['shift']:+.3f} ({r['perplexity']:.2f})"
            for r in rows
            if r["layer"] == layer
        ]
        print(f"  layer {layer:2d}  " + "; ".join(cells))


if __name__ == "__main__":
    main()
