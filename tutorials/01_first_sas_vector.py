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

model = sl.load_model()  # Gemma 3 270M (4-bit weights, dequantised), TransformerLens hooks
sae = sl.load_sae(model=model)  # the shipped 16k SAE at blocks.9.hook_resid_post, checked to fit
sae.cfg.d_sae, sae.cfg.metadata.hook_name

# %% [markdown]
# Contrastive pairs: a prompt, a completion that shows the behaviour, one that does not. sas_lens ships a
# few small sets written for it (`sl.demo_sets()`); CAA's A/B JSON files, JSONL and CSV load the same way.

# %%
pairs = sl.load_pairs("demo:sentiment")
print(len(pairs), pairs[0])

# %% [markdown]
# Both sides' residuals are encoded by the SAE. By default `sas_vector` keeps the 16 latents whose mean code
# differs most between the sides (`selection="contrast"`) and steering decodes the code shift it adds
# (`gate="none"`). The paper's Algorithms 1 and 2 exactly are one keyword away, `selection="paper"`: keep
# the latents active on at least τ of a side's rows, drop the ones both sides keep, subtract, and pass the
# shifted code through the SAE's own σ. On this SAE and these pairs the paper's rule keeps almost nothing;
# its diagnostics say why. The dense (CAA) vector, the difference of mean residuals, is the baseline.

# %%
vec = sl.sas_vector(model, sae, pairs)
paper = sl.sas_vector(model, sae, pairs, selection="paper", tau=0.7)
dense = sl.dense_vector(model, pairs, layer=vec.layer)
print(vec, "|", paper)
print(paper.diagnostics.summary())
print({int(i): round(float(v), 2) for i, v in zip(vec.indices, vec.values)})
print(f"dense norm {float(dense.vector.norm()):.1f}")

# %% [markdown]
# λ means SAE-code units for an SAS vector and residual units for a dense one, so equal λ is not equal
# effect. `sl.strength_for_kl` finds, for each vector, the λ that moves the next-token distribution on
# reference text by a given mean KL divergence: steering at those λ compares the methods at matched cost.

# %%
reference = ["Honestly, I found the whole experience", "I thought the film was", "After work I usually"]
unit = {
    kind: sl.strength_for_kl(model, vector, 0.1, reference, sae=sae)
    for kind, vector in (("sas", vec), ("dense", dense))
}
print({kind: round(lam, 2) for kind, lam in unit.items()})

# %% [markdown]
# `sl.steer` attaches the hooks for a `with` block and removes them on exit, even after an error.
# A measured effect: the next-token logit margin of " wonderful" over " terrible" after a neutral prompt,
# at −1, 0 and +1 times each vector's λ at KL 0.1. (At λ = 0 the SAE's error Δ is added back, so the model
# is the unsteered one, exactly.)

# %%
tokens = model.to_tokens("Honestly, I found the whole experience")
good, bad = model.to_single_token(" wonderful"), model.to_single_token(" terrible")


def margin(steering):
    with sl.steer(model, steering, sae=sae):
        logits = model(tokens)[0, -1]
    return float(logits[good] - logits[bad])


margins = {
    (kind, m): margin({vector: m * unit[kind]} if m else {})
    for kind, vector in (("sas", vec), ("dense", dense))
    for m in (-1.0, 0.0, 1.0)
}
print({key: round(value, 2) for key, value in margins.items()})

# %%
for kind in ("sas", "dense"):  # each vector moves the margin its way, on both sides of the unsteered model
    assert margins[kind, -1.0] < margins[kind, 0.0] < margins[kind, 1.0], kind

# %% [markdown]
# Generation: batched, left-padded, with the KV cache; `backend="hf"` runs the same hooks on the
# transformers twin of the model, which decodes faster on CPU.

# %%
prompts = ["I thought the film was", "After work I usually"]
for steering in ({}, {vec: 2 * unit["sas"]}, {dense: 2 * unit["dense"]}):
    label = "unsteered" if not steering else type(next(iter(steering))).__name__
    print(label, sl.generate(model, prompts, steering=steering, sae=sae, max_new_tokens=16, backend="hf"))

# %% [markdown]
# Vectors save with their provenance (model, hook, SAE fingerprint, pairs, selection) and refuse to load onto
# another SAE.

# %%
import tempfile
from pathlib import Path

path = vec.save(Path(tempfile.mkdtemp()) / "sentiment.safetensors")
again = sl.load_vector(path, model=model, sae=sae)
assert torch.equal(again.values, vec.values) and again.provenance == vec.provenance
again.provenance.sae
