"""SAS on the embedded model and shipped SAE: an edit σ cancels is exact, a raised one is the literal
formula, and a sentiment vector moves sentiment."""

import pytest
import torch

import sas_lens as sl

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sentiment(gemma):
    sae = sl.load_sae(model=gemma)
    pairs = sl.load_pairs("demo:sentiment")
    return sae, sl.sas_vector(gemma, sae, pairs, tau=0.7, selection="paper"), sl.dense_vector(gemma, pairs, layer=9)


@torch.no_grad()
def test_suppressing_silent_latents_is_exact_and_raising_them_is_the_literal_edit(gemma, sentiment):
    sae, vec, _ = sentiment
    tokens = gemma.to_tokens("The weather this weekend was")
    hook = vec.hook_name
    _, cache = gemma.run_with_cache(tokens, names_filter=hook)
    a = cache[hook]
    codes = sae.encode(a)
    silent = torch.nonzero((codes == 0).all(dim=0).all(dim=0)).squeeze(-1)[:8]
    probe = sl.SASVector(silent, torch.ones(len(silent)), sae.cfg.d_sae, vec.provenance)
    clean = gemma(tokens)
    with sl.steer(gemma, {probe: -4.0}, sae=sae):  # σ(f(a) − 4·v) = f(a) on latents that are off: δ = 0
        steered = gemma(tokens)
    assert torch.equal(steered, clean), f"max |diff| = {(steered - clean).abs().max():.3g}"
    # Raised, they change the logits by what Algorithm 2 as written gives: â(σ(f(a) + λv)) + a − â(f(a)).
    shift = 50.0 * probe.dense()
    edited = sae.decode((codes + shift).relu() * (codes + shift > sae.threshold)) + a - sae.decode(codes)
    expected = gemma(edited, start_at_layer=vec.layer + 1)
    with sl.steer(gemma, {probe: 50.0}, sae=sae):
        raised = gemma(tokens)
    # float32 on logits up to ~30: the sliced and full SAE products round differently (measured ~1e-4).
    torch.testing.assert_close(raised, expected, atol=2e-3, rtol=1e-4)
    assert (raised - clean).abs().max() > 0.1


def test_sentiment_vectors_shift_positive_minus_negative_logits(gemma, sentiment):
    sae, vec, dense = sentiment
    assert 0 < len(vec) < 200, f"support {len(vec)}"
    tokens = gemma.to_tokens("Honestly, I found the whole experience")
    good, bad = (gemma.to_single_token(w) for w in (" wonderful", " terrible"))

    def margin(steering):
        with sl.steer(gemma, steering, sae=sae), torch.no_grad():
            logits = gemma(tokens)[0, -1]
        return float(logits[good] - logits[bad])

    base = margin({})
    for vector, strength in ((vec, 4.0), (dense, 4.0)):
        up, down = margin({vector: strength}), margin({vector: -strength})
        assert down < base < up, f"{type(vector).__name__}: margin {down:.2f} / {base:.2f} / {up:.2f} at -λ/0/+λ"
