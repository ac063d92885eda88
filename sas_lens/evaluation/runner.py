"""`sas-lens eval`: a resumable grid of behaviour, capability and open-ended measurements.

A run is described by a small config (JSON or TOML, see :class:`EvalConfig`) and
split into cells, one measurement each:

- ``ab``: p(behaviour-matching letter) on the behaviour's A/B test items, per
  (behaviour, layer, method, λ), with a 95% confidence interval;
- ``ab_kl``: the same at the λ of each sign whose mean next-token KL is each of ``kl_targets``
  (the matched-KL summary, :func:`~sas_lens.evaluation.results.matched_kl_table`);
- ``capability``: MMLU and TruthfulQA accuracy and held-out perplexity, at the cost λs;
- ``open``: steered answers to open-ended questions, scored for behaviour (embeddings)
  and fluency (perplexity under the unsteered model, distinct-2), at the cost λs;
- ``topic``: continuations of neutral prompts steered toward each topic of ``topics``
  ("amplify" at ``topic_strengths``, "swap" at ``topic_swap``, and a model fine-tuned on the
  topic's texts for ``finetune_steps``), scored for topic similarity and fluency, with the
  time to align (score the latents), the fine-tuning time and seconds per generated token.

Every finished cell is appended to ``<out>/cells.jsonl`` at once, so an
interrupted run picks up where it stopped; vectors are saved under
``<out>/vectors`` and reused. Data follows CAA's layout under ``data_dir``:
``generate/<b>/generate_dataset.json``, ``test/<b>/test_dataset_ab.json``,
``test/<b>/test_dataset_open_ended.json``, ``test/mmlu/mmlu.json``,
``test/truthfulqa/truthful_qa.json``.

Example:
    >>> results = run_evaluation(load_config("eval.toml"), out_dir="eval_out")   # doctest: +SKIP
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from sas_lens.evaluation.behaviour import ab_cell, mean_ci
from sas_lens.evaluation.config import EvalConfig
from sas_lens.evaluation.plan import Cell, base_method, plan_cells, steers_at_zero, variant_settings
from sas_lens.evaluation.resources import EvalResources
from sas_lens.evaluation.store import CellStore, cell_key, claim_run_folder


def _steering(res: EvalResources, behaviour: str, layer: int, method: str, lam: float):
    """``({vector: λ}, sae)`` for a cell (λ in the run's strength unit), or ``({}, None)`` when it steers nothing."""
    vector = res.vector(behaviour, layer, method)  # a sweep variant ("sas@tau=0.5") steers like its method
    if vector is None or (lam == 0 and not steers_at_zero(method)):
        return {}, None
    lam_value = lam * res.unit(behaviour, layer, method)
    return {vector: lam_value}, (res.sae(layer) if base_method(method) == "sas" else None)


def _run_ab(res: EvalResources, behaviour, layer, method, lam) -> dict:
    from sas_lens.steering.scoring import ab_probabilities

    if method == "prompting":
        p = ab_cell(res.model, res.pairs(behaviour, "test"), method, None, lam, behaviour=behaviour)
    else:
        steering, sae = _steering(res, behaviour, layer, method, lam)
        p = ab_probabilities(res.model, res.pairs(behaviour, "test"), steering=steering, sae=sae, prefix=res.prefix)
    mean, low, high = mean_ci(p)
    out = {"mean": mean, "ci_low": low, "ci_high": high, "n": len(p)}
    if res.cfg.strength_unit != "raw" and method != "prompting":
        out["lam_value"] = lam * res.unit(behaviour, layer, method)
    return out


def _run_ab_kl(res: EvalResources, behaviour, layer, method, signed_kl) -> dict:
    """The A/B cell at the λ whose next-token KL on the behaviour's prompts is ``|signed_kl|``, of its sign."""
    from sas_lens.steering.scoring import ab_probabilities
    from sas_lens.steering.strength import next_token_kl

    target, sign = abs(signed_kl), (1 if signed_kl > 0 else -1)
    lam = res.matched_strength(behaviour, layer, method, target, sign)
    if lam is None:  # an empty vector, or one too weak to reach the KL: nothing to measure at matched cost
        return {"lam_value": None, "kl": None, "mean": None, "ci_low": None, "ci_high": None, "n": 0}
    steering = {res.vector(behaviour, layer, method): lam}
    sae = res.sae(layer) if base_method(method) == "sas" else None
    p = ab_probabilities(res.model, res.pairs(behaviour, "test"), steering=steering, sae=sae, prefix=res.prefix)
    mean, low, high = mean_ci(p)
    kl = next_token_kl(res.model, steering, res.kl_prompts(behaviour), sae=sae)  # what the search reached
    return {"lam_value": lam, "kl": kl, "mean": mean, "ci_low": low, "ci_high": high, "n": len(p)}


def _run_capability(res: EvalResources, behaviour, layer, method, lam) -> dict:
    from sas_lens.evaluation.behaviour import instruction_for, with_instruction
    from sas_lens.evaluation.capability import accuracy, perplexity

    out: dict[str, Any] = {}
    steering, sae = _steering(res, behaviour, layer, method, lam)
    for name in ("mmlu", "truthfulqa"):
        if getattr(res.cfg, name) == 0:  # 0 items: not measured
            continue
        items = res.capability_items(name)
        if method == "prompting" and lam != 0:
            items = with_instruction(items, instruction_for(behaviour, lam))
        figures = accuracy(res.model, items, steering=steering, sae=sae, prefix=res.prefix)
        out[f"{name}_accuracy"], out[f"{name}_p_correct"] = figures["accuracy"], figures["p_correct"]
    if res.cfg.heldout_text and (method != "prompting" or lam == 0):  # no instruction fits held-out text
        out["perplexity"] = perplexity(
            res.model, res.cfg.heldout_text, steering=steering, sae=sae, n_tokens=res.cfg.perplexity_tokens
        )
    return out


def _run_open(res: EvalResources, behaviour, layer, method, lam) -> dict:
    from sas_lens.evaluation.behaviour import instruction_for
    from sas_lens.evaluation.open_ended import behaviour_scores, choice_exemplars
    from sas_lens.steering.fluency import fluency
    from sas_lens.steering.generation import generate
    from sas_lens.steering.hf_backend import preferred_backend

    questions = res.open_questions(behaviour)
    prompts = [f"Question: {q}\nAnswer:" for q in questions]
    if method == "prompting" and lam != 0:
        prompts = [f"{instruction_for(behaviour, lam)}\n\n{p}" for p in prompts]
    steering, sae = _steering(res, behaviour, layer, method, lam)
    answers = generate(
        res.model,
        prompts,
        steering=steering,
        sae=sae,
        max_new_tokens=res.cfg.max_new_tokens,
        backend=preferred_backend(res.model),
    )
    scores = behaviour_scores(answers, *choice_exemplars(res.pairs(behaviour, "test")))
    plain_prompts = [f"Question: {q}\nAnswer:" for q in questions]  # fluency as the unsteered model reads it
    figures = fluency(res.model, plain_prompts, answers)
    mean, low, high = mean_ci(scores)
    out = {
        "behaviour_score": mean,
        "behaviour_ci_low": low,
        "behaviour_ci_high": high,
        "answer_perplexity": figures["perplexity"],
        "distinct_2": figures["distinct_2"],
        "answers": answers,
    }
    if res.cfg.judge:
        from sas_lens.evaluation.open_ended import JudgeConfig, judge

        config = JudgeConfig(**res.cfg.judge)
        judged = [judge(config, behaviour, q, a) for q, a in zip(questions, answers)]
        for criterion in ("concept", "instruction", "fluency"):
            out[f"judge_{criterion}"] = sum(j[criterion] for j in judged) / len(judged)
    return out


def _run_composition(res: EvalResources, pair, layer, method, lam) -> dict:
    """Two behaviours' vectors at once (a at λ, b at the variant's λ), each scored on its own A/B items."""
    from sas_lens.steering.scoring import ab_probabilities

    a, b = pair.split("+")
    base, lam_b = base_method(method), variant_settings(method)["b"]
    steering = {
        res.vector(behaviour, layer, base): strength * res.unit(behaviour, layer, base)
        for behaviour, strength in ((a, lam), (b, lam_b))
        if strength != 0
    }
    sae = res.sae(layer) if base == "sas" else None
    out: dict[str, Any] = {"lam_b": lam_b}
    for behaviour in (a, b):
        out[f"p_{behaviour}"] = float(
            ab_probabilities(
                res.model, res.pairs(behaviour, "test"), steering=steering, sae=sae, prefix=res.prefix
            ).mean()
        )
    return out


def _run_conditional(res: EvalResources, behaviour, layer, method, lam) -> dict:
    """The behaviour's vector gated by its condition: its A/B items, and MMLU gated and not."""
    from sas_lens.evaluation.capability import accuracy
    from sas_lens.steering.scoring import ab_probabilities

    condition = res.condition(behaviour, layer)
    steering, sae = _steering(res, behaviour, layer, method, lam)
    items, mmlu = res.pairs(behaviour, "test"), res.capability_items("mmlu")
    mean, low, high = mean_ci(
        ab_probabilities(res.model, items, steering=steering, sae=sae, when=condition, prefix=res.prefix)
    )
    return {
        "mean": mean,
        "ci_low": low,
        "ci_high": high,
        "condition_latents": list(condition.ids),
        "fires_on_items": condition.firing_rate(res.model, [item.question for item in items]),
        "fires_on_mmlu": condition.firing_rate(res.model, [item.question for item in mmlu]),
        "mmlu_accuracy_gated": accuracy(res.model, mmlu, steering=steering, sae=sae, when=condition, prefix=res.prefix)[
            "accuracy"
        ],
        "mmlu_accuracy_ungated": accuracy(res.model, mmlu, steering=steering, sae=sae, prefix=res.prefix)["accuracy"],
    }


def _run_topic(res: EvalResources, topic, layer, method, lam) -> dict:
    from sas_lens.steering.generation import generate
    from sas_lens.steering.hf_backend import preferred_backend
    from sas_lens.topic.evaluation import (
        NEUTRAL_PROMPTS,
        finetune_on_texts,
        generation_scores,
    )

    texts, centroid, alignment, align_s = res.topic(topic)
    prompts = list(NEUTRAL_PROMPTS[: res.cfg.topic_prompts])
    n_new = res.cfg.max_new_tokens
    out: dict[str, Any] = {
        "align_s": round(align_s, 2),
        "reference_cached": alignment.metadata["reference_cached"],
        "coverage": alignment.metadata.get("coverage"),
    }
    if method == "finetune":
        tuned, out["finetune_s"] = finetune_on_texts(res.model, texts, steps=int(lam))
        model, steering, sae, backend = tuned, {}, None, "tl"
    else:
        edit = {
            "amplify": lambda: alignment.vector(res.cfg.topic_latents, min_prompts=res.cfg.topic_min_prompts),
            "swap": lambda: alignment.swap(res.cfg.topic_swap_k),
            "clamp": alignment.clamp,
            "weight": alignment.weight,
        }[method]()
        model, steering, sae = res.model, ({edit: lam} if lam else {}), res.sae(layer)
        backend = preferred_backend(model)
    # a fixed number of new tokens (hf) so that seconds per token compare across cells
    fixed = {"min_new_tokens": n_new} if backend == "hf" else {}
    started = time.perf_counter()
    answers = generate(
        model,
        prompts,
        steering=steering,
        sae=sae,
        max_new_tokens=n_new,
        backend=backend,
        batch_size=len(prompts),
        **fixed,
    )
    out["s_per_token"] = (time.perf_counter() - started) / (len(prompts) * n_new)
    out["backend"] = backend
    return {**out, **generation_scores(res.model, prompts, answers, centroid), "answers": answers}


_RUNNERS = {
    "ab": _run_ab,
    "ab_kl": _run_ab_kl,
    "capability": _run_capability,
    "open": _run_open,
    "topic": _run_topic,
    "composition": _run_composition,
    "conditional": _run_conditional,
}


class EvalRecords(list):
    """The records of a run (a plain list of dicts), shown in a notebook as the run's summary tables."""

    def _repr_html_(self) -> str:
        from sas_lens.evaluation.results import (
            conditional_table,
            layer_table,
            matched_cost_table,
            matched_kl_table,
            summary_table,
            topic_table,
        )

        parts = [f"<b>{len(self)} evaluation cells</b>"]
        for title, table in (
            ("Summary", summary_table(self)),
            ("Matched cost", matched_cost_table(self)),
            ("Matched next-token KL", matched_kl_table(self)),
            ("Layers", layer_table(self)),
            ("Conditional", conditional_table(self)),
            ("Topics", topic_table(self)),
        ):
            if len(table):
                parts.append(f"<h4>{title}</h4>" + table.round(3).to_html(index=False, na_rep="–"))
        return "".join(parts)


def run_cell(res: EvalResources, cell: Cell) -> dict:
    """Measure one cell: its figures and the seconds it took (what a Ray worker returns to the driver).

    Args:
        res: the run's resources (model, SAEs, data, vectors).
        cell: ``(kind, behaviour, layer, method, λ)``.

    Example:
        >>> run_cell(res, ("ab", "refusal", 9, "sas", 4.0))["mean"]   # doctest: +SKIP
    """
    kind, behaviour, layer, method, lam = cell
    started = time.perf_counter()
    figures = _RUNNERS[kind](res, behaviour, layer, method, lam)
    return {**figures, "seconds": round(time.perf_counter() - started, 2)}


def cell_record(cell: Cell, figures: dict) -> dict:
    """The line of ``cells.jsonl`` for a cell: which cell it is, then what was measured.

    Args:
        cell: ``(kind, behaviour, layer, method, λ)``.
        figures: what was measured (with ``seconds``).

    Example:
        >>> cell_record(("ab", "refusal", 9, "sas", 4.0), {"mean": 0.6})["key"]
        'ab|refusal|L9|sas|4'
    """
    kind, behaviour, layer, method, lam = cell
    return {
        "key": cell_key(*cell),
        "kind": kind,
        "behaviour": behaviour,
        "layer": layer,
        "method": method,
        "lam": lam,
        **figures,
    }


def reuses_unsteered(cell: Cell) -> bool:
    """Whether the cell is the unsteered model, measured once per kind and behaviour (see ``CellStore.unsteered``).

    Args:
        cell: ``(kind, behaviour, layer, method, λ)``.

    Example:
        >>> reuses_unsteered(("ab", "refusal", 9, "dense", 0.0)), reuses_unsteered(("ab", "refusal", 9, "sas@delta=0", 0.0))
        (True, False)
    """
    kind, _, _, method, lam = cell
    return lam == 0 and kind in ("ab", "capability", "open") and not steers_at_zero(method)


def run_evaluation(
    cfg: EvalConfig, out_dir: str | Path, *, model=None, progress: bool = True, executor="serial", restart: bool = False
) -> list[dict]:
    """Run (or resume) every cell of ``cfg``; write cells.jsonl, results.json, CSVs and figures to ``out_dir``.

    Args:
        cfg: what to measure (see :class:`~sas_lens.evaluation.config.EvalConfig`).
        out_dir: the results folder; run again with the same folder to resume (serially or on Ray).
        model: a loaded model to use instead of loading ``cfg.model`` (in this process; Ray workers load
            their own, see :class:`~sas_lens.distributed.RayExecutor`).
        progress: show a tqdm bar with an ETA.
        executor: ``"serial"`` (one cell after another, here), ``"ray"`` (a pool of Ray actors on the cluster
            ``ray.init()`` finds, or a local one) or a configured
            :class:`~sas_lens.distributed.RayExecutor`.
        restart: delete the results a previous run left in ``out_dir`` and start over. Without it, a folder
            whose run used other settings (items, τ, rule, SAEs... anything but added λs, methods, layers or
            behaviours) is refused with :class:`~sas_lens.errors.RunMismatchError`.

    Returns:
        One record per cell of the plan, finished ones included.

    Example:
        >>> records = sl.run_evaluation(sl.load_config("eval.toml"), "eval_out")   # doctest: +SKIP
    """
    from sas_lens.distributed import RayExecutor

    if executor not in ("serial", "ray") and not isinstance(executor, RayExecutor):
        raise ValueError(f"executor must be 'serial', 'ray' or a RayExecutor, got {executor!r}.")
    if executor == "ray":
        executor = RayExecutor()
    if executor != "serial":
        executor.check(model)  # before anything is written: Ray is installed, workers can get a model
    out_dir = Path(out_dir)
    claim_run_folder(cfg, out_dir, restart=restart)
    (out_dir / "vectors").mkdir(parents=True, exist_ok=True)
    (out_dir / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
    store = CellStore(out_dir / "cells.jsonl")
    cells = plan_cells(cfg)
    pending = [c for c in cells if cell_key(*c) not in store]
    res = EvalResources(cfg, out_dir, model)
    started = time.perf_counter()
    if executor == "serial":
        for cell in tqdm(pending, desc="evaluation cells", disable=not progress, unit="cell"):
            copied = store.unsteered(*cell[:2]) if reuses_unsteered(cell) else None
            store.add(cell_record(cell, {**copied, "seconds": 0.0} if copied else run_cell(res, cell)))
    else:
        from sas_lens.evaluation.distributed import run_cells_on_ray

        run_cells_on_ray(executor, pending, store, res, progress=progress)
    records = EvalRecords(store.cells[cell_key(*c)] for c in cells)
    from sas_lens.evaluation.results import write_results

    write_results(
        records, out_dir, wall_s=time.perf_counter() - started, n_run=len(pending), cost_budget=cfg.cost_budget
    )
    return records
