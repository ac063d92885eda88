"""Composition grids: every cell is the run it stands for; the summaries read the grid correctly."""

import pytest

import sas_lens as sl
from sas_lens.analysis.composition import (
    ABJudge,
    composition_heatmaps,
    independence,
    independence_curves,
)
from sas_lens.steering.fluency import fluency
from sas_lens.steering.generation import generate
from sas_lens.steering.scoring import ab_probabilities
from tests.helpers import random_sae
from tests.unit.test_conditions import dense
from tests.unit.test_scoring import ITEMS
from tests.unit.test_steering import vector_for

PROMPTS = ["the movie was", "i love the"]


def mean_length(texts):
    return sum(len(t) for t in texts) / len(texts)


def test_a_grid_equals_the_individual_runs_it_is_made_of(model):
    sae = random_sae("jumprelu")
    sparse, dense_vec = vector_for(sae, nnz=12), dense()
    items = ITEMS
    grid = sl.composition_grid(model, sae, {sparse: [0.0, 20.0], dense_vec: [-3.0, 3.0]},
                               {"length": mean_length, "ab": ABJudge(items)}, PROMPTS, max_new_tokens=4,
                               progress=False)
    assert len(grid) == 2 * 2 * 2 and grid.attrs["vectors"] == [sparse.name, dense_vec.name]
    for (lam_a, lam_b), cells in grid.groupby(["lam_0", "lam_1"]):
        steering = {k: v for k, v in ((sparse, lam_a), (dense_vec, lam_b)) if v != 0}
        texts = generate(model, PROMPTS, steering=steering, sae=sae, max_new_tokens=4)
        score = dict(zip(cells["judge"], cells["score"]))
        assert score["length"] == mean_length(texts)
        assert score["ab"] == pytest.approx(float(ab_probabilities(model, items, steering=steering, sae=sae).mean()),
                                            abs=1e-6)
        assert cells["perplexity"].iloc[0] == pytest.approx(fluency(model, PROMPTS, texts)["perplexity"])
    by_ab = grid[grid["judge"] == "ab"]
    assert by_ab["score"].nunique() > 1  # the vectors did something


def test_independence_reads_each_judges_spread_along_each_axis():
    import pandas as pd

    rows = [{"lam_0": a, "lam_1": b, "judge": judge, "score": score}
            for a in (0.0, 1.0) for b in (0.0, 1.0)
            for judge, score in (("A", 2 * a + 0.1 * b), ("B", b))]
    grid = pd.DataFrame(rows)
    grid.attrs["vectors"] = ["va", "vb"]
    table = independence(grid).set_index("judge")
    assert table.loc["A", "spread along va"] == pytest.approx(2.0)
    assert table.loc["A", "spread along vb"] == pytest.approx(0.1)
    assert table.loc["B", "spread along va"] == 0.0 and table.loc["B", "spread along vb"] == 1.0
    assert len(composition_heatmaps(grid)) == 2
    assert len(independence_curves(grid, "A").data) == 2  # one line per λ of the other vector
    with pytest.raises(ValueError, match="No judge 'C'"):
        independence_curves(grid, "C")


def test_bad_grids_are_refused(model):
    sae = random_sae("jumprelu")
    vec = vector_for(sae)
    with pytest.raises(ValueError, match="two vectors"):
        sl.composition_grid(model, sae, {vec: [1.0]}, {"l": mean_length}, PROMPTS)
    with pytest.raises(ValueError, match="finite"):
        sl.composition_grid(model, sae, {vec: [float("nan")], dense(): [1.0]}, {"l": mean_length}, PROMPTS)
    with pytest.raises(ValueError, match="need prompts"):
        sl.composition_grid(model, sae, {vec: [1.0], dense(): [1.0]}, {"l": mean_length})
