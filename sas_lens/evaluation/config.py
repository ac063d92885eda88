"""What an evaluation run measures: :class:`EvalConfig`, read from TOML or JSON by :func:`load_config`.

Example:
    >>> cfg = EvalConfig(behaviours=("sycophancy",), data_dir="datasets/caa", layers=(9, 12))
    >>> cfg.grid("dense")
    (-4.0, 0.0, 4.0)
    >>> cfg.sae_for(12, shipped=False)
    False
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sas_lens.errors import DataError
from sas_lens.evaluation.behaviour import METHODS

# sas_vector's settings a config may set (tau has its own key), and dense_vector's: with them every rule of the
# efficiency curve (README) is measured on a CAA behaviour by `sas-lens eval`.
SAS_SETTINGS = {
    "selection", "top_k", "rank_by", "read", "mean_over", "strict", "gate",
    "min_output_score", "max_density", "drop_bos", "fit",
}  # fmt: skip
DENSE_SETTINGS = {"fit"}


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
    # layer → a shipped name or folder, or [release, sae_id] (e.g. Gemma Scope); None: the shipped default.
    # Layers not named here use the shipped SAE at that layer, if any (embedded model only).
    saes: dict[str, Any] = field(default_factory=lambda: {"9": None})
    heldout_text: str | None = None
    train_pairs: int = 200
    test_items: int = 50
    open_ended: int = 10
    mmlu: int | str = 100  # items; 0: none, "all": every item
    truthfulqa: int | str = 100
    perplexity_tokens: int = 10_000
    max_new_tokens: int = 40
    tau: float = 0.7
    # further sas_vector settings, e.g. {"selection": "paper"} for the paper's Algorithms 1 and 2 exactly
    sas: dict[str, Any] = field(default_factory=dict)
    dense: dict[str, Any] = field(default_factory=dict)  # dense_vector settings: {"fit": "preference"}
    cost_budget: float = 1.5  # matched-cost summary: the best shift whose perplexity stays within this × unsteered
    # The paper's open questions, A/B cells at the main layer: Algorithm 1 exactly at each τ ("sas@tau=0.5"),
    # and SAS and dense vectors from the first n training pairs ("sas@n=50", "dense@n=50").
    tau_sweep: tuple[float, ...] = ()
    data_sizes: tuple[int, ...] = ()
    layer_sweep_behaviour: str | None = None  # other layers: only this behaviour's A/B sweep
    # "raw": λ as written (SAE-code units for SAS, residual units for dense); "kl": λ in multiples of each
    # vector's own λ at a mean next-token KL of 0.1 on its test prompts, so that methods and layers compare
    # at matched cost.
    strength_unit: str = "raw"
    # The matched-KL summary: at the main layer, each steered method's A/B shift at the λ (each sign found
    # on its own) where the mean next-token KL on the behaviour's first 8 test prompts is each target, e.g.
    # [0.05, 0.1, 0.2, 0.4]; "ab_kl" cells, tabulated by matched_kl_table.
    kl_targets: tuple[float, ...] = ()
    # The paper's Δ ablation: at every layer with an SAE, SAS with the reconstruction error dropped
    # ("sas@delta=0"; at λ = 0 that is the SAE spliced in) beside SAS with it, A/B and capability cells.
    delta_ablation: bool = False
    # Pairs of behaviours steered together at the main layer, every λ pair of composition_lams (in the
    # strength unit), each scored on its own A/B items: [["refusal", "sycophancy"]].
    compositions: tuple[tuple[str, str], ...] = ()
    composition_lams: tuple[float, ...] = (-4.0, 0.0, 4.0)
    # Behaviours also steered with a per-sequence condition built from their own training questions against
    # the other behaviours' (condition_latents latents): their A/B items and MMLU, gated and not.
    conditional: tuple[str, ...] = ()
    condition_latents: int = 4
    judge: dict[str, Any] | None = None
    topics: dict[str, str] = field(default_factory=dict)  # name → "demo:<topic>" or a file, one text per line
    topic_strengths: tuple[float, ...] = (2.0, 4.0, 8.0)  # "amplify"
    topic_swap: tuple[float, ...] = (1.0,)  # blends in [0, 1] of the original's "swap", "clamp" and "weight"
    topic_summary: str = "avg"  # how each reference prompt is summarised (sas_lens.topic.alignment.SUMMARIES)
    topic_swap_k: int = 32
    topic_latents: int = 64
    topic_min_prompts: int = 5  # amplify picks latents firing on at least this many reference prompts
    topic_prompts: int = 12
    finetune_steps: int = 30  # 0: no fine-tuning baseline

    def __post_init__(self) -> None:
        if not self.behaviours and not self.topics:
            raise ValueError("The evaluation config names no behaviours and no topics.")
        from sas_lens.topic.alignment import SUMMARIES

        if self.topic_summary not in SUMMARIES:
            raise ValueError(f"topic_summary must be one of {SUMMARIES}, got {self.topic_summary!r}.")
        if not all(0 <= x <= 1 for x in self.topic_swap):
            raise ValueError(f"topic_swap blends must lie in [0, 1], got {self.topic_swap}.")
        if not all(math.isfinite(x) for x in self.topic_strengths):
            raise ValueError(f"topic_strengths must be finite, got {self.topic_strengths}.")
        if self.topics and self.sae_for(self.layers[0]) is False:
            raise ValueError(f"Topics are scored on the SAE of the main layer {self.layers[0]}; name it in saes.")
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ValueError(f"Unknown methods {unknown}; choose from {list(METHODS)}.")
        if not all(0 <= t <= 1 for t in self.tau_sweep):
            raise ValueError(f"tau_sweep values must lie in [0, 1], got {self.tau_sweep}.")
        if not all(isinstance(n, int) and n >= 2 for n in self.data_sizes):
            raise ValueError(f"data_sizes must be whole numbers of pairs, at least 2, got {self.data_sizes}.")
        for table, known in (("sas", SAS_SETTINGS), ("dense", DENSE_SETTINGS)):
            unknown_settings = set(getattr(self, table)) - known
            if unknown_settings:
                raise ValueError(f"Unknown {table} settings {sorted(unknown_settings)}; choose from {sorted(known)}.")
        if self.strength_unit not in ("raw", "kl"):
            raise ValueError(f"strength_unit must be 'raw' or 'kl', got {self.strength_unit!r}.")
        if not all(isinstance(x, (int, float)) and math.isfinite(x) and x > 0 for x in self.kl_targets):
            raise ValueError(
                f"kl_targets are mean next-token KLs, finite and positive (e.g. 0.1), got {self.kl_targets}."
            )
        if self.delta_ablation and "sas" not in self.methods:
            raise ValueError("delta_ablation compares SAS with and without Δ; add 'sas' to methods.")
        for pair in self.compositions:
            if len(pair) != 2 or not set(pair) <= set(self.behaviours) or pair[0] == pair[1]:
                raise ValueError(f"A composition is two different behaviours of the config, got {list(pair)}.")
        unknown_conditional = sorted(set(self.conditional) - set(self.behaviours))
        if unknown_conditional:
            raise ValueError(f"conditional names behaviours the config does not: {unknown_conditional}.")
        if self.conditional and self.sae_for(self.layers[0]) is False:
            raise ValueError(f"Conditions read the SAE of the main layer {self.layers[0]}; name it in saes.")
        if self.conditional and len(self.behaviours) < 2:
            raise ValueError("A condition is built against the other behaviours' questions; name at least two.")
        if not all(math.isfinite(x) for x in self.composition_lams):
            raise ValueError(f"composition_lams must be finite, got {self.composition_lams}.")
        for name in ("mmlu", "truthfulqa"):
            value = getattr(self, name)
            if value != "all" and not (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
                raise ValueError(f'{name} is a number of items (0: none) or "all", got {value!r}.')
        if self.conditional and self.mmlu == 0:
            raise ValueError("Conditional cells measure MMLU gated and not; give mmlu a number of items.")
        if not self.cost_budget > 1:
            raise ValueError(f"cost_budget is a perplexity ratio above 1, got {self.cost_budget}.")
        for name in ("lams", "cost_lams"):
            for method, grid in getattr(self, name).items():
                if not all(isinstance(x, (int, float)) and math.isfinite(x) for x in grid):
                    raise ValueError(f"{name}[{method!r}] must hold finite numbers, got {grid}.")

    def grid(self, method: str, costs: bool = False) -> tuple[float, ...]:
        grids = self.cost_lams if costs else self.lams
        default = (-1.0, 0.0, 1.0) if method == "prompting" else ((-4.0, 4.0) if costs else (-4.0, 0.0, 4.0))
        grid = tuple(float(x) for x in grids.get(method, default))
        return tuple(sorted(set(grid) | {0.0})) if costs else grid

    def sae_for(self, layer: int, *, shipped: bool = True) -> Any:
        """The SAE for ``layer``: a shipped name, a folder or ``[release, sae_id]`` (None: the shipped
        default), else (``shipped``, embedded model) the shipped SAE at that layer, else False."""
        if str(layer) in self.saes:
            return self.saes[str(layer)]
        if shipped and self.model is None:
            from sas_lens.loading.saes import shipped_sae_at

            return shipped_sae_at(layer) or False
        return False


def load_config(path: str | Path) -> EvalConfig:
    """Read an :class:`EvalConfig` from a ``.json`` or ``.toml`` file; paths in it are relative to the file.

    Args:
        path: the config file; its keys are :class:`EvalConfig`'s fields.

    Raises:
        DataError: the file is missing, not valid TOML/JSON, or names unknown settings.

    Example:
        >>> cfg = sl.load_config("configs/caa_eval.toml")   # doctest: +SKIP
    """
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
    for key in ("behaviours", "layers", "methods", "conditional"):
        if key in raw:
            raw[key] = tuple(raw[key])
    if "compositions" in raw:
        raw["compositions"] = tuple(tuple(pair) for pair in raw["compositions"])
    if "composition_lams" in raw:
        raw["composition_lams"] = tuple(float(x) for x in raw["composition_lams"])
    for key in ("topic_strengths", "topic_swap", "tau_sweep", "kl_targets"):
        if key in raw:
            raw[key] = tuple(float(x) for x in raw[key])
    if "data_sizes" in raw:
        raw["data_sizes"] = tuple(raw["data_sizes"])
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
