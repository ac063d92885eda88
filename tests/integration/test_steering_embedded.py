"""SAS on the embedded model and shipped SAE: λ=0 is exact, and a sentiment vector moves sentiment."""

import pytest
import torch

import sas_lens as sl

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sentiment(gemma):
    sae = sl.load_sae(model=gemma)
    pairs = sl.load_pairs("demo:sentiment")
    return sae, sl.sas_vector(gemma, sae, pairs, tau=0.7), sl.dense_vector(gemma, pairs, layer=9)


def test_lambda_zero_reproduces_unsteered_logits(gemma, sentiment):
    sae, vec, _ = sentiment
    tokens = gemma.to_tokens("The weather this weekend was")
    clean = gemma(tokens)
    with sl.steer(gemma, {vec: 0.0}, sae=sae):
        steered = gemma(tokens)
    assert torch.equal(steered, clean), f"max |diff| = {(steered - clean).abs().max():.3g}"


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
