"""`sas-lens eval`: a resumable grid of behaviour, capability and open-ended measurements.

A run is described by a small config (JSON or TOML, see :class:`EvalConfig`) and
split into cells, one measurement each:

- ``ab``: p(behaviour-matching letter) on the behaviour's A/B test items, per
  (behaviour, layer, method, λ), with a 95% confidence interval;
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
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from sas_lens.evaluation.behaviour import METHODS, ab_cell, mean_ci
from sas_lens.errors import DataError


@dataclass(frozen=True)
class EvalConfig:
    """What to evaluate. ``lams`` and ``cost_lams`` map a method to its λ grid (a list applies to all)."""

    behaviours: tuple[str, ...]
    data_dir: str
    model: str | None = None  # None: the embedded Gemma 3 270M; else a TransformerLens name, e.g. "gemma-2-2b"
    device: str | None = None  # None: CUDA when available
    layers: tuple[int, ...] = (9,)
    methods: tuple[str, ...] = METHODS
    lams: dict[str, tuple[float, ...]] = field(default_factory=dict)
    cost_lams: dict[str, tuple[float, ...]] = field(default_factory=dict)
    # layer → a shipped name or folder, or [release, sae_id] (e.g. Gemma Scope); None: the shipped default
    saes: dict[str, Any] = field(default_factory=lambda: {"9": None})
    heldout_text: str | None = None
    train_pairs: int = 200
    test_items: int = 50
    open_ended: int = 10
    mmlu: int = 100
    truthfulqa: int = 100
    perplexity_tokens: int = 10_000
    max_new_tokens: int = 40
    tau: float = 0.7
    layer_sweep_behaviour: str | None = None  # other layers: only this behaviour's A/B sweep
    judge: dict[str, Any] | None = None
    topics: dict[str, str] = field(default_factory=dict)  # name → "demo:<topic>" or a file, one text per line
    topic_strengths: tuple[float, ...] = (2.0, 4.0, 8.0)  # "amplify"
    topic_swap: tuple[float, ...] = (1.0,)  # "swap" blends, in [0, 1]
    topic_swap_k: int = 32
    topic_latents: int = 64
    topic_min_prompts: int = 5  # amplify picks latents firing on at least this many reference prompts
    topic_prompts: int = 12
    finetune_steps: int = 30  # 0: no fine-tuning baseline

    def __post_init__(self) -> None:
        if not self.behaviours and not self.topics:
            raise ValueError("The evaluation config names no behaviours and no topics.")
        if not all(0 <= x <= 1 for x in self.topic_swap):
            raise ValueError(f"topic_swap blends must lie in [0, 1], got {self.topic_swap}.")
        if not all(math.isfinite(x) for x in self.topic_strengths):
            raise ValueError(f"topic_strengths must be finite, got {self.topic_strengths}.")
        if self.topics and self.sae_for(self.layers[0]) is False:
            raise ValueError(f"Topics are scored on the SAE of the main layer {self.layers[0]}; name it in saes.")
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ValueError(f"Unknown methods {unknown}; choose from {list(METHODS)}.")
        for name in ("lams", "cost_lams"):
            for method, grid in getattr(self, name).items():
                if not all(isinstance(x, (int, float)) and math.isfinite(x) for x in grid):
                    raise ValueError(f"{name}[{method!r}] must hold finite numbers, got {grid}.")

    def grid(self, method: str, costs: bool = False) -> tuple[float, ...]:
        grids = self.cost_lams if costs else self.lams
        default = (-1.0, 0.0, 1.0) if method == "prompting" else ((-4.0, 4.0) if costs else (-4.0, 0.0, 4.0))
        grid = tuple(float(x) for x in grids.get(method, default))
        return tuple(sorted(set(grid) | {0.0})) if costs else grid

    def sae_for(self, layer: int) -> Any:
        """The SAE for ``layer``: a shipped name, a folder or ``[release, sae_id]`` (None: the shipped
        default), or False when the config names none."""
        return self.saes[str(layer)] if str(layer) in self.saes else False


def load_config(path: str | Path) -> EvalConfig:
    """Read an :class:`EvalConfig` from a ``.json`` or ``.toml`` file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"No such evaluation config: {path}.")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".toml":
            import tomllib

            raw = tomllib.loads(text)
        else:
            raw = json.loads(text)
    except ValueError as err:
        raise DataError(f"{path} is not valid {path.suffix[1:].upper()}: {err}") from err
    known = set(EvalConfig.__dataclass_fields__)
    unknown = sorted(set(raw) - known)
    if unknown:
        raise DataError(f"{path}: unknown settings {unknown}; known: {sorted(known)}.")
    for key in ("data_dir", "heldout_text"):  # relative to the config file
        if raw.get(key) and not Path(raw[key]).is_absolute():
            raw[key] = str((path.parent / raw[key]).resolve())
    for key in ("behaviours", "layers", "methods"):
        if key in raw:
            raw[key] = tuple(raw[key])
    for key in ("topic_strengths", "topic_swap"):
        if key in raw:
            raw[key] = tuple(float(x) for x in raw[key])
    for name, source in raw.get("topics", {}).items():  # files relative to the config file too
        if not str(source).startswith("demo:") and not Path(source).is_absolute():
            raw["topics"][name] = str((path.parent / source).resolve())
    for key in ("lams", "cost_lams"):
        if key in raw:
            raw[key] = {method: tuple(float(x) for x in grid) for method, grid in raw[key].items()}
    try:
        return EvalConfig(**raw)
    except TypeError as err:
        raise DataError(f"{path}: {err}") from err


class CellStore:
    """Finished cells, one JSON line each, appended (and flushed) as soon as a cell is done."""

    def __init__(self, path: Path):
        self.path = path
        self.cells: dict[str, dict] = {}
        if path.exists():
            for line in path.read_text().splitlines():
                if line.strip():
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError:
                        continue  # a line cut off by an interruption: that cell is redone
                    self.cells[record["key"]] = record

    def __contains__(self, key: str) -> bool:
        return key in self.cells

    def add(self, record: dict) -> None:
        self.cells[record["key"]] = record
        with open(self.path, "a") as handle:
            handle.write(json.dumps(record) + "\n")
            handle.flush()


def _cell_key(kind: str, behaviour: str, layer: int, method: str, lam: float) -> str:
    return f"{kind}|{behaviour}|L{layer}|{method}|{lam:g}"


def plan_cells(cfg: EvalConfig) -> list[tuple[str, str, int, str, float]]:
    """Every (kind, behaviour, layer, method, λ) of the run, in the order they are run."""
    cells = []
    main_layer = cfg.layers[0]
    for behaviour in cfg.behaviours:
        for layer in cfg.layers:
            if layer != main_layer and behaviour != (cfg.layer_sweep_behaviour or behaviour):
                continue
            for method in cfg.methods:
                if method == "sas" and cfg.sae_for(layer) is False:
                    continue
                if method == "prompting" and layer != main_layer:
                    continue  # prompting does not depend on the layer
                cells += [("ab", behaviour, layer, method, lam) for lam in cfg.grid(method)]
                if layer == main_layer:
                    for kind in ("capability", "open"):
                        cells += [(kind, behaviour, layer, method, lam) for lam in cfg.grid(method, costs=True)]
    for topic in cfg.topics:
        cells += [("topic", topic, main_layer, "amplify", lam) for lam in sorted({0.0, *cfg.topic_strengths})]
        cells += [("topic", topic, main_layer, "swap", lam) for lam in cfg.topic_swap]
        if cfg.finetune_steps:
            cells.append(("topic", topic, main_layer, "finetune", float(cfg.finetune_steps)))
    return cells


class _Resources:
    """Model, SAEs, data and vectors, each loaded or built on first use."""

    def __init__(self, cfg: EvalConfig, out_dir: Path, model=None):
        self.cfg, self.out_dir, self._model = cfg, out_dir, model
        self._saes: dict[int, Any] = {}
        self._vectors: dict[tuple[str, int, str], Any] = {}
        self._data: dict[tuple, Any] = {}

    @property
    def model(self):
        if self._model is None:
            from sas_lens.loading.models import load_model

            self._model = load_model(self.cfg.model, device=self.cfg.device)
        return self._model

    def sae(self, layer: int):
        if layer not in self._saes:
            from sas_lens.loading.saes import load_sae

            spec = self.cfg.sae_for(layer)
            release, sae_id = spec if isinstance(spec, (list, tuple)) else (spec, None)
            self._saes[layer] = load_sae(release, sae_id=sae_id, model=self.model)
        return self._saes[layer]

    def path(self, *parts: str) -> Path:
        path = Path(self.cfg.data_dir, *parts)
        if not path.exists():
            raise DataError(f"{path} is missing; data_dir must follow CAA's layout (see sas_lens.evaluation.runner).")
        return path

    def pairs(self, behaviour: str, split: str):
        from sas_lens.loading.pairs import load_pairs

        key = ("pairs", behaviour, split)
        if key not in self._data:
            if split == "train":
                self._data[key] = load_pairs(self.path("generate", behaviour, "generate_dataset.json"),
                                             name=behaviour, limit=self.cfg.train_pairs)
            else:
                self._data[key] = load_pairs(self.path("test", behaviour, "test_dataset_ab.json"),
                                             name=behaviour, limit=self.cfg.test_items)
        return self._data[key]

    def open_questions(self, behaviour: str) -> list[str]:
        key = ("open", behaviour)
        if key not in self._data:
            records = json.loads(self.path("test", behaviour, "test_dataset_open_ended.json").read_text())
            self._data[key] = [r["question"] for r in records[: self.cfg.open_ended]]
        return self._data[key]

    def capability_items(self, name: str):
        from sas_lens.evaluation.capability import load_capability_items

        key = ("capability", name)
        if key not in self._data:
            file = {"mmlu": ("test", "mmlu", "mmlu.json"), "truthfulqa": ("test", "truthfulqa", "truthful_qa.json")}
            self._data[key] = load_capability_items(self.path(*file[name]), limit=getattr(self.cfg, name))
        return self._data[key]

    def topic(self, name: str):
        """The topic's alignment texts, their embedding centroid, its
        :class:`~sas_lens.topic.alignment.TopicAlignment` and the seconds scoring took, computed once."""
        key = ("topic", name)
        if key not in self._data:
            from sas_lens.topic.alignment import topic_scores
            from sas_lens.topic.evaluation import load_topic_texts, topic_centroid

            texts = load_topic_texts(self.cfg.topics[name])
            started = time.perf_counter()
            alignment = topic_scores(self.model, self.sae(self.cfg.layers[0]), texts, name=name)
            align_s = time.perf_counter() - started
            self._data[key] = (texts, topic_centroid(texts), alignment, align_s)
            alignment.save(self.out_dir / "topics" / f"{name}.safetensors")
        return self._data[key]

    def vector(self, behaviour: str, layer: int, method: str):
        """The behaviour's vector of ``method`` at ``layer`` (``None`` for prompting), built once and saved."""
        if method == "prompting":
            return None
        key = (behaviour, layer, method)
        if key not in self._vectors:
            from sas_lens.steering.vectors import load_vector

            file = self.out_dir / "vectors" / f"{behaviour}-L{layer}-{method}.safetensors"
            if file.exists():
                self._vectors[key] = load_vector(file, model=self.model)
            else:
                from sas_lens.steering.build_vectors import dense_vector, sas_vector

                pairs, residuals = self.pairs(behaviour, "train"), self.residuals(behaviour)
                if method == "sas":
                    vector = sas_vector(self.model, self.sae(layer), pairs, tau=self.cfg.tau, residuals=residuals)
                else:
                    vector = dense_vector(self.model, pairs, layer=layer, residuals=residuals)
                vector.save(file)
                self._vectors[key] = vector
        return self._vectors[key]

    def residuals(self, behaviour: str):
        """The training pairs' residuals at every layer the run steers ``behaviour`` at, in one pass."""
        key = ("residuals", behaviour)
        if key not in self._data:
            from sas_lens.steering.extraction import collect_residuals

            layers = sorted({layer for _, b, layer, _, _ in plan_cells(self.cfg) if b == behaviour})
            self._data[key] = collect_residuals(self.model, self.pairs(behaviour, "train"), layers)
        return self._data[key]


def _steering(res: _Resources, behaviour: str, layer: int, method: str, lam: float):
    vector = res.vector(behaviour, layer, method)
    if vector is None or lam == 0:
        return {}, None
    return {vector: lam}, (res.sae(layer) if method == "sas" else None)


def _run_ab(res: _Resources, behaviour, layer, method, lam) -> dict:
    vector = res.vector(behaviour, layer, method)
    p = ab_cell(res.model, res.pairs(behaviour, "test"), method, vector, lam, behaviour=behaviour,
                sae=res.sae(layer) if method == "sas" else None)
    mean, low, high = mean_ci(p)
    return {"mean": mean, "ci_low": low, "ci_high": high, "n": len(p)}


def _run_capability(res: _Resources, behaviour, layer, method, lam) -> dict:
    from sas_lens.evaluation.behaviour import instruction_for, with_instruction
    from sas_lens.evaluation.capability import accuracy, perplexity

    out: dict[str, Any] = {}
    steering, sae = _steering(res, behaviour, layer, method, lam)
    for name in ("mmlu", "truthfulqa"):
        items = res.capability_items(name)
        if method == "prompting" and lam != 0:
            items = with_instruction(items, instruction_for(behaviour, lam))
        figures = accuracy(res.model, items, steering=steering, sae=sae)
        out[f"{name}_accuracy"], out[f"{name}_p_correct"] = figures["accuracy"], figures["p_correct"]
    if res.cfg.heldout_text and (method != "prompting" or lam == 0):  # no instruction fits held-out text
        out["perplexity"] = perplexity(res.model, res.cfg.heldout_text, steering=steering, sae=sae,
                                       n_tokens=res.cfg.perplexity_tokens)
    return out


def _run_open(res: _Resources, behaviour, layer, method, lam) -> dict:
    from sas_lens.evaluation.behaviour import instruction_for
    from sas_lens.evaluation.capability import text_perplexity
    from sas_lens.steering.hf_backend import preferred_backend
    from sas_lens.evaluation.open_ended import behaviour_scores, choice_exemplars, distinct_n
    from sas_lens.steering.engine import generate

    questions = res.open_questions(behaviour)
    prompts = [f"Question: {q}\nAnswer:" for q in questions]
    if method == "prompting" and lam != 0:
        prompts = [f"{instruction_for(behaviour, lam)}\n\n{p}" for p in prompts]
    steering, sae = _steering(res, behaviour, layer, method, lam)
    answers = generate(res.model, prompts, steering=steering, sae=sae, max_new_tokens=res.cfg.max_new_tokens,
                       backend=preferred_backend(res.model))
    scores = behaviour_scores(answers, *choice_exemplars(res.pairs(behaviour, "test")))
    plain_prompts = [f"Question: {q}\nAnswer:" for q in questions]
    perplexities = torch.tensor([text_perplexity(res.model, p, a) for p, a in zip(plain_prompts, answers)])
    mean, low, high = mean_ci(scores)
    out = {"behaviour_score": mean, "behaviour_ci_low": low, "behaviour_ci_high": high,
           "answer_perplexity": float(perplexities.nanmedian()),
           "distinct_2": float(torch.tensor([distinct_n(a, 2) for a in answers]).mean()),
           "answers": answers}
    if res.cfg.judge:
        from sas_lens.evaluation.open_ended import JudgeConfig, judge

        config = JudgeConfig(**res.cfg.judge)
        judged = [judge(config, behaviour, q, a) for q, a in zip(questions, answers)]
        for criterion in ("concept", "instruction", "fluency"):
            out[f"judge_{criterion}"] = sum(j[criterion] for j in judged) / len(judged)
    return out


def _unsteered_cell(store: CellStore, kind: str, behaviour: str) -> dict | None:
    """The figures of a finished λ = 0 cell of this kind and behaviour, if any.

    At λ = 0 every method is the same unsteered model on the same items (no vector, no
    instruction) at every layer, so the cell is measured once and shared.
    """
    for record in store.cells.values():
        if record["kind"] == kind and record["behaviour"] == behaviour and record["lam"] == 0:
            if "measured_in" in record:
                continue
            shared = {k: v for k, v in record.items()
                      if k not in ("key", "kind", "behaviour", "layer", "method", "lam", "seconds")}
            return {**shared, "measured_in": record["key"]}
    return None


def _run_topic(res: _Resources, topic, layer, method, lam) -> dict:
    from sas_lens.steering.hf_backend import preferred_backend
    from sas_lens.steering.engine import generate
    from sas_lens.topic.evaluation import NEUTRAL_PROMPTS, finetune_on_texts, generation_scores

    texts, centroid, alignment, align_s = res.topic(topic)
    prompts = list(NEUTRAL_PROMPTS[: res.cfg.topic_prompts])
    n_new = res.cfg.max_new_tokens
    out: dict[str, Any] = {"align_s": round(align_s, 2), "reference_cached": alignment.metadata["reference_cached"]}
    if method == "finetune":
        tuned, out["finetune_s"] = finetune_on_texts(res.model, texts, steps=int(lam))
        model, steering, sae, backend = tuned, {}, None, "tl"
    else:
        edit = (alignment.vector(res.cfg.topic_latents, min_prompts=res.cfg.topic_min_prompts) if method == "amplify"
                else alignment.swap(res.cfg.topic_swap_k))
        model, steering, sae = res.model, ({edit: lam} if lam else {}), res.sae(layer)
        backend = preferred_backend(model)
    # a fixed number of new tokens (hf) so that seconds per token compare across cells
    fixed = {"min_new_tokens": n_new} if backend == "hf" else {}
    started = time.perf_counter()
    answers = generate(model, prompts, steering=steering, sae=sae, max_new_tokens=n_new, backend=backend,
                       batch_size=len(prompts), **fixed)
    out["s_per_token"] = (time.perf_counter() - started) / (len(prompts) * n_new)
    out["backend"] = backend
    return {**out, **generation_scores(res.model, prompts, answers, centroid), "answers": answers}


_RUNNERS = {"ab": _run_ab, "capability": _run_capability, "open": _run_open, "topic": _run_topic}


def run_evaluation(cfg: EvalConfig, out_dir: str | Path, *, model=None, progress: bool = True) -> list[dict]:
    """Run (or resume) every cell of ``cfg``; write cells.jsonl, results.json, CSVs and figures to ``out_dir``."""
    out_dir = Path(out_dir)
    (out_dir / "vectors").mkdir(parents=True, exist_ok=True)
    (out_dir / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
    store = CellStore(out_dir / "cells.jsonl")
    cells = plan_cells(cfg)
    pending = [c for c in cells if _cell_key(*c) not in store]
    res = _Resources(cfg, out_dir, model)
    started = time.perf_counter()
    for kind, behaviour, layer, method, lam in tqdm(pending, desc="evaluation cells", disable=not progress,
                                                     unit="cell"):
        cell_started = time.perf_counter()
        unsteered = _unsteered_cell(store, kind, behaviour) if lam == 0 and kind != "topic" else None
        figures = unsteered or _RUNNERS[kind](res, behaviour, layer, method, lam)
        store.add({"key": _cell_key(kind, behaviour, layer, method, lam), "kind": kind, "behaviour": behaviour,
                   "layer": layer, "method": method, "lam": lam, **figures,
                   "seconds": round(time.perf_counter() - cell_started, 2)})
    records = [store.cells[_cell_key(*c)] for c in cells]
    from sas_lens.evaluation.results import write_results

    write_results(records, out_dir, wall_s=time.perf_counter() - started, n_run=len(pending))
    return records
