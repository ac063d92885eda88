"""Topic steering in the evaluation harness, and the fine-tuning baseline, on the tiny model."""

import json

import pytest
import torch

import sas_lens as sl
from sas_lens.errors import DataError
from sas_lens.evaluation.config import EvalConfig
from sas_lens.evaluation.plan import plan_cells
from sas_lens.evaluation.runner import run_evaluation
from sas_lens.topic.alignment import TopicAlignment
from sas_lens.topic.evaluation import (
    NEUTRAL_PROMPTS,
    finetune_on_texts,
    load_topic_texts,
    topic_similarity,
)
from tests.helpers import random_sae

TEXTS = [
    "the movie was good and the story was fun",
    "i love the music of the film",
    "the actor was great and the ending was happy",
]


@pytest.fixture
def topic_file(tmp_path):
    path = tmp_path / "films.txt"
    path.write_text("\n".join(TEXTS) + "\n\n")
    return path


def test_topic_texts_are_read_from_files_and_the_demo_sets(topic_file, tmp_path):
    assert load_topic_texts(topic_file) == TEXTS  # the blank lines are dropped
    assert len(load_topic_texts("demo:medicine")) == 15
    (tmp_path / "blank.txt").write_text("\n  \n")
    with pytest.raises(DataError, match="holds no texts"):
        load_topic_texts(tmp_path / "blank.txt")
    with pytest.raises(DataError, match="No topic text file"):
        load_topic_texts(tmp_path / "missing.txt")


def test_finetuning_lowers_the_loss_on_the_texts_and_leaves_the_model_alone(model):
    before = {name: p.clone() for name, p in model.state_dict().items()}
    tokens = model.to_tokens(TEXTS, padding_side="right")
    with torch.no_grad():
        loss_before = float(model(tokens, return_type="loss"))
    tuned, _ = finetune_on_texts(model, TEXTS, steps=15, lr=1e-2, batch_size=3)
    with torch.no_grad():
        assert float(tuned(tokens, return_type="loss")) < loss_before - 0.1
    assert all(torch.equal(before[name], p) for name, p in model.state_dict().items())
    assert torch.equal(tuned.W_E, model.W_E)  # embeddings frozen
    assert tuned.cfg.model_name != model.cfg.model_name
    assert not any(p.requires_grad for p in tuned.parameters())


def topic_config(topic_file, **overrides):
    settings = dict(
        behaviours=(),
        data_dir="unused",
        layers=(1,),
        saes={"1": "tiny-sae"},
        topics={"films": str(topic_file)},
        topic_strengths=(4.0,),
        topic_swap=(1.0,),
        topic_swap_k=4,
        topic_latents=8,
        topic_prompts=2,
        finetune_steps=2,
        max_new_tokens=3,
    )
    return EvalConfig(**{**settings, **overrides})


def test_topic_cells_measure_unsteered_amplify_swap_and_finetune(model, topic_file, tmp_path, monkeypatch):
    monkeypatch.setenv("SAS_LENS_CACHE", str(tmp_path / "cache"))
    sae = random_sae("jumprelu")
    monkeypatch.setattr("sas_lens.loading.saes.load_sae", lambda name=None, **kwargs: sae)
    cfg = topic_config(topic_file)
    assert [c[3:] for c in plan_cells(cfg)] == [
        ("amplify", 0.0),
        ("amplify", 4.0),
        ("swap", 1.0),
        ("clamp", 1.0),
        ("weight", 1.0),
        ("finetune", 2.0),
    ]
    records = {(r["method"], r["lam"]): r for r in run_evaluation(cfg, tmp_path / "run", model=model, progress=False)}
    prompts = list(NEUTRAL_PROMPTS[:2])
    unsteered = records[("amplify", 0.0)]
    assert unsteered["answers"] == sl.generate(model, prompts, max_new_tokens=3)
    alignment = TopicAlignment.load(tmp_path / "run" / "topics" / "films.safetensors", sae=sae)
    amplified = sl.generate(model, prompts, steering={alignment.vector(8): 4.0}, sae=sae, max_new_tokens=3)
    assert records[("amplify", 4.0)]["answers"] == amplified
    similarity = float(topic_similarity(amplified, TEXTS).mean())
    assert records[("amplify", 4.0)]["topic_similarity"] == pytest.approx(similarity, abs=1e-6)
    assert records[("finetune", 2.0)]["finetune_s"] > 0
    table = (tmp_path / "run" / "topic_summary.csv").read_text().splitlines()
    assert len(table) == 1 + 6 and "fine-tune (2 steps)" in table[-1]
    assert json.loads((tmp_path / "run" / "results.json").read_text())["cells_run"] == 6
    clamped = sl.generate(model, prompts, steering={alignment.clamp(): 1.0}, sae=sae, max_new_tokens=3)
    assert records[("clamp", 1.0)]["answers"] == clamped
    assert 0 < records[("weight", 1.0)]["coverage"] <= 1


def test_topic_configs_are_checked(topic_file):
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        topic_config(topic_file, topic_swap=(1.5,))
    with pytest.raises(ValueError, match="name it in saes"):
        topic_config(topic_file, saes={})
    with pytest.raises(ValueError, match="no behaviours and no topics"):
        topic_config(topic_file, topics={})
