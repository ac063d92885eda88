# %% [markdown]
# # 2. Reading a vector: its top latents, where they fire, how vectors overlap
#
# An SAS vector lives on a handful of SAE latents, so it can be read latent by latent: what each latent
# promotes through the unembedding (logit lens), where it fires in text, and which latents two behaviours
# share.

# %%
from importlib import resources

import torch

import sas_lens as sl

torch.set_grad_enabled(False)  # inference only, as in TransformerLens notebooks

model = sl.load_model()
sae = sl.load_sae(model=model)
vectors = {name: sl.sas_vector(model, sae, sl.load_pairs(f"demo:{name}"), tau=0.5) for name in ("sentiment", "caution")}
{name: len(v) for name, v in vectors.items()}

# %% [markdown]
# A latent index records, for every latent, its firing frequency and its top-activating contexts over a
# text sample. Here: the 150 reference prompts shipped with sas_lens (point it at a real corpus for
# better contexts). It is cached on disk per (model, SAE, texts, settings).

# %%
texts = resources.files("sas_lens") / "data" / "reference_prompts.txt"
index = sl.latent_index(model, sae, str(texts), n_tokens=5_000, context_size=16)
table = sl.top_latents(vectors["caution"], sae, model, k=5, index=index, n_contexts=1)
table[["latent", "value", "promotes", "frequency", "contexts"]]

# %% [markdown]
# Trace the vector's latents token by token through one of the caution items, up to its answer letter
# (A/B vectors are read at the letter).

# %%
item = sl.load_pairs("demo:caution")[0]
latents = table["latent"].tolist()[:3]
tokens, acts = sl.trace_latents(model, sae, f"{item.question}\n\nAnswer: ({item.matching}", latents)
for token, row in list(zip(tokens, acts))[-8:]:
    print(f"{token!r:>12} " + " ".join(f"{float(a):7.2f}" for a in row))

# %% [markdown]
# Monosemanticity (how concentrated a vector is) and overlap (Jaccard of supports, and weighted Jaccard)
# between behaviours.

# %%
print({name: round(sl.monosemanticity(v)["effective_latents"], 2) for name, v in vectors.items()})
overlap = sl.overlap_matrix(list(vectors.values()), sae=sae)
overlap.weighted_jaccard.round(3)

# %%
assert all(overlap.jaccard.loc[name, name] == 1.0 for name in overlap.names)

# %% [markdown]
# All of it in one offline HTML report (plotly inlined): one card per vector, the overlap heatmaps.

# %%
import tempfile
from pathlib import Path

report = sl.write_report(
    Path(tempfile.mkdtemp()) / "report.html", list(vectors.values()), model=model, sae=sae, index=index
)
print(report)
