"""The support-size curve on the tiny model: the cut keeps the largest decoded latents; every row at matched KL."""

import math

import pytest
import torch

from sas_lens.analysis.support import support_curve, support_curve_figure, top_k_latents
from tests.helpers import always_raising, random_sae
from tests.unit.test_steering import literal_edit, residual, vector_for

PROMPTS = ["the movie was", "i love this story and the music"]


def test_top_k_keeps_the_latents_that_add_most_to_the_residual():
    sae = random_sae("jumprelu")
    vec = vector_for(sae, nnz=10)
    size = vec.values.abs() * sae.W_dec.detach()[vec.indices].norm(dim=-1)
    cut = top_k_latents(vec, sae, 3)
    assert sorted(cut.indices.tolist()) == sorted(vec.indices[size.topk(3).indices].tolist())
    assert torch.equal(cut.dense()[cut.indices], vec.dense()[cut.indices])
    assert len(top_k_latents(vec, sae, 50)) == 10 and "top 3" in cut.name
    with pytest.raises(ValueError):
        top_k_latents(vec, sae, 0)


def manual_sas_kl(model, sae, vec, lam, prompts):
    """Mean next-token KL(clean ‖ steered) over each prompt's positions, steered by editing cached residuals with
    the literal Algorithm 2 (no hook of the library)."""
    kls = []
    for prompt in prompts:
        tokens = model.to_tokens(prompt)
        with torch.no_grad():
            clean = model(tokens).log_softmax(-1)[0, 1:]
            edited = literal_edit(sae, residual(model, tokens), lam * vec.dense())
            steered = model(edited, start_at_layer=2).log_softmax(-1)[0, 1:]
        kls.append((clean.exp() * (clean - steered)).sum(-1))
    return float(torch.cat(kls).mean())


def test_every_cut_is_steered_at_the_target_kl(model):
    sae = random_sae("jumprelu")
    vec = vector_for(sae, nnz=12)
    table = support_curve(
        model,
        vec,
        lambda texts: float(sum(len(t) for t in texts)),
        PROMPTS,
        sae=sae,
        sizes=(2, 12, 40),
        target_kl=0.02,
        max_new_tokens=3,
        high=4096.0,
    )
    assert table["k"].tolist() == [0, 2, 2, 12, 12]  # 40 is the whole vector, as 12 is: tried once
    assert table.loc[0, "lam"] == 0.0
    assert table["lam"].notna().all()  # every cut reaches the target here: no row may be skipped
    for row in table.iloc[1:].itertuples():
        assert math.copysign(1.0, row.lam) == row.sign
        cut = top_k_latents(vec, sae, row.k)
        # the KL at the λ found, measured without the library's hooks or its KL (the search stops within 5%)
        assert manual_sas_kl(model, sae, cut, row.lam, PROMPTS) == pytest.approx(0.02, rel=0.06)
    assert len(support_curve_figure(table).data) == 2


def test_only_a_strength_not_reached_becomes_a_row_of_nan(model, monkeypatch):
    from sas_lens.analysis import support
    from sas_lens.errors import IncompatibleSAEError, StrengthNotReachedError

    sae = random_sae("jumprelu")
    vec = vector_for(sae, nnz=4)

    def run():
        return support_curve(
            model, vec, lambda texts: 0.0, PROMPTS, sae=sae, sizes=(2,), target_kl=0.02, max_new_tokens=2
        )

    monkeypatch.setattr(support, "strength_for_kl", always_raising(StrengthNotReachedError))
    assert run()["lam"].isna().sum() == 2
    monkeypatch.setattr(support, "strength_for_kl", always_raising(IncompatibleSAEError))
    with pytest.raises(IncompatibleSAEError, match="from the search"):  # rows of NaN before the fix
        run()
