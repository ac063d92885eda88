"""Properties of the SAS edit on random tiny SAEs of every accepted architecture and normalisation (hypothesis).

Each example draws an SAE, a residual batch and a shift; the edit (``SparseEdit.delta``, what the hooks add)
must be the literal Algorithm 2 computed through SAELens's own encode and decode, change nothing where it
should change nothing, be linear and additive without σ, and not depend on the rest of the batch.
Tolerances: float32 matmuls over the support slice against the whole SAE round differently (~1e-6 relative
of residuals of order 10), hence 1e-4.
"""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sas_lens.steering.edits import SparseEdit, total_delta
from tests.helpers import ARCHITECTURES, D_MODEL, HOOK, random_sae
from tests.unit.test_steering import literal_edit, literal_ungated_edit

NORMALISATIONS = ("none", "constant_norm_rescale", "layer_norm")
TOLERANCE = dict(atol=1e-4, rtol=1e-4)
examples = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def cases(draw):
    architecture = draw(st.sampled_from(ARCHITECTURES))
    normalisation = draw(st.sampled_from(NORMALISATIONS))
    sae = random_sae(architecture, seed=draw(st.integers(0, 50)), normalize_activations=normalisation)
    if architecture == "topk" and draw(st.booleans()):
        sae.cfg.rescale_acts_by_decoder_norm = True
        with torch.no_grad():
            sae.W_dec.mul_(torch.linspace(0.5, 2.0, sae.cfg.d_sae)[:, None])
    generator = torch.Generator().manual_seed(draw(st.integers(0, 10_000)))
    a = torch.randn(2, draw(st.integers(1, 6)), D_MODEL, generator=generator) * 3
    support = torch.randperm(sae.cfg.d_sae, generator=generator)[: draw(st.integers(1, 8))]
    shift = torch.zeros(sae.cfg.d_sae)
    shift[support] = torch.randn(len(support), generator=generator) * draw(st.floats(0.1, 10.0))
    return sae, a, shift


class edit:  # noqa: N801 - reads as the edit it builds: edit(sae, shift).delta(a)
    """The SAS edit of ``shift``, with the engine's broadcasting (a constant edit is one d_model row)."""

    def __init__(self, sae, shift, gate="sae"):
        self.sparse = SparseEdit(HOOK, sae, shift, gate)

    def delta(self, a):
        with torch.no_grad():
            return total_delta([self.sparse], a)


@examples
@given(cases(), st.sampled_from(["sae", "none"]))
def test_the_edit_is_the_literal_algorithm_2(case, gate):
    sae, a, shift = case
    literal = literal_edit if gate == "sae" else literal_ungated_edit
    with torch.no_grad():
        torch.testing.assert_close(edit(sae, shift, gate).delta(a), literal(sae, a, shift) - a, **TOLERANCE)


@examples
@given(cases())
def test_lowering_latents_that_are_off_changes_nothing_exactly(case):
    sae, a, shift = case
    with torch.no_grad():
        off = (sae.encode(a) == 0).all(dim=0).all(dim=0)
    lowered = -shift.abs() * off  # only latents off on every token, only downwards
    if not lowered.any():
        return  # nothing of this shift is on a silent latent
    assert torch.equal(edit(sae, lowered).delta(a), torch.zeros_like(a))  # σ cancels it: exactly zero


@examples
@given(cases(), st.floats(-8.0, 8.0).filter(lambda lam: abs(lam) > 1e-3))
def test_without_sigma_the_edit_is_linear_in_lambda_and_additive_over_vectors(case, lam):
    sae, a, shift = case
    other = shift.roll(3)
    one = edit(sae, shift, "none").delta(a)
    torch.testing.assert_close(edit(sae, lam * shift, "none").delta(a), lam * one, **TOLERANCE)
    both = edit(sae, shift + other, "none").delta(a)
    torch.testing.assert_close(both, one + edit(sae, other, "none").delta(a), **TOLERANCE)


@examples
@given(cases(), st.sampled_from(["sae", "none"]))
def test_a_row_edited_in_a_batch_equals_it_edited_alone(case, gate):
    sae, a, shift = case
    louder = torch.cat([a, 50 * a.flip(0)])  # other, louder rows beside it
    together = edit(sae, shift, gate).delta(louder)[:1]
    alone = edit(sae, shift, gate).delta(a[:1])
    torch.testing.assert_close(together, alone, **TOLERANCE)


def test_the_cases_cover_every_architecture():
    assert set(ARCHITECTURES) == {"jumprelu", "standard", "topk"}  # batchtopk is refused (test_steering)
    with pytest.raises(AssertionError):  # the literal check can fail: a wrong edit is caught
        sae = random_sae("jumprelu")
        a = torch.randn(1, 3, D_MODEL) * 3
        shift = torch.zeros(sae.cfg.d_sae)
        shift[:4] = 5.0
        torch.testing.assert_close(edit(sae, 2 * shift).delta(a), literal_edit(sae, a, shift) - a, **TOLERANCE)
