# %% [markdown]
# # 5. The paper's setting: Gemma 2 2B, Gemma Scope SAEs, CAA behaviours, on a GPU
#
# The same calls as tutorials 1–3 on the model and SAEs the SAS paper used. This needs a GPU and the
# Hugging Face hub (Gemma 2 is gated: accept its licence and `huggingface-cli login`), and CAA's datasets
# (github.com/nrimsky/CAA, `datasets/`).
#
# In CI there is no hub: with `SAS_LENS_TUTORIAL_OFFLINE=1` the first cell swaps in a tiny random model
# and a random SAE saved to disk, and the shipped A/B demo set, and every other cell runs unchanged.

# %%
import os
import tempfile
from pathlib import Path

import torch

import sas_lens as sl

torch.set_grad_enabled(False)  # inference only, as in TransformerLens notebooks

OFFLINE_CHECK = os.environ.get("SAS_LENS_TUTORIAL_OFFLINE") == "1"
LAYER = 12
CAA = Path("CAA/datasets")  # a clone of github.com/nrimsky/CAA
BEHAVIOUR = "sycophancy"

if OFFLINE_CHECK:
    from sas_lens.testing import save_random_sae, tiny_model

    LAYER = 1
    model = tiny_model()
    SAE_SPEC = (str(save_random_sae(model, LAYER, Path(tempfile.mkdtemp()) / "sae")), None)
    train = sl.load_pairs("demo:caution")
    test = train
else:
    model = sl.load_model("gemma-2-2b", device="cuda", dtype=torch.bfloat16)
    SAE_SPEC = ("gemma-scope-2b-pt-res-canonical", f"layer_{LAYER}/width_16k/canonical")
    train = sl.load_pairs(CAA / "generate" / BEHAVIOUR / "generate_dataset.json", limit=400)
    test = sl.load_pairs(CAA / "test" / BEHAVIOUR / "test_dataset_ab.json", limit=50)

# %%
sae = sl.load_sae(*SAE_SPEC, model=model)  # checked to fit: hook exists, d_in == d_model
print(sae.cfg.metadata.hook_name, sae.cfg.d_sae)

# %% [markdown]
# Vectors: SAS at τ = 0.7 and the CAA baseline, from one pass over the pairs.

# %%
from sas_lens.steering.extraction import collect_residuals

residuals = collect_residuals(model, train, LAYER)
vec = sl.sas_vector(model, sae, train, selection="paper", tau=0.7, residuals=residuals)  # the paper exactly
dense = sl.dense_vector(model, train, layer=LAYER, residuals=residuals)
print(vec, f"dense norm {float(dense.vector.norm()):.2f}")

# %% [markdown]
# The CAA measurement: p(behaviour-matching letter) on held-out A/B items across λ, for both methods.

# %%
from sas_lens.evaluation.behaviour import ab_cell, mean_ci

sweep = {}
for method, vector in (("sas", vec), ("dense", dense)):
    for lam in (-2.0, -1.0, 0.0, 1.0, 2.0):
        sweep[method, lam] = mean_ci(ab_cell(model, test, method, vector, lam, sae=sae))[0]
        print(f"{method:>5} λ={lam:+g}: p(matching) = {sweep[method, lam]:.3f}")

# %% [markdown]
# The check, measured: each vector moves p(matching) away from the unsteered model, more at λ = 2 than at
# λ = 1; on Gemma 2 the dense vector moves it the behaviour's way (CAA's finding). (On the offline stand-in,
# a random model, the direction means nothing.)

# %%
unsteered = float(sl.ab_probabilities(model, test).mean())
print(f"unsteered p(matching) = {unsteered:.3f}")
for method in ("sas", "dense"):
    assert 0 < abs(sweep[method, 1.0] - unsteered) < abs(sweep[method, 2.0] - unsteered), (method, sweep)
if not OFFLINE_CHECK:
    assert sweep["dense", -2.0] < sweep["dense", 2.0], sweep

# %% [markdown]
# Open-ended generation, steered; and the whole protocol (five behaviours, layer sweep, capability and
# fluency costs, resumable) as one `sas-lens eval` config with `model = "gemma-2-2b"`, `device = "cuda"`
# and `saes = {"12" = ["gemma-scope-2b-pt-res-canonical", "layer_12/width_16k/canonical"]}`.

# %%
sl.generate(model, ["Do you think my business plan is brilliant?"], steering={vec: 2.0}, sae=sae, max_new_tokens=24)
