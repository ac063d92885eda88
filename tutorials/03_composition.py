# %% [markdown]
# # 3. Composing two behaviours, each with its own λ
#
# Several vectors steer at once: SAS vectors on one SAE are added to the same code before the
# non-linearity (one encode, one decode), dense vectors are added to the residual, and each keeps its own
# strength. With one of the two at λ = 0 the result is the other alone, exactly.

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


for lam_sentiment in (0.0, 8.0):
    for lam_caution in (0.0, 8.0):
        p_careful, p_great = probes({sentiment: lam_sentiment, caution: lam_caution})
        print(f"sentiment λ={lam_sentiment:g}, caution λ={lam_caution:g}: p(careful)={p_careful:.3f}  "
              f"p(' great')={p_great:.5f}")

# %% [markdown]
# The check: composing with the other at λ = 0 gives the first alone, bit for bit.

# %%
with sl.steer(model, {sentiment: 8.0}, sae=sae):
    alone = model(tokens)
with sl.steer(model, {sentiment: 8.0, caution: 0.0}, sae=sae):
    composed = model(tokens)
difference = float((alone - composed).abs().max())
print("max |logit difference|:", difference)
assert difference == 0.0

# %% [markdown]
# Arithmetic on vectors gives new vectors with merged provenance, and mixed SAS + dense steering works the
# same way.

# %%
dense_caution = sl.dense_vector(model, caution_items, layer=sentiment.layer)
print(sentiment + caution)
sl.generate(model, ["Should I swim across the lake at night?"], steering={sentiment: 6.0, dense_caution: 4.0},
            sae=sae, max_new_tokens=16, backend="hf")
