# %% [markdown]
# # 3. Composing two behaviours, and steering only where the context calls for it
#
# Several vectors steer at once: SAS vectors on one SAE are added to the same code (one encode, one
# decode), dense vectors are added to the residual, and each keeps its own strength. A composition grid
# measures whether they stay independent; a condition read from SAE latents decides, per prompt, whether a
# vector acts at all.

# %%
import statistics

import torch

import sas_lens as sl
from sas_lens.analysis.composition import composition_heatmaps, independence
from sas_lens.evaluation.judges import sentiment_scores, similarity_scores

torch.set_grad_enabled(False)  # inference only, as in TransformerLens notebooks

model = sl.load_model()
sae = sl.load_sae(model=model)
food_pairs = sl.load_pairs("demo:topic-food")
sentiment = sl.sas_vector(model, sae, sl.load_pairs("demo:sentiment"))
food = sl.sas_vector(model, sae, food_pairs)
len(sentiment), len(food)

# %% [markdown]
# Judges no one here wrote: VADER's compound score for sentiment, and for food the embedding similarity
# (all-MiniLM-L6-v2) to the food completions of the shipped pairs. Strengths are matched in cost: each
# vector's unit is the λ that moves the next-token distribution on the prompts by a mean KL of 0.1.

# %%
prompts = [
    "The new place on the corner is",
    "My week at the office has been",
    "Our trip to the coast was",
    "The book I finished yesterday was",
    "The meeting this morning was",
    "Dinner last night was",
]
judges = {
    "sentiment": lambda texts: statistics.mean(sentiment_scores(texts)),
    "food": lambda texts: statistics.mean(similarity_scores(texts, [p.positive for p in food_pairs])),
}
units = {
    name: sl.strength_for_kl(model, vec, 0.1, prompts, sae=sae, high=1024.0)
    for name, vec in (("sentiment", sentiment), ("food", food))
}
grid = sl.composition_grid(
    model,
    sae,
    {sentiment: [0.0, 2 * units["sentiment"]], food: [0.0, 2 * units["food"]]},
    judges,
    prompts,
    max_new_tokens=16,
    backend="hf",
)
grid.pivot_table(index=["lam_0", "lam_1"], columns="judge", values="score").round(3)

# %% [markdown]
# Each judge's spread along each vector's axis: a behaviour that composes independently moves along its own
# axis and stays flat along the other's (its cross-talk).

# %%
spread = independence(grid)
print(spread.round(3).to_string(index=False))
composition_heatmaps(grid)[0]

# %% [markdown]
# What composing means, checked: two vectors on one SAE at (λ₁, λ₂) are one edit, so they equal the single
# vector λ₁v₁ + λ₂v₂ at strength 1 — the same arithmetic, so bit for bit.

# %%
tokens = model.to_tokens("Yesterday evening we went to a")
with sl.steer(model, {sentiment: 8.0, food: 8.0}, sae=sae):
    composed = model(tokens)
with sl.steer(model, {8.0 * sentiment + 8.0 * food: 1.0}, sae=sae):
    summed = model(tokens)
assert torch.equal(composed, summed) and not torch.equal(composed, model(tokens))

# %% [markdown]
# ## Conditional steering
#
# A condition built from examples: the SAE latents that fire on the most food prompts beyond the share
# of other prompts they fire on. With `per="sequence"` it decides once per prompt, from the prompt, and
# keeps that decision for every generated token (under the KV cache and left padding alike).

# %%
food_prompts = [
    "For dinner tonight I am going to cook",
    "The recipe calls for two cups of",
    "At the bakery this morning I bought",
    "My grandmother's soup is made with",
    "The best way to season a steak is",
    "For breakfast I usually eat",
]
other_prompts = [
    "The train to the city was delayed because",
    "My new laptop has a screen that",
    "The football match ended with",
    "The election results showed that",
    "The software update changed the way",
    "The mountain trail was steep and",
]
on_food = sl.Condition.from_examples(model, sae, food_prompts[:3], other_prompts[:3], top_k=4, per="sequence")
rates = {"food": on_food.firing_rate(model, food_prompts[3:]), "other": on_food.firing_rate(model, other_prompts[3:])}
print("the condition fires on held-out prompts:", rates)

lam = 2 * units["food"]
for kind, held_out in (("food", food_prompts[3:]), ("other", other_prompts[3:])):
    plain = sl.generate(model, held_out, steering={food: lam}, sae=sae, max_new_tokens=16, backend="hf")
    gated = sl.generate(model, held_out, steering={food: lam}, sae=sae, when=on_food, max_new_tokens=16, backend="hf")
    print(f"{kind} prompts: food similarity {judges['food'](plain):.3f} steered, {judges['food'](gated):.3f} gated")
