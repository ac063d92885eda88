"""The TransformerLens and transformers backends generate the same greedy tokens, steered or not."""

import pytest

import sas_lens as sl

pytestmark = pytest.mark.integration

PROMPTS = ["I went to the cinema last night and the film", "My favourite season is", "The recipe needs"]


@pytest.fixture(scope="module")
def dense(gemma):
    return sl.dense_vector(gemma, sl.load_pairs("demo:sentiment"), layer=6)


@pytest.mark.parametrize("strength", [None, 6.0, -6.0])
def test_backends_agree(gemma, dense, strength):
    steering = {dense: strength} if strength is not None else None
    tl = sl.generate(gemma, PROMPTS, steering=steering, max_new_tokens=8, backend="tl")
    hf = sl.generate(gemma, PROMPTS, steering=steering, max_new_tokens=8, backend="hf")
    # Two implementations over a 262k vocabulary: float32 reassociation can flip a near-tie between the top
    # two tokens, after which texts diverge. Measured here: all three identical. Required: at least two of the
    # three continuations identical, and every one identical over its first three words.
    assert sum(a == b for a, b in zip(tl, hf)) >= 2, (tl, hf)
    assert all(a.split()[:3] == b.split()[:3] for a, b in zip(tl, hf)), (tl, hf)
    if strength is not None:
        assert tl != sl.generate(gemma, PROMPTS, max_new_tokens=8, backend="hf")


def test_the_hf_twin_is_not_one_of_the_models_parameters(gemma):
    from sas_lens.loading.models import model_fingerprint

    before = (model_fingerprint(gemma), len(list(gemma.parameters())))
    sl.generate(gemma, PROMPTS[:1], max_new_tokens=2, backend="hf")  # loads the twin
    assert (model_fingerprint(gemma), len(list(gemma.parameters()))) == before
