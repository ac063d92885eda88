"""Composition, cross-talk against overlap, and conditional steering on the embedded default, judged by scorers
no one here wrote.

Behaviours and judges (vectors from public data, or the demo sets this package ships):

- ``sentiment``: 100 + 100 rt-polarity sentences after "Review:" (as ``bench_vectors.py``); judge: VADER compound;
- ``food``: the shipped ``demo:topic-food`` pairs; judge: all-MiniLM-L6-v2 cosine to the centroid of their
  food completions;
- ``sports``: 100 AG News sports articles against 100 of the other classes; judge: cosine to 400 held-out
  sports articles;
- ``formality``: the shipped ``demo:formality`` pairs; judge: cosine to the formal completions' centroid minus
  cosine to the informal ones'.

1. Composition grids (sentiment × food), SAS and dense, λ in multiples of each vector's λ at a mean
   next-token KL of 0.1 on the prompts.
2. Cross-talk: every vector alone at KL 0.3, scored by every judge; against Jaccard, weighted Jaccard and
   decoded cosine; Spearman per method.
3. Conditional steering: the food vectors gated by a per-sequence condition built from 12 food and 12 other
   prompts written here, on 12 + 12 held-out prompts of each kind: how often it fires, and the food judge's
   shift on each kind with and without it.

    .venv/bin/python bench/bench_composition.py --out bench_composition.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from bench_vectors import NEUTRAL_PROMPTS, sentiment_behaviour, topic_behaviour

FOOD_PROMPTS = [  # first 12: to build the condition; last 12: held out
    "For dinner tonight I am going to cook",
    "The recipe calls for two cups of",
    "At the bakery this morning I bought",
    "My grandmother's soup is made with",
    "The best way to season a steak is",
    "For breakfast I usually eat",
    "The chef at the new bistro prepared",
    "To make a good curry you need",
    "At the farmers market we picked up",
    "The pizza we ordered last night had",
    "My favourite dessert is a",
    "The sandwich I made for lunch had",
    "The menu at the cafe offers",
    "When I bake bread at home I",
    "The salad was dressed with",
    "We roasted vegetables with",
    "The restaurant's signature dish is",
    "For the picnic we packed",
    "The soup tasted of",
    "She stirred the sauce and added",
    "The spices in this dish are",
    "Our Sunday lunch was",
    "The cookies came out of the oven",
    "He sliced the onions and",
]
OTHER_PROMPTS = [
    "The train to the city was delayed because",
    "My new laptop has a screen that",
    "The football match ended with",
    "The museum opened a new wing for",
    "The election results showed that",
    "Our garden fence was broken by",
    "The software update changed the way",
    "The mountain trail was steep and",
    "The bank announced that interest rates",
    "The physics lecture explained how",
    "The new car model comes with",
    "The storm last night knocked down",
    "The library will be closed on",
    "Her painting shows a landscape with",
    "The company hired a new manager who",
    "The river flooded the fields after",
    "The phone battery lasts for",
    "The students finished their exams and",
    "The bridge across the bay was built in",
    "The orchestra played a symphony by",
    "The rocket launch was postponed because",
    "The city council voted to",
    "The hospital opened a clinic for",
    "The hiking boots I bought are",
]


def formality_behaviour():
    from sas_lens.loading.embeddings import embed
    from sas_lens.loading.pairs import load_pairs
    from sas_lens.topic.evaluation import topic_centroid

    pairs = load_pairs("demo:formality")
    formal = topic_centroid([p.positive for p in pairs])
    informal = topic_centroid([p.negative for p in pairs])

    def judge(texts):
        e = embed(texts)
        return float((e @ formal - e @ informal).mean())

    return pairs, judge


def food_behaviour():
    from sas_lens.loading.embeddings import embed
    from sas_lens.loading.pairs import load_pairs
    from sas_lens.topic.evaluation import topic_centroid

    pairs = load_pairs("demo:topic-food")
    centroid = topic_centroid([p.positive for p in pairs])
    return pairs, lambda texts: float((embed(texts) @ centroid).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--parts", nargs="+", default=["grid", "crosstalk", "conditional"])
    parser.add_argument("--out", default="bench_composition.json")
    args = parser.parse_args()

    import sas_lens as sl
    from sas_lens.analysis.composition import composition_grid, independence
    from sas_lens.analysis.interference import cross_talk, interference_table, overlap_predicts_interference
    from sas_lens.steering.generation import generate
    from sas_lens.steering.strength import strength_for_kl

    torch.set_grad_enabled(False)
    started = time.perf_counter()
    prompts = NEUTRAL_PROMPTS[: args.prompts]
    model = sl.load_model()
    sae = sl.load_sae(model=model)
    layer = int(sae.cfg.metadata.hook_name.split(".")[1])
    behaviours = {
        "sentiment": sentiment_behaviour(100)[:2],
        "food": food_behaviour(),
        "sports": topic_behaviour("sports", 100)[:2],
        "formality": formality_behaviour(),
    }
    judges = {name: judge for name, (_, judge) in behaviours.items()}
    vectors = {
        method: {
            name: (
                sl.sas_vector(model, sae, pairs) if method == "sas" else sl.dense_vector(model, pairs, layer=layer)
            ).renamed(name)
            for name, (pairs, _) in behaviours.items()
        }
        for method in ("sas", "dense")
    }
    result: dict = {"prompts": len(prompts), "sizes": {n: len(v) for n, v in vectors["sas"].items()}}
    out = Path(args.out)

    def save():
        result["seconds"] = time.perf_counter() - started
        out.write_text(json.dumps(result, indent=1, default=float))

    if "grid" in args.parts:
        multiples = {"sentiment": [-2.0, 0.0, 2.0], "food": [0.0, 2.0, 4.0]}
        for method, named in vectors.items():
            units = {
                n: strength_for_kl(model, named[n], 0.1, prompts, sae=sae, high=1024.0, rtol=0.1) for n in multiples
            }
            grid = composition_grid(
                model,
                sae,
                {named[n]: [m * units[n] for m in multiples[n]] for n in multiples},
                {n: judges[n] for n in multiples},
                prompts,
                max_new_tokens=args.max_new_tokens,
                backend="hf",
            )
            for i, n in enumerate(multiples):  # report λ as multiples of λ at KL 0.1
                grid[f"lam_{i}"] = grid[f"lam_{i}"] / units[n]
            result[f"grid_{method}"] = grid.to_dict("records")
            result[f"independence_{method}"] = independence(grid).to_dict("records")
            print(method, "grid\n", grid.to_string(), "\n", independence(grid).to_string(), flush=True)
            save()

    if "crosstalk" in args.parts:
        for method, named in vectors.items():
            talk = cross_talk(
                model, named, judges, prompts, sae=sae, target_kl=0.3, max_new_tokens=args.max_new_tokens, backend="hf"
            )
            table = interference_table(talk, named, sae)
            result[f"crosstalk_{method}"] = talk.to_dict("records")
            result[f"interference_{method}"] = table.to_dict("records")
            result[f"spearman_{method}"] = overlap_predicts_interference(table).to_dict("records")
            print(
                method,
                "cross-talk\n",
                talk.to_string(),
                "\n",
                table.to_string(),
                "\n",
                overlap_predicts_interference(table).to_string(),
                flush=True,
            )
            save()

    if "conditional" in args.parts:
        condition = sl.Condition.from_examples(
            model, sae, FOOD_PROMPTS[:12], OTHER_PROMPTS[:12], top_k=4, per="sequence", name="food prompts"
        )
        held_out = {"food": FOOD_PROMPTS[12:], "other": OTHER_PROMPTS[12:]}
        rows = []
        for kind, kind_prompts in held_out.items():
            base = judges["food"](
                generate(
                    model, kind_prompts, max_new_tokens=args.max_new_tokens, backend="hf", batch_size=len(kind_prompts)
                )
            )
            firing = condition.firing_rate(model, kind_prompts)
            for method, named in vectors.items():
                lam = strength_for_kl(model, named["food"], 0.3, prompts, sae=sae, high=1024.0, rtol=0.1)
                for gated in (False, True):
                    texts = generate(
                        model,
                        kind_prompts,
                        steering={named["food"]: lam},
                        sae=sae,
                        when=condition if gated else None,
                        max_new_tokens=args.max_new_tokens,
                        backend="hf",
                        batch_size=len(kind_prompts),
                    )
                    rows.append(
                        {
                            "prompts": kind,
                            "method": method,
                            "conditional": gated,
                            "fires": firing,
                            "unsteered": base,
                            "judge": judges["food"](texts),
                            "shift": judges["food"](texts) - base,
                            "example": texts[0],
                        }
                    )
                    print(rows[-1], flush=True)
        result["condition"] = {"latents": list(condition.ids)}
        result["conditional"] = rows
        save()
    print("seconds", round(time.perf_counter() - started))


if __name__ == "__main__":
    main()
