# %% [markdown]
# # 1. A first SAS vector: build it, steer with it, generate
#
# Sparse activation steering (SAS) builds a behaviour vector in an SAE's latent space from contrastive
# pairs, and adds it to the SAE code of the residual stream, keeping the SAE's reconstruction error Δ:
# at λ = 0 the model is exactly the unsteered one. Everything here runs offline on the embedded
# Gemma 3 270M and the SAE shipped with sas_lens.

# %%
import torch

import sas_lens as sl

torch.set_grad_enabled(False)  # inference only, as in TransformerLens notebooks

model = sl.load_model()          # Gemma 3 270M (4-bit weights, dequantised), TransformerLens hooks
sae = sl.load_sae(model=model)   # the shipped 16k SAE at blocks.9.hook_resid_post, checked to fit
sae.cfg.d_sae, sae.cfg.metadata.hook_name

# %% [markdown]
# Contrastive pairs: a prompt, a completion that shows the behaviour, one that does not. sas_lens ships a
# few small sets written for it (`sl.demo_sets()`); CAA's A/B JSON files, JSONL and CSV load the same way.

# %%
pairs = sl.load_pairs("demo:sentiment")
print(len(pairs), pairs[0])

# %% [markdown]
# Algorithm 1: encode both sides' residuals, keep the latents active on at least τ of a side's rows,
# average them, drop latents the two sides share, subtract. The dense (CAA) vector, the difference of mean
# residuals, is built on the same residuals as the baseline.

# %%
vec = sl.sas_vector(model, sae, pairs, tau=0.7)
dense = sl.dense_vector(model, pairs, layer=vec.layer)
print(vec)
print({int(i): round(float(v), 2) for i, v in zip(vec.indices, vec.values)})
print(f"dense norm {float(dense.vector.norm()):.1f}")

# %% [markdown]
# `sl.steer` attaches the hooks for a `with` block and removes them on exit, even after an error.
# The golden property: λ = 0 is the unsteered model, bit for bit. (This vector has one latent, with a
# negative value: a latent the negative completions switch on. Positive λ switches it off where it fires.)

# %%
prompt = "I thought the film was"
tokens = model.to_tokens(prompt)
unsteered = model(tokens)[0, -1]
with sl.steer(model, {vec: 0.0}, sae=sae):
    at_zero = model(tokens)[0, -1]
print("max |logit difference| at λ=0:", float((at_zero - unsteered).abs().max()))

# %%
assert float((at_zero - unsteered).abs().max()) == 0.0

# %% [markdown]
# Generation: batched, left-padded, with the KV cache; `backend="hf"` runs the same hooks on the
# transformers twin of the model, which decodes faster on CPU.

# %%
prompts = ["I thought the film was", "After work I usually"]
for steering in ({}, {vec: 6.0}, {dense: 6.0}):
    label = "unsteered" if not steering else type(next(iter(steering))).__name__
    print(label, sl.generate(model, prompts, steering=steering, sae=sae, max_new_tokens=16, backend="hf"))

# %% [markdown]
# Vectors save with their provenance (model, hook, SAE fingerprint, pairs, τ) and refuse to load onto
# another SAE.

# %%
import tempfile
from pathlib import Path

path = vec.save(Path(tempfile.mkdtemp()) / "sentiment.safetensors")
again = sl.load_vector(path, model=model, sae=sae)
torch.equal(again.values, vec.values)
