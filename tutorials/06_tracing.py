# %% [markdown]
# # 6. Tracing: what a vector reads, token by token, and what steering changes
#
# `sl.trace` shows a text's tokens coloured by how strongly each vector's latents fire on them; hover a
# token for its top latents (id, activation, the vector's value). Give it a steering and one more row shows,
# per token, how far the next-token distribution moved (KL) and the top next token before and after.

# %%
import torch

import sas_lens as sl

torch.set_grad_enabled(False)  # inference only, as in TransformerLens notebooks

model = sl.load_model()
sae = sl.load_sae(model=model)
sentiment = sl.sas_vector(model, sae, sl.load_pairs("demo:sentiment"))
food = sl.sas_vector(model, sae, sl.load_pairs("demo:topic-food"))

# %% [markdown]
# Two vectors on one text, and the sentiment vector steering it at the λ of a next-token KL of 0.3.

# %%
text = "The soup was wonderful and the bread was fresh, but the service was slow and rude."
lam = sl.strength_for_kl(model, sentiment, 0.3, [text], sae=sae, high=1024.0)
traced = sl.trace(model, sae, text, vectors=[sentiment, food], steering={sentiment: lam})
traced

# %% [markdown]
# The same as numbers: which tokens each vector reads most, and where steering moved the prediction most.

# %%
for vec in traced.vectors:
    strongest = int(vec.intensity.argmax())
    print(f"{vec.name}: strongest on {traced.tokens[strongest]!r}, top latents there {vec.top[strongest][:3]}")
most_moved = max(range(len(traced.kl)), key=traced.kl.__getitem__)
print(
    f"steering moved the next token most after {traced.tokens[most_moved]!r}: "
    f"{traced.before[most_moved]!r} → {traced.after[most_moved]!r} (KL {traced.kl[most_moved]:.3f})"
)
assert sum(traced.kl) / len(traced.kl) > 0.05  # the steering acts on every position it is given

# %% [markdown]
# A signed reading tells the sides apart: `Σ code · value` over the vector's latents, positive where the
# positive side's latents fire.


# %%
def signed(text):
    tokens, acts = sl.trace_latents(model, sae, text, sentiment.indices.tolist())
    return float((acts * sentiment.values).sum(-1).mean())


print({t: round(signed(t), 2) for t in ("What a wonderful, happy day.", "What an awful, miserable day.")})

# %% [markdown]
# The trace is self-contained HTML (no script, no network): save it as a page or as a plotly figure.

# %%
path = traced.to_html("trace.html")
traced.figure()
