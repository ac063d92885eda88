"""Composition grids: every cell is the run it stands for; the summaries read the grid correctly."""

import statistics

import pytest
import torch

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
    grid = sl.composition_grid(
        model,
        sae,
        {sparse: [0.0, 20.0], dense_vec: [-3.0, 3.0]},
        {"length": mean_length, "ab": ABJudge(items)},
        PROMPTS,
        max_new_tokens=4,
        progress=False,
    )
    assert len(grid) == 2 * 2 * 2 and grid.attrs["vectors"] == [sparse.name, dense_vec.name]
    for (lam_a, lam_b), cells in grid.groupby(["lam_0", "lam_1"]):
        steering = {k: v for k, v in ((sparse, lam_a), (dense_vec, lam_b)) if v != 0}
        texts = generate(model, PROMPTS, steering=steering, sae=sae, max_new_tokens=4)
        score = dict(zip(cells["judge"], cells["score"]))
        assert score["length"] == mean_length(texts)
        assert score["ab"] == pytest.approx(
            float(ab_probabilities(model, items, steering=steering, sae=sae).mean()), abs=1e-6
        )
        assert cells["perplexity"].iloc[0] == pytest.approx(fluency(model, PROMPTS, texts)["perplexity"])
    by_ab = grid[grid["judge"] == "ab"]
    assert by_ab["score"].nunique() > 1  # the vectors did something


def test_independence_reads_each_judges_spread_along_each_axis():
    import pandas as pd

    rows = [
        {"lam_0": a, "lam_1": b, "judge": judge, "score": score}
        for a in (0.0, 1.0)
        for b in (0.0, 1.0)
        for judge, score in (("A", 2 * a + 0.1 * b), ("B", b))
    ]
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


def test_cross_talk_scores_each_vector_with_every_judge_and_relates_it_to_overlap(model):
    import pandas as pd

    from sas_lens.analysis.interference import (
        cross_talk,
        interference_figure,
        interference_table,
        overlap_predicts_interference,
    )
    from sas_lens.steering.vectors import SASVector

    sae = random_sae("jumprelu")
    a, b = vector_for(sae, 0, nnz=12), vector_for(sae, 1, nnz=12)
    vectors = {"a": a, "b": b}
    judges = {"a": mean_length, "b": lambda texts: sum("the" in t for t in texts) / len(texts)}
    talk = cross_talk(model, vectors, judges, PROMPTS, sae=sae, strengths={"a": 20.0, "b": -20.0}, max_new_tokens=4)
    assert len(talk) == 4
    unsteered = generate(model, PROMPTS, max_new_tokens=4)
    steered_a = generate(model, PROMPTS, steering={a: 20.0}, sae=sae, max_new_tokens=4)
    row = talk[(talk.steered == "a") & (talk.judged == "b")].iloc[0]
    assert row["shift"] == pytest.approx(judges["b"](steered_a) - judges["b"](unsteered))

    assert row["judge_sd"] == pytest.approx(statistics.pstdev([judges["b"]([t]) for t in unsteered]))
    # interference on hand-made shifts, in judge standard deviations: a → b is 1.0 / 2.0
    hand = pd.DataFrame(
        [
            {"steered": s, "judged": j, "shift": x, "judge_sd": sd}
            for s, j, x, sd in (
                ("a", "a", 1.0, 1.0),
                ("b", "b", 2.0, 2.0),
                ("a", "b", 1.0, 2.0),
                ("b", "a", -0.25, 1.0),
            )
        ]
    )
    u = SASVector(torch.tensor([0, 1]), torch.tensor([1.0, 1.0]), sae.cfg.d_sae, a.provenance)
    v = SASVector(torch.tensor([1, 2]), torch.tensor([1.0, 1.0]), sae.cfg.d_sae, a.provenance)
    table = interference_table(hand, {"a": u, "b": v}, sae).set_index(["steered", "judged"])
    assert table.loc[("a", "b"), "cross_talk"] == 0.5 and table.loc[("b", "a"), "cross_talk"] == -0.25
    assert table.loc[("a", "b"), "own_effect"] == 1.0
    assert table.loc[("a", "b"), "jaccard"] == pytest.approx(1 / 3)
    decoded = sae.W_dec.detach()[[0, 1]].sum(0), sae.W_dec.detach()[[1, 2]].sum(0)
    assert table.loc[("a", "b"), "cosine_decoded"] == pytest.approx(
        float(torch.nn.functional.cosine_similarity(*decoded, dim=0)), abs=1e-6
    )
    assert set(table["method"]) == {"sas"}
    assert overlap_predicts_interference(table.reset_index())["spearman"].isna().all()  # 2 pairs: no correlation
    assert len(interference_figure(table.reset_index()).data) == 1
    with pytest.raises(ValueError, match="No judge"):
        cross_talk(model, vectors, {"a": mean_length}, PROMPTS, sae=sae)


def test_overlap_predicts_interference_is_a_rank_correlation():
    import pandas as pd

    from sas_lens.analysis.interference import overlap_predicts_interference

    table = pd.DataFrame(
        {
            "method": "sas",
            "cross_talk": [0.1, -0.5, 0.9, 0.3],
            "jaccard": [0.0, 0.2, 0.4, 0.1],
            "cosine_decoded": [-0.9, 0.1, 0.2, 0.3],
        }
    )
    result = overlap_predicts_interference(table).set_index("measure")["spearman"]
    assert result["jaccard"] == pytest.approx(1.0)  # |cross-talk| ranks 1,3,4,2; Jaccard ranks the same
    assert result["cosine_decoded"] == pytest.approx(-0.8)  # |cos| ranks 4,1,2,3 against 1,3,4,2: 1 − 6·18/60
