"""Diagnostics of Algorithm 1 on hand-built codes, and on a vector built end to end."""

import pytest
import torch

from sas_lens.steering.build_vectors import sas_from_codes, sas_vector
from sas_lens.steering.diagnostics import diagnose_codes
from tests.helpers import random_sae
from tests.unit.test_vectors import PAIRS

# 4 examples a side, 5 latents:
#   0 fires on every row of both sides        -> common (reached τ on both)
#   1 fires on 3/4 +, 1/4 −                   -> kept + at τ 0.5
#   2 fires on 0/4 +, 2/4 −                   -> kept − at τ 0.5
#   3 fires on 1/4 +, 1/4 −                   -> below τ
#   4 never fires                             -> not in the table
POSITIVE = torch.tensor(
    [[1.0, 2.0, 0.0, 1.0, 0.0], [1.0, 2.0, 0.0, 0.0, 0.0], [1.0, 2.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0, 0.0]]
)
NEGATIVE = torch.tensor(
    [[3.0, 4.0, 2.0, 0.0, 0.0], [3.0, 0.0, 2.0, 0.0, 0.0], [3.0, 0.0, 0.0, 5.0, 0.0], [3.0, 0.0, 0.0, 0.0, 0.0]]
)


def test_each_latent_is_recorded_with_its_fate():
    d = diagnose_codes(POSITIVE, NEGATIVE, tau=0.5)
    assert d.table.index.tolist() == [0, 1, 2, 3]
    assert d.table["status"].tolist() == ["common", "kept +", "kept −", "below τ"]
    assert d.table["freq_pos"].tolist() == [1.0, 0.75, 0.0, 0.25]
    assert d.table["freq_neg"].tolist() == [1.0, 0.25, 0.5, 0.25]
    assert d.table["value"].tolist() == [0.0, 1.5, -1.0, 0.0]  # means over all rows: 6/4, −4/4
    torch.testing.assert_close(
        torch.tensor(d.table["value"].tolist()), sas_from_codes(POSITIVE, NEGATIVE, tau=0.5)[:4]
    )  # the vector itself
    assert d.n_kept == 2 and d.n_rows == (4, 4)


def test_the_summary_says_why_a_vector_is_empty():
    d = diagnose_codes(POSITIVE, NEGATIVE, tau=0.25)  # now 1 and 3 reach τ on both sides as well
    assert d.n_kept == 1
    summary = d.summary()
    assert summary.startswith("1 latents (0 +, 1 −) from 4 + 4 rows; at τ = 0.25, ")
    assert "3 latents reached τ on the positive side and 4 on the negative side, 3 of them on both" in summary
    assert "largest frequency difference between the sides is 0.50" in summary
    assert "try a lower τ" in summary


def test_the_figure_draws_every_status_and_the_tau_lines():
    fig = diagnose_codes(POSITIVE, NEGATIVE, tau=0.5).figure()
    assert sorted(trace.name for trace in fig.data) == ["below τ (1)", "common (1)", "kept + (1)", "kept − (1)"]
    assert len(fig.layout.shapes) == 2


def test_a_built_vector_carries_its_diagnostics(model):
    sae = random_sae("jumprelu")
    vec = sas_vector(model, sae, PAIRS, tau=0.5, selection="paper")
    kept = vec.diagnostics.table[vec.diagnostics.table["status"].str.startswith("kept")]
    assert sorted(kept.index) == vec.indices.tolist()
    torch.testing.assert_close(torch.tensor(kept.sort_index()["value"].tolist()), vec.values)
    assert vec.diagnostics.summary() in vec._repr_html_()
    assert (2 * vec).diagnostics is None  # arithmetic makes a new vector: its codes are not known


@pytest.mark.parametrize("tau", [0.0, 1.0])
def test_diagnostics_agree_with_the_vector_at_the_ends_of_tau(tau):
    d = diagnose_codes(POSITIVE, NEGATIVE, tau=tau)
    vector = sas_from_codes(POSITIVE, NEGATIVE, tau=tau)
    assert d.n_kept == int((vector != 0).sum())


def test_gated_share_counts_edits_that_sigma_cancels(model):
    """Latents off everywhere: lowering them is always cancelled; raising them past θ never is."""
    from sas_lens.loading.activations import sae_codes
    from sas_lens.loading.prompts import tokenize_with_spans
    from sas_lens.steering.diagnostics import gated_share
    from sas_lens.steering.vectors import SASVector

    sae = random_sae("jumprelu")
    texts = ["the movie was good", "i love this story"]
    tokens, attention, spans = tokenize_with_spans(model.tokenizer, texts, [(0, len(t)) for t in texts])
    off = torch.nonzero((sae_codes(model, sae, tokens, attention)[spans] == 0).all(0)).squeeze(-1)[:4]
    assert len(off) >= 2
    vec = SASVector(off, torch.linspace(0.5, 2.0, len(off)), sae.cfg.d_sae)
    shares = gated_share(model, sae, vec, [-5.0, 0.0, 100.0], texts)
    assert shares[-5.0] == 1.0 and shares[0.0] == 1.0
    assert shares[100.0] == 0.0  # 100 × 0.5 is above every threshold of the random SAE
    by_norm = gated_share(model, sae, vec, [-5.0, 100.0], texts, by="norm")
    assert by_norm[-5.0] == 1.0  # nothing of the decoded vector reaches the residual
    assert by_norm[100.0] == pytest.approx(0.0, abs=1e-6)  # all of it does: σ(0 + λv) = λv
    assert gated_share(model, sae, vec.with_gate("none"), [-5.0], texts) == {-5.0: 0.0}  # σ is bypassed


def test_latents_a_rule_chose_are_listed_even_if_they_never_fire():
    from sas_lens.steering.diagnostics import diagnose_codes

    codes = torch.tensor([[1.0, 0.0, 0.0]])
    d = diagnose_codes(codes, codes, tau=0.5, chosen=torch.tensor([0.0, 0.0, -2.0]), rule="decompose (top 1)")
    assert d.n_kept == 1 and d.table.loc[2, "status"] == "kept −" and d.table.loc[2, "freq_pos"] == 0.0
    assert d.summary().startswith("1 latents (0 +, 1 −) chosen by the decompose (top 1) rule")


def test_a_tiny_contrast_vector_says_to_encode_every_token():
    from sas_lens.steering.diagnostics import diagnose_codes

    codes = torch.tensor([[1.0, 0.0, 0.0]])
    d = diagnose_codes(codes, 0 * codes, tau=0.5, chosen=torch.tensor([1.0, 0.0, 0.0]), rule="contrast (mean, top 16)")
    assert "Only 1 latents fire on either side at all" in d.summary() and "read='token_mean'" in d.summary()
