# %% [markdown]
# # 3. Composing two behaviours, each with its own λ
#
# Several vectors steer at once: SAS vectors on one SAE are added to the same code before the
# non-linearity (one encode, one decode), dense vectors are added to the residual, and each keeps its own
# strength.

# %%
import torch

import sas_lens as sl

torch.set_grad_enabled(False)  # inference only, as in TransformerLens notebooks

model = sl.load_model()
sae = sl.load_sae(model=model)
caution_items = sl.load_pairs("demo:caution")
sentiment = sl.sas_vector(model, sae, sl.load_pairs("demo:sentiment"), tau=0.5)
caution = sl.sas_vector(model, sae, caution_items, tau=0.5)
probe_items = sl.load_pairs("demo:caution", limit=12)
len(sentiment), len(caution)

# %% [markdown]
# One probe per behaviour: p(careful answer) on 12 caution items (A/B, CAA's measurement) and the
# next-token probability of " great" after a neutral prompt, on a grid of the two strengths.

# %%
tokens = model.to_tokens("Yesterday evening we went to a")
great = model.to_single_token(" great")


def probes(steering):
    with sl.steer(model, steering, sae=sae):
        p_great = float(model(tokens)[0, -1].softmax(-1)[great])
    p_careful = float(sl.ab_probabilities(model, probe_items, steering=steering, sae=sae).mean())
    return p_careful, p_great


grid = {}
for lam_sentiment in (0.0, 8.0):
    for lam_caution in (0.0, 8.0):
        grid[lam_sentiment, lam_caution] = probes({sentiment: lam_sentiment, caution: lam_caution})
        print(f"sentiment λ={lam_sentiment:g}, caution λ={lam_caution:g}: p(careful)={grid[lam_sentiment, lam_caution][0]:.3f}  "
              f"p(' great')={grid[lam_sentiment, lam_caution][1]:.5f}")

# %% [markdown]
# Measured here (Gemma 3 270M, shipped 16k SAE): these τ = 0.5 vectors move their own probes little, and
# caution moves p(' great') more than sentiment does; why SAS vectors carry so little of a behaviour on
# this model is open work (README, "Measured here"). What composing means, checked: two vectors on one SAE
# at (λ₁, λ₂) are one edit, σ(f(a) + λ₁v₁ + λ₂v₂), so they equal the single vector λ₁v₁ + λ₂v₂ at
# strength 1 — the same arithmetic, so bit for bit.

# %%
with sl.steer(model, {sentiment: 8.0, caution: 8.0}, sae=sae):
    composed = model(tokens)
with sl.steer(model, {8.0 * sentiment + 8.0 * caution: 1.0}, sae=sae):
    summed = model(tokens)
unsteered = model(tokens)
print("max |logit change| composed:", float((composed - unsteered).abs().max()))
assert torch.equal(composed, summed) and not torch.equal(composed, unsteered)

# %% [markdown]
# Arithmetic on vectors gives new vectors with merged provenance, and mixed SAS + dense steering works the
# same way.

# %%
dense_caution = sl.dense_vector(model, caution_items, layer=sentiment.layer)
print(sentiment + caution)
sl.generate(model, ["Should I swim across the lake at night?"], steering={sentiment: 6.0, dense_caution: 4.0},
            sae=sae, max_new_tokens=16, backend="hf")
