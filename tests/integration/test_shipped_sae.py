"""The shipped SAEs load, fit the embedded model, and reconstruct its residuals."""

import pytest
import torch

import sas_lens as sl
from sas_lens.loading.saes import hook_layer, sae_release_and_id

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

# The shipped SAEs explain 0.77-0.92 of the variance of 100k held-out Wikipedia tokens (their eval.json;
# the deeper layers' residuals are harder). These sentences are short and partly off the training
# distribution (code, dialogue, a recipe): measured 0.64 (layer 12) to 0.87 (layer 3), 0.73 for the 16k, so
# the bar sits at 0.55. An SAE that does not fit its layer explains about nothing.
MIN_EXPLAINED_VARIANCE = 0.55


def explained_variance(sae, acts):
    recon = sae.decode(sae.encode(acts))
    return 1 - (acts - recon).pow(2).sum() / (acts - acts.mean(0)).pow(2).sum()


@pytest.mark.parametrize(
    ("short_name", "d_sae", "layer"),
    [
        (None, 16384, 9),
        ("16k", 16384, 9),
        ("4k", 4096, 9),
        ("4k-6.4M", 4096, 9),
        ("l3-4k", 4096, 3),
        ("l6-4k", 4096, 6),
        ("l12-4k", 4096, 12),
        ("l15-4k", 4096, 15),
    ],
)
def test_shipped_sae_reconstructs_new_sentences(gemma, short_name, d_sae, layer):
    sae = sl.load_sae(short_name, model=gemma)
    assert sae.cfg.d_sae == d_sae and sae.cfg.architecture() == "jumprelu"
    assert hook_layer(sae.cfg.metadata.hook_name) == layer
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


def test_a_shipped_sae_is_picked_by_width_and_layer(gemma):
    assert set(sl.shipped_saes()) == {"16k", "4k", "4k-6.4M", "l3-4k", "l6-4k", "l12-4k", "l15-4k"}
    assert sae_release_and_id(sl.load_sae("4k", layer=9))[1] == "gemma-3-270m-res-l9-4k"  # not the 6.4M-token one
    for layer in (3, 6, 9, 12, 15):
        sae = sl.load_sae("4k", layer=layer, model=gemma)
        assert sae.cfg.d_sae == 4096 and hook_layer(sae.cfg.metadata.hook_name) == layer
    with pytest.raises(sl.errors.NoDefaultSAEError, match="No shipped SAE of width 16k at layer 12"):
        sl.load_sae("16k", layer=12, model=gemma)


@pytest.mark.parametrize("short_name", ["4k", "16k", "4k-6.4M"])
def test_shipped_output_scores_are_read_not_recomputed(gemma, short_name, monkeypatch, tmp_path):
    from sas_lens.steering import output_scores as module

    monkeypatch.setenv("SAS_LENS_CACHE", str(tmp_path))  # no user cache to fall back on

    def no_compute(*args, **kwargs):
        raise AssertionError("the shipped scores did not match this model and SAE")

    monkeypatch.setattr(module, "_compute", no_compute)
    sae = sl.load_sae(short_name, model=gemma)
    scores = sl.output_scores(gemma, sae)
    assert len(scores) == sae.cfg.d_sae and 0.9 < scores["output_score"].max() <= 1.0
