"""The evaluation harness on the tiny model: hand-checked measurements, the grid, and resuming."""

import json
import math

import pytest
import torch

import sas_lens as sl
from sas_lens.errors import DataError
from sas_lens.evaluation import runner as evaluation
from sas_lens.evaluation.behaviour import (
    ab_cell,
    instruction_for,
    mean_ci,
    with_instruction,
)
from sas_lens.evaluation.capability import (
    accuracy,
    load_capability_items,
)
from sas_lens.evaluation.config import EvalConfig, load_config
from sas_lens.evaluation.open_ended import choice_exemplars, choice_texts
from sas_lens.evaluation.plan import plan_cells
from sas_lens.evaluation.resources import EvalResources
from sas_lens.evaluation.runner import run_evaluation
from sas_lens.steering.fluency import distinct_n, fluency, text_perplexity
from tests.helpers import always_raising, random_sae
from tests.unit.test_scoring import ITEMS, by_hand


def ab(question, match, other):
    return {
        "question": question,
        "answer_matching_behavior": f"({match})",
        "answer_not_matching_behavior": f"({other})",
    }


@pytest.fixture
def caa_dir(tmp_path):
    """A CAA-layout folder for one behaviour, 'tiny', in the tiny model's vocabulary."""
    root = tmp_path / "caa"
    train = [
        ab("is the movie good ?\n(A) yes good\n(B) no bad", "A", "B"),
        ab("was the film fun ?\n(A) no boring\n(B) yes fun", "B", "A"),
        ab("i love the story ?\n(A) yes love\n(B) no hate", "A", "B"),
        ab("the music was bad ?\n(A) yes awful\n(B) no great", "B", "A"),
    ]
    test = [
        ab("was the ending happy ?\n(A) yes happy\n(B) no sad", "A", "B"),
        ab("the actor was great ?\n(A) no bad\n(B) yes good", "B", "A"),
        ab("it is fun ?\n(A) yes fun\n(B) no boring", "A", "B"),
    ]
    capability = [
        {"prompt": "the price rose ?\n(A) yes\n(B) no", "correct": "(A)", "incorrect": "(B)"},
        {"prompt": "the team lost ?\n(A) no\n(B) yes", "correct": "(B)", "incorrect": "(A)"},
    ]
    files = {
        "generate/tiny/generate_dataset.json": train,
        "test/tiny/test_dataset_ab.json": test,
        "test/tiny/test_dataset_open_ended.json": [{"question": "was the movie good ?"}, {"question": "i love it ?"}],
        "test/mmlu/mmlu.json": capability,
        "test/truthfulqa/truthful_qa.json": capability,
    }
    for name, records in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(json.dumps(records))
    (root / "heldout.txt").write_text(" ".join(["the movie was good and the story was fun ."] * 120))
    return root


def test_mean_ci_by_hand():
    mean, low, high = mean_ci(torch.tensor([0.2, 0.4, 0.6]))
    half = 1.96 * 0.2 / math.sqrt(3)  # sample sd of (0.2, 0.4, 0.6) is 0.2
    assert (mean, low, high) == pytest.approx((0.4, 0.4 - half, 0.4 + half))


def test_prompting_cell_is_the_instructed_question_by_hand(model):
    p = ab_cell(model, ITEMS, "prompting", None, 1.0, behaviour="caution")
    instruction = instruction_for("caution", 1.0)
    expected = [by_hand(model, item) for item in with_instruction(ITEMS, instruction)]
    torch.testing.assert_close(p, torch.tensor(expected), atol=1e-5, rtol=1e-4)
    plain = ab_cell(model, ITEMS, "prompting", None, 0.0)
    torch.testing.assert_close(plain, torch.tensor([by_hand(model, item) for item in ITEMS]), atol=1e-5, rtol=1e-4)
    assert instruction_for("caution", -2.0) != instruction


def test_dense_cell_equals_steering_by_hand(model):
    vector = sl.dense_vector(model, ITEMS, layer=1)
    with sl.steer(model, {vector: 3.0}):
        expected = torch.tensor([by_hand(model, item) for item in ITEMS])
    torch.testing.assert_close(ab_cell(model, ITEMS, "dense", vector, 3.0), expected, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="finite"):
        ab_cell(model, ITEMS, "dense", vector, float("nan"))


def test_capability_accuracy_by_hand(model, caa_dir):
    items = load_capability_items(caa_dir / "test/mmlu/mmlu.json")
    assert [(i.matching, i.not_matching) for i in items] == [("A", "B"), ("B", "A")]
    p = torch.tensor([by_hand(model, item) for item in items])
    figures = accuracy(model, items)
    assert figures["accuracy"] == pytest.approx(float((p > 0.5).double().mean()))
    assert figures["p_correct"] == pytest.approx(float(p.mean()), abs=1e-5)
    (caa_dir / "bad.json").write_text('[{"prompt": "x"}]')
    with pytest.raises(DataError, match="item 1: missing"):
        load_capability_items(caa_dir / "bad.json")


def test_text_perplexity_by_hand(model):
    logits = model(model.to_tokens("the movie was good"))[0].log_softmax(-1)
    ids = model.to_tokens("the movie was good")[0]
    expected = math.exp(-float(logits[-2, ids[-1]].detach() + logits[-3, ids[-2]].detach()) / 2)
    assert text_perplexity(model, "the movie", " was good") == pytest.approx(expected, rel=1e-4)


def test_fluency_summarises_every_caller_the_same_way(model):
    """Open-ended answers took the NaN-median, topic continuations the finite median: now one rule."""
    prompts, texts = ["the movie", "the movie", "i"], [" was good", "", " love it"]
    figures = fluency(model, prompts, texts)
    finite = sorted(text_perplexity(model, p, t) for p, t in zip(prompts, texts) if t)
    assert figures["perplexity"] == pytest.approx(sum(finite) / 2)  # the empty text has none: median of two
    assert figures["distinct_2"] == pytest.approx((1.0 + 1.0 + 1.0) / 3)


def test_open_ended_helpers_by_hand():
    item = sl.load_pairs([ab("is it good ?\n(A) yes it is\n(B) no", "B", "A")])[0]
    assert choice_texts(item) == {"A": "yes it is", "B": "no"}
    assert choice_exemplars(sl.load_pairs([ab("q ?\n(A) yes it is\n(B) no", "B", "A")])) == (["no"], ["yes it is"])
    assert distinct_n("a b a b", 2) == pytest.approx(2 / 3)
    assert distinct_n("a", 2) == 1.0


def config(caa_dir, **overrides):
    settings = dict(
        behaviours=("tiny",),
        data_dir=str(caa_dir),
        layers=(1, 2),
        saes={"1": "tiny-sae"},
        lams={"sas": (-2.0, 0.0, 2.0), "dense": (-2.0, 0.0, 2.0)},
        cost_lams={"sas": (2.0,), "dense": (2.0,)},
        heldout_text=str(caa_dir / "heldout.txt"),
        perplexity_tokens=300,
        max_new_tokens=3,
        tau=0.5,
    )
    return EvalConfig(**{**settings, **overrides})


def test_the_grid_skips_sas_without_an_sae_and_prompting_off_the_main_layer(caa_dir):
    cells = plan_cells(config(caa_dir))
    assert ("ab", "tiny", 2, "dense", 2.0) in cells
    assert not any(c[2] == 2 and c[3] in ("sas", "prompting") for c in cells)
    assert not any(c[0] != "ab" and c[2] == 2 for c in cells)  # costs at the main layer only
    assert ("capability", "tiny", 1, "sas", 0.0) in cells  # λ = 0 is always measured for costs


@pytest.fixture
def tiny_resources(monkeypatch):
    sae = random_sae("jumprelu")
    monkeypatch.setattr("sas_lens.loading.saes.load_sae", lambda name=None, **kwargs: sae)
    return sae


def test_an_interrupted_run_resumes_without_redoing_finished_cells(
    model, caa_dir, tmp_path, monkeypatch, tiny_resources
):
    cfg = config(caa_dir)
    straight = run_evaluation(cfg, tmp_path / "straight", model=model, progress=False)
    assert {r["kind"] for r in straight} == {"ab", "capability", "open"}

    calls = []
    real_ab = evaluation._RUNNERS["ab"]

    def interrupting(res, *cell):
        calls.append(cell)
        if len(calls) == 4 and not resuming:
            raise KeyboardInterrupt
        return real_ab(res, *cell)

    resuming = False

    monkeypatch.setitem(evaluation._RUNNERS, "ab", interrupting)
    with pytest.raises(KeyboardInterrupt):
        run_evaluation(cfg, tmp_path / "resumed", model=model, progress=False)
    finished = [json.loads(line) for line in (tmp_path / "resumed" / "cells.jsonl").read_text().splitlines()]
    measured = lambda records: sum(r["kind"] == "ab" and "measured_in" not in r for r in records)  # noqa: E731
    assert measured(finished) == 3
    calls.clear()
    resuming = True
    resumed = run_evaluation(cfg, tmp_path / "resumed", model=model, progress=False)
    assert len(calls) == measured(straight) - 3  # the 3 finished cells were not redone
    strip = lambda records: [{k: v for k, v in r.items() if k != "seconds"} for r in records]  # noqa: E731
    assert strip(resumed) == strip(straight)
    for name in ("results.json", "ab.csv", "capability.csv", "open.csv", "summary.csv"):
        assert (tmp_path / "resumed" / name).exists()


def test_unsteered_cells_are_measured_once_per_kind_and_behaviour(model, caa_dir, tmp_path, tiny_resources):
    records = run_evaluation(config(caa_dir), tmp_path / "run", model=model, progress=False)
    for kind in ("ab", "capability", "open"):
        unsteered = [r for r in records if r["kind"] == kind and r["lam"] == 0]
        assert len({(r["method"], r["layer"]) for r in unsteered}) > 1
        assert sum("measured_in" not in r for r in unsteered) == 1
        source = next(r for r in unsteered if "measured_in" not in r)
        figure = "mean" if kind == "ab" else "mmlu_accuracy" if kind == "capability" else "behaviour_score"
        assert all(r[figure] == source[figure] for r in unsteered)
    # the shared figure is what the unsteered model gives
    plain = ab_cell(model, sl.load_pairs(caa_dir / "test/tiny/test_dataset_ab.json"), "prompting", None, 0.0)
    ab_unsteered = next(r for r in records if r["kind"] == "ab" and r["lam"] == 0 and r["method"] == "dense")
    assert ab_unsteered["mean"] == pytest.approx(float(plain.mean()))


def test_config_files_are_read_and_checked(tmp_path, caa_dir):
    path = tmp_path / "eval.toml"
    path.write_text(f'behaviours = ["tiny"]\ndata_dir = "{caa_dir}"\nlayers = [1]\n[lams]\ndense = [-1, 0, 1]\n')
    cfg = load_config(path)
    assert cfg.layers == (1,) and cfg.grid("dense") == (-1.0, 0.0, 1.0)
    path.write_text('behaviours = ["tiny"]\ndata_dir = "x"\nlamdas = 3\n')
    with pytest.raises(DataError, match="unknown settings \\['lamdas'\\]"):
        load_config(path)
    with pytest.raises(ValueError, match="finite"):
        EvalConfig(behaviours=("tiny",), data_dir="x", lams={"sas": (float("inf"),)})
    with pytest.raises(ValueError, match="Unknown methods"):
        EvalConfig(behaviours=("tiny",), data_dir="x", methods=("caa",))


def test_the_summary_reads_the_shift_at_each_cost_lambda():
    from sas_lens.evaluation.results import summary_table

    ab_cells = [
        {"kind": "ab", "behaviour": "b", "layer": 9, "method": "dense", "lam": lam, "mean": 0.5 + lam / 10}
        for lam in (-4.0, -2.0, 0.0, 2.0, 4.0)
    ]
    costs = [
        {
            "kind": "capability",
            "behaviour": "b",
            "layer": 9,
            "method": "dense",
            "lam": lam,
            "mmlu_accuracy": 0.3 - abs(lam) / 100,
            "perplexity": 10.0,
        }
        for lam in (-2.0, 0.0, 2.0)
    ]
    row = summary_table(ab_cells + costs).iloc[0]
    assert row["k"] == 2.0
    assert row["shift"] == pytest.approx(0.4)
    assert row["mmlu(+k)"] == pytest.approx(0.28) and row["mmlu(0)"] == pytest.approx(0.3)
    more_costs = costs + [dict(costs[0], lam=lam, mmlu_accuracy=0.1) for lam in (-4.0, 4.0)]
    rows = summary_table(ab_cells + more_costs)
    assert list(rows["k"]) == [2.0, 4.0]  # a row per cost λ
    assert rows.iloc[1]["shift"] == pytest.approx(0.8) and rows.iloc[1]["mmlu(-k)"] == pytest.approx(0.1)
    assert summary_table(ab_cells).iloc[0]["k"] == 4.0  # no costs: the grid's largest λ
    only_unsteered = [dict(ab_cells[2], method="sas")]  # a matched-KL run's grid: λ = 0 alone
    assert list(summary_table(ab_cells + only_unsteered)["method"]) == ["dense"]


def test_the_matched_cost_summary_takes_the_strongest_shift_within_the_perplexity_budget():
    from sas_lens.evaluation.results import matched_cost_table

    p = {-8.0: 0.1, -4.0: 0.3, 0.0: 0.5, 4.0: 0.6, 8.0: 0.9}
    ppl = {-8.0: 14.0, -4.0: 11.0, 0.0: 10.0, 4.0: 12.0, 8.0: 16.0}
    cells = [
        {"kind": "ab", "behaviour": "b", "layer": 9, "method": "sas", "lam": lam, "mean": m} for lam, m in p.items()
    ]
    cells += [
        {"kind": "capability", "behaviour": "b", "layer": 9, "method": "sas", "lam": lam, "perplexity": x}
        for lam, x in ppl.items()
    ]
    row = matched_cost_table(cells, budget=1.5).iloc[0]
    assert (row["lam(+)"], row["lam(-)"]) == (4.0, -8.0)  # +8 costs 1.6×: over budget; −8 costs 1.4×
    assert row["shift(+)"] == pytest.approx(0.1) and row["shift(-)"] == pytest.approx(-0.4)
    assert matched_cost_table(cells, budget=1.7).iloc[0]["lam(+)"] == 8.0


def test_sas_settings_reach_the_vectors_the_harness_builds(model, caa_dir, tmp_path, tiny_resources):
    cfg = config(caa_dir, sas={"selection": "contrast", "top_k": 3})
    resources = EvalResources(cfg, tmp_path, model=model)
    vector = resources.vector("tiny", 1, "sas")
    assert len(vector) == 3 and vector.metadata["extraction"]["selection"] == "contrast"
    with pytest.raises(ValueError, match="Unknown sas settings"):
        EvalConfig(behaviours=("tiny",), data_dir="x", sas={"topk": 3})
    with pytest.raises(ValueError, match="Unknown dense settings.*choose from \\['fit'\\]"):
        EvalConfig(behaviours=("tiny",), data_dir="x", dense={"fits": "preference"})


def test_every_rule_of_the_efficiency_curve_can_be_asked_of_the_harness(model, caa_dir, tmp_path, tiny_resources):
    # the filters and the fit reach the vectors as sas_vector / dense_vector would build them from the same pairs
    cfg = config(
        caa_dir,
        sas={"selection": "contrast", "top_k": 3, "max_density": 0.9, "drop_bos": True, "fit": "preference"},
        dense={"fit": "preference"},
        tau_sweep=(0.3,),
    )
    resources = EvalResources(cfg, tmp_path, model=model)
    sas, dense = resources.vector("tiny", 1, "sas"), resources.vector("tiny", 1, "dense")
    train, sae = resources.pairs("tiny", "train"), resources.sae(1)
    expected_sas = sl.sas_vector(
        model, sae, train, selection="contrast", top_k=3, max_density=0.9, drop_bos=True, fit="preference", tau=0.5
    )
    expected_dense = sl.dense_vector(model, train, layer=1, fit="preference")
    assert sas.metadata["extraction"]["filters"]["max_density"] == 0.9 and "fit" in sas.metadata["extraction"]
    assert "fit" in dense.metadata["extraction"]
    # same pairs, seed and code path; float sums may be ordered differently across batchings, hence a tolerance
    torch.testing.assert_close(sas.dense(), expected_sas.dense(), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(dense.vector, expected_dense.vector, rtol=1e-4, atol=1e-5)
    # the τ sweep stays Algorithm 1 exactly: neither the filters nor the fit (a σ-gated vector cannot be fitted)
    paper = resources.vector("tiny", 1, "sas@tau=0.3").metadata["extraction"]
    assert paper["selection"] == "paper" and "fit" not in paper and "filters" not in paper


def test_tau_and_data_size_sweeps_plan_their_cells_and_build_their_vectors(model, caa_dir, tmp_path, tiny_resources):
    cfg = config(caa_dir, tau_sweep=(0.3,), data_sizes=(3,), sas={"selection": "contrast", "top_k": 2})
    cells = plan_cells(cfg)
    assert {c[3] for c in cells if "@" in c[3]} == {"sas@tau=0.3", "sas@n=3", "dense@n=3"}
    assert all(c[0] == "ab" and c[2] == 1 for c in cells if "@" in c[3])  # A/B at the main layer only
    resources = EvalResources(cfg, tmp_path, model=model)
    paper = resources.vector("tiny", 1, "sas@tau=0.3")
    extraction = paper.metadata["extraction"]
    assert paper.gate == "sae" and extraction["selection"] == "paper" and extraction["tau"] == 0.3  # Algorithm 1
    few = resources.vector("tiny", 1, "sas@n=3")
    assert few.metadata["extraction"]["pairs"]["n"] == 3 and len(few) == 2  # the config's rule, 3 pairs
    dense = resources.vector("tiny", 1, "dense@n=3")
    train = resources.pairs("tiny", "train")
    expected = sl.dense_vector(model, train.split(3)[0], layer=1)
    torch.testing.assert_close(dense.vector, expected.vector)
    every = EvalResources(config(caa_dir, data_sizes=(4,)), tmp_path / "every", model=model)
    assert every.vector("tiny", 1, "dense@n=4").metadata["extraction"]["pairs"]["n"] == 4  # all 4 training pairs
    with pytest.raises(DataError, match="data_sizes asks for 999 pairs"):
        EvalResources(config(caa_dir, data_sizes=(999,)), tmp_path / "x", model=model).vector("tiny", 1, "dense@n=999")


def test_the_model_and_release_sae_ids_come_from_the_config(model, caa_dir, tmp_path, monkeypatch):
    sae, asked = random_sae("jumprelu"), []
    monkeypatch.setattr("sas_lens.loading.models.load_model", lambda name=None, **kw: asked.append((name, kw)) or model)
    monkeypatch.setattr(
        "sas_lens.loading.saes.load_sae", lambda release=None, sae_id=None, **kw: asked.append((release, sae_id)) or sae
    )
    cfg = config(
        caa_dir,
        model="gemma-2-2b",
        device="cuda",
        layers=(1,),
        saes={"1": ["gemma-scope-x", "layer_1/16k"]},
        methods=("sas",),
        cost_lams={"sas": ()},
        lams={"sas": (2.0,)},
    )
    EvalResources(cfg, tmp_path).sae(1)
    assert asked == [("gemma-2-2b", {"device": "cuda"}), ("gemma-scope-x", "layer_1/16k")]


@pytest.mark.parametrize(
    "name",
    [
        "caa_eval.toml",
        "topic_eval.toml",
        "layers_eval.toml",
        "sweeps_eval.toml",
        "matched_kl_eval.toml",
        "matched_kl_attribution_4k_eval.toml",
    ],
)
def test_the_shipped_configs_load(name):
    from pathlib import Path

    cfg = load_config(Path(__file__).resolve().parents[2] / "configs" / name)
    assert plan_cells(cfg)


@pytest.fixture
def sae_per_layer(monkeypatch):
    """A random SAE at each of the tiny model's layers 1 and 2, named "sae-1" and "sae-2" in configs."""
    saes = {f"sae-{layer}": random_sae("jumprelu", hook_name=f"blocks.{layer}.hook_resid_post") for layer in (1, 2)}
    monkeypatch.setattr("sas_lens.loading.saes.load_sae", lambda name=None, **kwargs: saes[name])
    return saes


def test_the_delta_ablation_measures_sas_without_delta_at_every_layer_with_an_sae(
    model, caa_dir, tmp_path, sae_per_layer
):
    from sas_lens.evaluation.results import layer_table
    from sas_lens.steering.scoring import ab_probabilities

    cfg = config(
        caa_dir,
        saes={"1": "sae-1", "2": "sae-2"},
        delta_ablation=True,
        methods=("sas", "dense"),
        sas={"selection": "contrast", "top_k": 3},
        open_ended=0,
    )
    cells = plan_cells(cfg)
    for layer in (1, 2):
        assert ("ab", "tiny", layer, "sas@delta=0", 2.0) in cells
        assert ("capability", "tiny", layer, "sas@delta=0", 0.0) in cells
    assert ("capability", "tiny", 2, "sas", 2.0) in cells  # SAS's own costs off the main layer, to compare
    assert not any(c[0] == "open" for c in cells)  # open_ended = 0: no open-ended cells
    records = run_evaluation(cfg, tmp_path / "run", model=model, progress=False)
    at = {(r["kind"], r["layer"], r["method"], r["lam"]): r for r in records}
    spliced = at[("ab", 2, "sas@delta=0", 0.0)]
    assert "measured_in" not in spliced  # not the unsteered cell: the SAE replaces the residual
    items = sl.load_pairs(caa_dir / "test/tiny/test_dataset_ab.json")
    model.add_sae(sae_per_layer["sae-2"])  # SAELens's own splice, as the reference
    try:
        by_saelens = float(ab_probabilities(model, items).mean())
    finally:
        model.reset_saes()
    assert spliced["mean"] == pytest.approx(by_saelens, abs=1e-5)
    assert spliced["mean"] != pytest.approx(at[("ab", 2, "sas", 0.0)]["mean"], abs=1e-4)
    assert at[("capability", 2, "sas@delta=0", 0.0)]["perplexity"] != at[("capability", 2, "sas", 0.0)]["perplexity"]
    table = layer_table(records)
    assert set(table["method"]) == {"sas", "sas@delta=0", "dense"}
    row = table[(table["method"] == "sas@delta=0") & (table["layer"] == 2)].iloc[0]
    assert row["p(0)"] == spliced["mean"] and row["ppl(0)"] is not None
    assert table.groupby(["behaviour", "method"])["best"].sum().eq(1).all()
    assert (tmp_path / "run" / "layers.csv").exists()


def test_strength_unit_kl_steers_each_vector_at_multiples_of_its_own_kl_strength(
    model, caa_dir, tmp_path, sae_per_layer
):
    from sas_lens.loading.prompts import format_ab
    from sas_lens.steering.scoring import ab_probabilities
    from sas_lens.steering.strength import next_token_kl

    cfg = config(
        caa_dir,
        layers=(1,),
        saes={"1": "sae-1"},
        strength_unit="kl",
        methods=("sas", "dense"),
        sas={"selection": "contrast", "top_k": 3},
        lams={"sas": (1.0,), "dense": (1.0,)},
        cost_lams={},
        open_ended=0,
        mmlu=1,
        truthfulqa=1,
    )
    records = run_evaluation(cfg, tmp_path / "run", model=model, progress=False)
    units = json.loads((tmp_path / "run" / "units.json").read_text())
    items = sl.load_pairs(caa_dir / "test/tiny/test_dataset_ab.json")
    prompts = [text[: span[0]] for text, span in (format_ab(item, "A") for item in items)]
    resources = EvalResources(cfg, tmp_path / "run", model=model)
    for method, sae in (("sas", sae_per_layer["sae-1"]), ("dense", None)):
        unit = units[f"tiny|L1|{method}"]
        vector = resources.vector("tiny", 1, method)
        assert next_token_kl(model, {vector: unit}, prompts[:8], sae=sae) == pytest.approx(0.1, rel=0.11)
        cell = next(r for r in records if r["kind"] == "ab" and r["method"] == method and r["lam"] == 1.0)
        assert cell["lam_value"] == unit
        expected = float(ab_probabilities(model, items, steering={vector: unit}, sae=sae).mean())
        assert cell["mean"] == pytest.approx(expected, abs=1e-6)
    with pytest.raises(ValueError, match="strength_unit"):
        config(caa_dir, strength_unit="nats")


def test_matched_kl_cells_steer_each_sign_at_the_lambda_whose_kl_is_the_target(model, caa_dir, tmp_path, sae_per_layer):
    from sas_lens.evaluation.results import matched_kl_table
    from sas_lens.loading.prompts import format_ab
    from sas_lens.steering.scoring import ab_probabilities
    from sas_lens.steering.strength import next_token_kl

    cfg = config(
        caa_dir,
        layers=(1,),
        saes={"1": "sae-1"},
        methods=("sas", "dense"),
        sas={"selection": "contrast", "top_k": 3},
        lams={"sas": (1.0,), "dense": (1.0,)},  # no λ = 0: the plan adds the unsteered cell the shifts need
        cost_lams={},
        open_ended=0,
        mmlu=1,
        truthfulqa=1,
        kl_targets=(0.2, 0.05),
    )
    cells = plan_cells(cfg)
    assert ("ab", "tiny", 1, "sas", 0.0) in cells
    assert {c[3:] for c in cells if c[0] == "ab_kl"} == {
        (m, s * kl) for m in ("sas", "dense") for kl in (0.05, 0.2) for s in (1, -1)
    }
    records = run_evaluation(cfg, tmp_path / "run", model=model, progress=False)
    items = sl.load_pairs(caa_dir / "test/tiny/test_dataset_ab.json")
    prompts = [text[: span[0]] for text, span in (format_ab(item, "A") for item in items)][:8]
    resources = EvalResources(cfg, tmp_path / "run", model=model)
    saes = {"sas": sae_per_layer["sae-1"], "dense": None}
    by_hand = {}
    for cell in (r for r in records if r["kind"] == "ab_kl"):
        vector, sae, lam = resources.vector("tiny", 1, cell["method"]), saes[cell["method"]], cell["lam_value"]
        assert lam * cell["lam"] > 0  # the sign of the target
        assert next_token_kl(model, {vector: lam}, prompts, sae=sae) == pytest.approx(abs(cell["lam"]), rel=0.06)
        by_hand[cell["method"], cell["lam"]] = float(
            ab_probabilities(model, items, steering={vector: lam}, sae=sae).mean()
        )
        assert cell["mean"] == pytest.approx(by_hand[cell["method"], cell["lam"]], abs=1e-6)
    unsteered = float(ab_probabilities(model, items).mean())

    table = matched_kl_table(records)
    assert len(table) == 4 and list(table["kl"]) == [0.05, 0.2, 0.05, 0.2]  # per method, KL ascending
    for row in table.to_dict("records"):
        shifts = [by_hand[row["method"], s * row["kl"]] - unsteered for s in (1, -1)]
        assert (row["shift(+)"], row["shift(-)"]) == pytest.approx(shifts, abs=1e-6)
        works = all(
            by_hand[row["method"], kl] - unsteered > 0 and by_hand[row["method"], -kl] - unsteered < 0
            for kl in (0.05, 0.2)
        )
        assert row["works"] == works
    assert (tmp_path / "run" / "matched_kl.csv").exists()
    with pytest.raises(ValueError, match="kl_targets"):
        config(caa_dir, kl_targets=(0.0,))


def test_a_matched_kl_cell_that_no_lambda_reaches_is_left_unmeasured(
    model, caa_dir, tmp_path, sae_per_layer, monkeypatch
):
    from sas_lens.errors import StrengthNotReachedError
    from sas_lens.evaluation.results import matched_kl_table
    from sas_lens.evaluation.runner import run_cell
    from sas_lens.steering import strength

    cfg = config(caa_dir, layers=(1,), saes={"1": "sae-1"}, methods=("dense",), open_ended=0, kl_targets=(0.1,))
    monkeypatch.setattr(strength, "strength_for_kl", always_raising(StrengthNotReachedError))
    resources = EvalResources(cfg, tmp_path / "weak", model=model)
    figures = run_cell(resources, ("ab_kl", "tiny", 1, "dense", 0.1))
    assert figures["lam_value"] is None and figures["mean"] is None
    records = [
        {"kind": "ab", "behaviour": "tiny", "layer": 1, "method": "dense", "lam": 0.0, "mean": 0.5},
        {"kind": "ab_kl", "behaviour": "tiny", "layer": 1, "method": "dense", "lam": 0.1, **figures},
        {"kind": "ab_kl", "behaviour": "tiny", "layer": 1, "method": "dense", "lam": -0.1, "mean": 0.4},
    ]
    row = matched_kl_table(records).iloc[0]
    assert row["shift(+)"] is None and row["shift(-)"] == pytest.approx(-0.1) and not row["works"]


@pytest.fixture
def two_behaviours(caa_dir):
    """caa_dir with a second behaviour, "other", whose questions use other words."""
    train = [
        ab("i hate the plot ?\n(A) yes bad\n(B) no good", "A", "B"),
        ab("the music was awful ?\n(A) no great\n(B) yes awful", "B", "A"),
        ab("it was boring ?\n(A) yes boring\n(B) no fun", "A", "B"),
    ]
    test = [
        ab("the story was sad ?\n(A) yes sad\n(B) no happy", "A", "B"),
        ab("i love the actor ?\n(A) no hate\n(B) yes love", "B", "A"),
    ]
    for name, records in (("generate/other/generate_dataset.json", train), ("test/other/test_dataset_ab.json", test)):
        (caa_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (caa_dir / name).write_text(json.dumps(records))
    return caa_dir


def test_composition_and_conditional_cells_are_the_runs_they_stand_for(model, two_behaviours, tmp_path, sae_per_layer):
    from sas_lens.evaluation.results import composition_table, conditional_table, evaluation_figures
    from sas_lens.steering.conditions import Condition
    from sas_lens.steering.scoring import ab_probabilities

    cfg = config(
        two_behaviours,
        behaviours=("tiny", "other"),
        layers=(1,),
        saes={"1": "sae-1"},
        methods=("sas", "dense"),
        sas={"selection": "contrast", "top_k": 3},
        open_ended=0,
        compositions=(("tiny", "other"),),
        composition_lams=(0.0, 2.0),
        conditional=("tiny",),
        condition_latents=2,
        lams={"sas": (-2.0, 0.0, 2.0), "dense": (-2.0, 0.0, 2.0)},
    )
    cells = plan_cells(cfg)
    assert ("composition", "tiny+other", 1, "dense@b=2", 0.0) in cells
    assert ("conditional", "tiny", 1, "sas", 2.0) in cells and ("conditional", "tiny", 1, "sas", 0.0) not in cells
    records = run_evaluation(cfg, tmp_path / "run", model=model, progress=False)
    resources = EvalResources(cfg, tmp_path / "run", model=model)
    sae = sae_per_layer["sae-1"]
    at = {(r["kind"], r["behaviour"], r["method"], r["lam"]): r for r in records}

    composed = at[("composition", "tiny+other", "sas@b=2", 2.0)]
    both = {resources.vector("tiny", 1, "sas"): 2.0, resources.vector("other", 1, "sas"): 2.0}
    for behaviour in ("tiny", "other"):
        expected = ab_probabilities(model, resources.pairs(behaviour, "test"), steering=both, sae=sae).mean()
        assert composed[f"p_{behaviour}"] == pytest.approx(float(expected), abs=1e-6)
    alone = at[("composition", "tiny+other", "sas@b=0", 2.0)]  # b at 0: vector a alone, as its own A/B cell
    assert alone["p_tiny"] == pytest.approx(at[("ab", "tiny", "sas", 2.0)]["mean"], abs=1e-6)
    assert "measured_in" not in at[("composition", "tiny+other", "sas@b=2", 0.0)]  # λ_a = 0 is not unsteered

    gated = at[("conditional", "tiny", "dense", 2.0)]
    condition = Condition(sae, tuple(gated["condition_latents"]), per="sequence")
    expected = ab_probabilities(
        model,
        resources.pairs("tiny", "test"),
        sae=sae,
        when=condition,
        steering={resources.vector("tiny", 1, "dense"): 2.0},
    ).mean()
    assert gated["mean"] == pytest.approx(float(expected), abs=1e-6)
    assert 0 <= gated["fires_on_items"] <= 1 and 0 <= gated["fires_on_mmlu"] <= 1
    assert len(composition_table(records)) == 2 * 2 * 2 and len(conditional_table(records)) == 4
    assert conditional_table(records)["p_ungated"].notna().all()
    titles = [fig.layout.title.text for fig in evaluation_figures(records, tmp_path / "run")]
    assert "sas, tiny + other composed: p(other)" in titles
    assert "Cross-talk against overlap: each vector alone, the other behaviour's p" in titles
    from sas_lens.evaluation.results import composition_cross_talk

    talk = composition_cross_talk(records, tmp_path / "run").set_index(["method", "steered"])
    base = at[("composition", "tiny+other", "sas@b=0", 0.0)]["p_other"]
    assert talk.loc[("sas", "tiny"), "cross_talk"] == pytest.approx(alone["p_other"] - base)
    assert 0 <= talk.loc[("sas", "tiny"), "weighted_jaccard"] <= 1 and "jaccard" in talk
    for name in ("composition.csv", "conditional.csv"):
        assert (tmp_path / "run" / name).exists()
    with pytest.raises(ValueError, match="two different behaviours"):
        config(two_behaviours, behaviours=("tiny", "other"), compositions=(("tiny", "nope"),))


def test_zero_capability_items_means_none_and_all_means_every_item(
    model, caa_dir, tmp_path, monkeypatch, sae_per_layer
):
    loaded = []
    real = EvalResources.capability_items
    monkeypatch.setattr(EvalResources, "capability_items", lambda self, name: loaded.append(name) or real(self, name))
    cfg = config(
        caa_dir,
        layers=(1,),
        saes={"1": "sae-1"},
        methods=("dense",),
        mmlu=0,
        truthfulqa="all",
        open_ended=0,
        lams={"dense": (0.0, 2.0)},
        cost_lams={"dense": (2.0,)},
    )
    records = run_evaluation(cfg, tmp_path / "run", model=model, progress=False)
    capability = [r for r in records if r["kind"] == "capability"]
    assert capability and all("mmlu_accuracy" not in r and "truthfulqa_accuracy" in r for r in capability)
    assert set(loaded) == {"truthfulqa"}
    assert len(EvalResources(cfg, tmp_path, model=model).capability_items("truthfulqa")) == 2  # every item
    for bad in (-1, "some", True):
        with pytest.raises(ValueError, match="number of items"):
            config(caa_dir, mmlu=bad)


def test_cells_with_nan_are_strict_json_and_read_back_as_nan(tmp_path):
    from sas_lens.evaluation.store import CellStore

    store = CellStore(tmp_path / "cells.jsonl")
    store.add(
        {
            "key": "open|b|L9|sas|4",
            "kind": "open",
            "behaviour": "b",
            "lam": 4.0,
            "behaviour_score": float("nan"),
            "answer_perplexity": None,
        }
    )
    line = (tmp_path / "cells.jsonl").read_text()
    assert "NaN" not in line
    json.loads(line, parse_constant=lambda name: pytest.fail(f"non-standard JSON constant {name}"))
    again = CellStore(tmp_path / "cells.jsonl").cells["open|b|L9|sas|4"]
    assert math.isnan(again["behaviour_score"]) and again["answer_perplexity"] is None


def test_records_and_topic_alignments_show_as_tables_in_a_notebook(model, caa_dir, tmp_path, sae_per_layer):
    cfg = config(
        caa_dir,
        layers=(1,),
        saes={"1": "sae-1"},
        methods=("dense",),
        open_ended=0,
        lams={"dense": (-2.0, 0.0, 2.0)},
        cost_lams={"dense": (2.0,)},
    )
    records = run_evaluation(cfg, tmp_path / "run", model=model, progress=False)
    assert isinstance(records, list)
    page = records._repr_html_()
    assert "<h4>Summary</h4>" in page and "<h4>Matched cost</h4>" in page and "<table" in page


def test_the_delta_ablation_steers_at_the_strengths_of_sas_with_delta(model, caa_dir, tmp_path, sae_per_layer):
    cfg = config(
        caa_dir,
        layers=(1,),
        saes={"1": "sae-1"},
        methods=("sas",),
        delta_ablation=True,
        strength_unit="kl",
        sas={"selection": "contrast", "top_k": 3},
        open_ended=0,
        lams={"sas": (0.0, 1.0)},
        cost_lams={"sas": (1.0,)},
        mmlu=1,
        truthfulqa=1,
    )
    resources = EvalResources(cfg, tmp_path, model=model)
    assert resources.unit("tiny", 1, "sas@delta=0") == resources.unit("tiny", 1, "sas")
    assert "tiny|L1|sas@delta=0" not in json.loads((tmp_path / "units.json").read_text())


def test_what_the_driver_prepares_measures_every_kind_of_cell_elsewhere_as_here(
    model, two_behaviours, tmp_path, sae_per_layer, monkeypatch
):
    """A Ray worker's resources: the driver's vectors, units and conditions, through pickle, nothing rebuilt."""
    import pickle

    from sas_lens.evaluation.runner import run_cell

    cfg = config(
        two_behaviours,
        behaviours=("tiny", "other"),
        layers=(1,),
        saes={"1": "sae-1"},
        methods=("sas", "dense"),
        sas={"selection": "contrast", "top_k": 3},
        open_ended=0,
        compositions=(("tiny", "other"),),
        composition_lams=(2.0,),
        conditional=("tiny",),
        condition_latents=2,
        strength_unit="kl",
        lams={"sas": (2.0,), "dense": (2.0,)},
        cost_lams={"sas": (2.0,), "dense": (2.0,)},
        kl_targets=(0.1,),
    )
    cells = plan_cells(cfg)
    assert {c[0] for c in cells} == {"ab", "ab_kl", "capability", "composition", "conditional"}
    driver = EvalResources(cfg, tmp_path / "driver", model=model)
    shared = pickle.loads(pickle.dumps(driver.prepare(cells)))
    expected = [run_cell(driver, cell) for cell in cells]

    for name in ("sas_vector", "dense_vector"):
        monkeypatch.setattr(f"sas_lens.steering.build_vectors.{name}", lambda *a, **k: pytest.fail("rebuilt"))
    monkeypatch.setattr("sas_lens.steering.strength.strength_for_kl", lambda *a, **k: pytest.fail("remeasured"))
    monkeypatch.setattr(
        "sas_lens.steering.conditions.Condition.from_examples", lambda *a, **k: pytest.fail("condition rebuilt")
    )
    worker = EvalResources(cfg, tmp_path / "worker", model=model)
    worker.adopt(shared)
    for cell, figures in zip(cells, expected):
        got = run_cell(worker, cell)
        assert got.keys() == figures.keys(), cell
        for name in figures.keys() - {"seconds"}:
            assert got[name] == pytest.approx(figures[name], abs=1e-6), (cell, name)
    assert any(figures.get("lam_value", 1.0) != 2.0 for figures in expected)  # the units were measured, not 1


def test_a_kl_unit_falls_back_only_when_the_strength_is_not_reached(
    model, caa_dir, tmp_path, sae_per_layer, monkeypatch
):
    from sas_lens.errors import IncompatibleSAEError, StrengthNotReachedError
    from sas_lens.steering import strength

    cfg = config(
        caa_dir,
        layers=(1,),
        saes={"1": "sae-1"},
        strength_unit="kl",
        methods=("dense",),
        lams={"dense": (1.0,)},
        cost_lams={},
        open_ended=0,
        mmlu=1,
        truthfulqa=1,
    )

    monkeypatch.setattr(strength, "strength_for_kl", always_raising(StrengthNotReachedError))
    assert EvalResources(cfg, tmp_path / "weak", model=model).unit("tiny", 1, "dense") == 1024.0
    monkeypatch.setattr(strength, "strength_for_kl", always_raising(IncompatibleSAEError))
    with pytest.raises(IncompatibleSAEError, match="from the search"):  # was a unit of 1024 before the fix
        EvalResources(cfg, tmp_path / "mismatch", model=model).unit("tiny", 1, "dense")


def test_a_run_folder_refuses_other_settings_and_restarts_on_request(model, caa_dir, tmp_path, tiny_resources):
    from sas_lens.errors import RunMismatchError

    small = dict(
        layers=(1,), methods=("dense",), lams={"dense": (2.0,)}, cost_lams={}, open_ended=0, mmlu=1, truthfulqa=1
    )
    out = tmp_path / "run"
    first = run_evaluation(config(caa_dir, **small), out, model=model, progress=False)
    for changed in ({"test_items": 2}, {"tau": 0.9}, {"sas": {"selection": "paper"}}, {"dense": {"fit": "preference"}}):
        with pytest.raises(RunMismatchError, match=rf"{next(iter(changed))}: .* -> .*--restart") as info:
            run_evaluation(config(caa_dir, **small, **changed), out, model=model, progress=False)
        assert "deletes its results" in str(info.value)
    # more λs only add cells: the finished ones are kept
    grown = run_evaluation(
        config(caa_dir, **{**small, "lams": {"dense": (2.0, 4.0)}}), out, model=model, progress=False
    )
    assert len(grown) > len(first)
    restarted = run_evaluation(config(caa_dir, **small, test_items=2), out, model=model, progress=False, restart=True)
    assert json.loads((out / "run_identity.json").read_text())["test_items"] == 2
    lines = (out / "cells.jsonl").read_text().splitlines()
    assert len(restarted) == len(first) == len(lines)  # the grown run's extra cells are gone with it


def test_a_run_recorded_before_a_setting_existed_resumes_at_its_default_only(model, caa_dir, tmp_path, tiny_resources):
    from sas_lens.errors import RunMismatchError

    small = dict(
        layers=(1,), methods=("dense",), lams={"dense": (2.0,)}, cost_lams={}, open_ended=0, mmlu=1, truthfulqa=1
    )
    out = tmp_path / "run"
    first = run_evaluation(config(caa_dir, **small), out, model=model, progress=False)
    identity = json.loads((out / "run_identity.json").read_text())
    del identity["dense"]  # what a run made before the dense settings existed recorded
    (out / "run_identity.json").write_text(json.dumps(identity))
    assert len(run_evaluation(config(caa_dir, **small), out, model=model, progress=False)) == len(first)
    with pytest.raises(RunMismatchError, match=r"dense: \{\} -> \{'fit': 'preference'\}"):
        run_evaluation(config(caa_dir, **small, dense={"fit": "preference"}), out, model=model, progress=False)


def test_a_cut_off_vector_file_is_rebuilt_not_reloaded(model, caa_dir, tmp_path, tiny_resources, capsys):
    cfg = config(
        caa_dir,
        layers=(1,),
        methods=("dense",),
        lams={"dense": (2.0,)},
        cost_lams={},
        open_ended=0,
        mmlu=1,
        truthfulqa=1,
    )
    built = EvalResources(cfg, tmp_path, model=model).vector("tiny", 1, "dense")
    file = tmp_path / "vectors" / "tiny-L1-dense.safetensors"
    file.write_bytes(file.read_bytes()[:40])  # what an interrupted write of an earlier version left
    again = EvalResources(cfg, tmp_path, model=model).vector("tiny", 1, "dense")
    assert torch.equal(again.vector, built.vector) and "cut off" in capsys.readouterr().out
