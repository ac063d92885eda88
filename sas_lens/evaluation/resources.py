"""Model, SAEs, data, vectors and residuals of an evaluation run, each loaded or built once, on first use."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from sas_lens.errors import DataError, StrengthNotReachedError
from sas_lens.evaluation.config import EvalConfig
from sas_lens.evaluation.plan import base_method, plan_cells, variant_settings
from sas_lens.loading.files import atomic_write_text
from sas_lens.steering.prefix import PrefixCache


class EvalResources:
    """Model, SAEs, data and vectors, each loaded or built on first use."""

    def __init__(self, cfg: EvalConfig, out_dir: Path, model=None):
        self.cfg, self.out_dir, self._model = cfg, out_dir, model
        self._saes: dict[int, Any] = {}
        self._vectors: dict[tuple[str, int, str], Any] = {}
        self._data: dict[tuple, Any] = {}
        self._units: dict[str, float] = {}
        # A/B cells of one behaviour share their items across λs and methods: the blocks below the steered
        # layer run once per batch (see sas_lens.steering.prefix)
        self.prefix = PrefixCache()

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
                self._data[key] = load_pairs(
                    self.path("generate", behaviour, "generate_dataset.json"),
                    name=behaviour,
                    limit=self.cfg.train_pairs,
                )
            else:
                self._data[key] = load_pairs(
                    self.path("test", behaviour, "test_dataset_ab.json"), name=behaviour, limit=self.cfg.test_items
                )
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
            limit = getattr(self.cfg, name)  # "all", or a positive count (0 is never loaded: see the runner)
            self._data[key] = load_capability_items(self.path(*file[name]), limit=None if limit == "all" else limit)
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
            alignment = topic_scores(
                self.model, self.sae(self.cfg.layers[0]), texts, name=name, summary=self.cfg.topic_summary
            )
            align_s = time.perf_counter() - started
            self._data[key] = (texts, topic_centroid(texts), alignment, align_s)
            alignment.save(self.out_dir / "topics" / f"{name}.safetensors")
        return self._data[key]

    def vector(self, behaviour: str, layer: int, method: str):
        """The behaviour's vector of ``method`` at ``layer`` (``None`` for prompting), built once and saved."""
        if method == "prompting":
            return None
        key = (behaviour, layer, method)
        if key not in self._vectors and "delta" in variant_settings(method):  # the Δ ablation: SAS's own vector
            self._vectors[key] = self.vector(behaviour, layer, base_method(method)).with_delta(
                bool(variant_settings(method)["delta"])
            )
        if key not in self._vectors:
            from sas_lens.steering.vectors import load_vector

            file = self.out_dir / "vectors" / f"{behaviour}-L{layer}-{method}.safetensors"
            saved = _readable_vector(file)
            if saved is not None:
                self._vectors[key] = load_vector(saved, model=self.model)
            else:
                from sas_lens.steering.build_vectors import dense_vector, sas_vector

                settings = variant_settings(method)
                pairs, residuals = self.pairs(behaviour, "train"), self.residuals(behaviour)
                if "n" in settings:  # the data-size sweep: the first n training pairs
                    if settings["n"] > len(pairs):
                        raise DataError(
                            f"data_sizes asks for {int(settings['n'])} pairs of {behaviour!r}, which has "
                            f"{len(pairs)} training pairs; lower data_sizes or train_pairs."
                        )
                    pairs = pairs[: int(settings["n"])]
                    residuals = self.residuals(behaviour, n_pairs=len(pairs))
                if base_method(method) == "sas":
                    sas = {k: v for k, v in self.cfg.sas.items() if k != "read"}  # residuals fix the read
                    if "tau" in settings:  # the τ sweep: Algorithm 1 exactly, at that τ (no filter, no fit)
                        kept = {k: sas[k] for k in ("mean_over", "strict") if k in sas}
                        sas = {**kept, "selection": "paper", "gate": "sae", "tau": settings["tau"]}
                    vector = sas_vector(
                        self.model, self.sae(layer), pairs, residuals=residuals, **{"tau": self.cfg.tau, **sas}
                    )
                else:
                    vector = dense_vector(self.model, pairs, layer=layer, residuals=residuals, **self.cfg.dense)
                vector.save(file)
                self._vectors[key] = vector
        return self._vectors[key]

    def condition(self, behaviour: str, layer: int):
        """The per-sequence condition of ``behaviour``: the latents of the SAE at ``layer`` that fire on the most
        of its training questions beyond the share of the other behaviours' training questions, built once."""
        key = ("condition", behaviour, layer)
        if key not in self._data:
            from sas_lens.steering.conditions import Condition

            def questions(name):
                return [pair.question for pair in self.pairs(name, "train")][:24]

            others = [q for name in self.cfg.behaviours if name != behaviour for q in questions(name)]
            self._data[key] = Condition.from_examples(
                self.model,
                self.sae(layer),
                questions(behaviour),
                others,
                top_k=self.cfg.condition_latents,
                name=f"{behaviour} questions",
            )
        return self._data[key]

    def unit(self, behaviour: str, layer: int, method: str) -> float:
        """The strength λ counts in: 1 for ``strength_unit = "raw"``; for ``"kl"``, the vector's λ at a mean
        next-token KL of 0.1 on the behaviour's first test prompts (measured once, kept in ``units.json``)."""
        if self.cfg.strength_unit == "raw" or method == "prompting":
            return 1.0
        if "delta" in variant_settings(method):  # the Δ ablation changes nothing else: SAS's own λs
            return self.unit(behaviour, layer, base_method(method))
        # the unit is a scale: 10% is precise enough
        lam = self._strength_at_kl(f"{behaviour}|L{layer}|{method}", behaviour, layer, method, 0.1, 1, rtol=0.1)
        if lam is not None:
            return lam
        vector = self.vector(behaviour, layer, method)
        # an empty vector (Algorithm 1 at a high τ) steers nothing at any λ; a weak one steers at the largest λ tried
        return 1.0 if hasattr(vector, "indices") and len(vector) == 0 else 1024.0

    def matched_strength(self, behaviour: str, layer: int, method: str, target: float, sign: int) -> float | None:
        """The λ, of ``sign``'s sign, at which the vector's mean next-token KL on the behaviour's first test
        prompts is ``target`` (within 5%), or None where no λ up to 1024 reaches it (measured once, kept in
        ``units.json``): the strength of a matched-KL cell."""
        key = f"{behaviour}|L{layer}|{method}|kl={target:g}|{'+' if sign > 0 else '-'}"
        return self._strength_at_kl(key, behaviour, layer, method, target, sign, rtol=0.05)

    def kl_prompts(self, behaviour: str) -> list[str]:
        """The first 8 test prompts up to the answer letter, as the A/B cells read them (A/B prompts are long:
        8 keep a strength search to a minute on a CPU)."""
        from sas_lens.loading.prompts import format_ab

        items = list(self.pairs(behaviour, "test"))[:8]
        return [text[: span[0]] for text, span in (format_ab(item, "A") for item in items)]

    def _strength_at_kl(self, key, behaviour, layer, method, target, sign, *, rtol) -> float | None:
        if key in self._units:  # measured in this process, or handed over by the driver of a Ray run
            return self._units[key]
        vector = self.vector(behaviour, layer, method)
        file = self.out_dir / "units.json"
        units = json.loads(file.read_text()) if file.exists() else {}
        if key not in units:
            from sas_lens.steering.strength import strength_for_kl

            sae = self.sae(layer) if base_method(method) == "sas" else None
            if hasattr(vector, "indices") and len(vector) == 0:
                units[key] = None  # an empty vector steers nothing at any λ
            else:
                try:
                    units[key] = strength_for_kl(
                        self.model,
                        vector,
                        target,
                        self.kl_prompts(behaviour),
                        sae=sae,
                        sign=float(sign),
                        high=1024.0,
                        rtol=rtol,
                    )
                except StrengthNotReachedError:
                    units[key] = None
                    print(f"sas_lens: {key} does not reach a next-token KL of {target:g} by |λ| = 1024.")
            atomic_write_text(file, json.dumps(units, indent=1))
        self._units[key] = units[key]
        return units[key]

    def residuals(self, behaviour: str, n_pairs: int | None = None):
        """The training pairs' residuals (the first ``n_pairs`` of them, or all) at every layer the run steers
        ``behaviour`` at, in one pass."""
        if n_pairs is not None and n_pairs >= len(self.pairs(behaviour, "train")):
            n_pairs = None  # every pair: the residuals already collected
        key = ("residuals", behaviour, n_pairs)
        if key not in self._data:
            from sas_lens.steering.extraction import collect_residuals

            layers = sorted({layer for _, b, layer, _, _ in plan_cells(self.cfg) if b == behaviour})
            pairs = self.pairs(behaviour, "train")
            pairs = pairs[:n_pairs] if n_pairs is not None else pairs
            self._data[key] = collect_residuals(self.model, pairs, layers, read=self.cfg.sas.get("read", "mean"))
        return self._data[key]

    def prepare(self, cells) -> dict:
        """Build here what ``cells`` share — vectors, strength units and matched-KL strengths, conditions, topic
        alignments — and return it for :meth:`adopt` in other processes (a Ray run builds each once, on the driver).

        Args:
            cells: the ``(kind, behaviour, layer, method, λ)`` cells about to run.
        """
        import dataclasses

        for kind, behaviour, layer, method, lam in cells:
            if kind == "topic":
                self.topic(behaviour)
                continue
            steered = (
                [(b, base_method(method)) for b in behaviour.split("+")]
                if kind == "composition"
                else [(behaviour, method)]
            )
            for name, steered_method in steered:
                if steered_method != "prompting":
                    self.vector(name, layer, steered_method)
                    self.unit(name, layer, steered_method)
            if kind == "ab_kl":
                self.matched_strength(behaviour, layer, method, abs(lam), 1 if lam > 0 else -1)
            if kind == "conditional":
                self.condition(behaviour, layer)
        vectors = {
            key: dataclasses.replace(v, diagnostics=None) if getattr(v, "diagnostics", None) is not None else v
            for key, v in self._vectors.items()
        }
        conditions = {
            key: {f.name: getattr(c, f.name) for f in dataclasses.fields(c) if f.name != "sae"}
            for key, c in self._data.items()
            if key[0] == "condition"
        }
        topics = {key: value for key, value in self._data.items() if key[0] == "topic"}
        return {"vectors": vectors, "units": dict(self._units), "conditions": conditions, "topics": topics}

    def adopt(self, shared: dict) -> None:
        """Use what :meth:`prepare` built in another process instead of building it again here.

        Args:
            shared: :meth:`prepare`'s result.
        """
        from sas_lens.steering.conditions import Condition

        self._vectors.update(shared["vectors"])
        self._units.update(shared["units"])
        self._data.update(shared["topics"])
        for key, fields in shared["conditions"].items():  # read at this process's own copy of the SAE
            self._data[key] = Condition(sae=self.sae(key[2]), **fields)


def _readable_vector(file: Path) -> Path | None:
    """``file`` if it holds a whole vector file; ``None`` if it is missing or cut off (then it is rebuilt).

    Vectors are written atomically now; a cut-off file can only come from an earlier sas_lens.
    """
    if not file.exists():
        return None
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(file), framework="pt") as handle:
            for name in handle.keys():
                handle.get_tensor(name)
    except (SafetensorError, OSError):
        print(f"sas_lens: {file} is cut off (an interrupted write); rebuilding it.")
        return None
    return file
