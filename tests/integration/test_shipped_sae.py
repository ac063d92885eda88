"""The shipped SAEs load, fit the embedded model, and reconstruct its residuals."""

import pytest
import torch

import sas_lens as sl
from sas_lens.loading.saes import hook_layer

pytestmark = pytest.mark.integration

# Written for this test, so never seen in training: everyday prose, code, a list, dialogue.
SENTENCES = [
    "My grandmother kept a small garden behind the house, where she grew tomatoes and beans every summer.",
    "The committee postponed its vote on the new budget until the auditors had finished their report.",
    "def add(a, b):\n    return a + b",
    "Ingredients: two eggs, a cup of flour, half a cup of milk and a pinch of salt.",
    '"Are you coming to the match on Saturday?" she asked. "Only if it stops raining," he said.',
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
]

# The 16k SAE explains 0.919 of the variance of 100k held-out Wikipedia tokens (its eval.json).
# These sentences are short and partly off the training distribution (code, dialogue, a
# recipe), so the bar sits at 0.65, 0.1 below the 0.75 that the held-out evaluation must clear.
MIN_EXPLAINED_VARIANCE = 0.65


def explained_variance(sae, acts):
    recon = sae.decode(sae.encode(acts))
    return 1 - (acts - recon).pow(2).sum() / (acts - acts.mean(0)).pow(2).sum()


@pytest.mark.parametrize(("short_name", "d_sae"), [(None, 16384), ("16k", 16384), ("4k", 4096)])
def test_shipped_sae_reconstructs_new_sentences(gemma, short_name, d_sae):
    sae = sl.load_sae(short_name, model=gemma)
    assert sae.cfg.d_sae == d_sae and sae.cfg.architecture() == "jumprelu"
    assert sae.dtype == torch.float32  # bfloat16 on disk, float32 at run time
    hook = sae.cfg.metadata.hook_name
    stop_at_layer = hook_layer(hook) + 1
    rows = []
    with torch.no_grad():
        for sentence in SENTENCES:
            _, cache = gemma.run_with_cache(sentence, names_filter=hook, stop_at_layer=stop_at_layer)
            rows.append(cache[hook][0, 1:])  # BOS left out, as in training
        acts = torch.cat(rows)
        ev = float(explained_variance(sae, acts))
        l0 = float((sae.encode(acts) > 0).float().sum(-1).mean())
    assert ev > MIN_EXPLAINED_VARIANCE, f"explained variance {ev:.3f} on {acts.shape[0]} tokens (L0 {l0:.1f})"
    assert 5 < l0 < 200, f"mean L0 {l0:.1f}"
