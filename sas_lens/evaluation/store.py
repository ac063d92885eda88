"""The finished cells of an evaluation run, appended to ``cells.jsonl`` as each one ends (what makes runs resumable)."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import MISSING, asdict, fields
from pathlib import Path

from sas_lens.errors import RunMismatchError
from sas_lens.loading.files import atomic_write_text

# Fields of a record that say which cell it is, as opposed to what was measured in it.
CELL_FIELDS = ("key", "kind", "behaviour", "layer", "method", "lam", "seconds", "nan_fields")


def jsonable(record: dict) -> dict:
    """``record`` for strict JSON: a non-finite number (an open-ended cell with no answers) becomes ``None`` and
    its field is listed in ``nan_fields``, so that :func:`restored` makes it NaN again.

    Args:
        record: a cell's record.

    Example:
        >>> jsonable({"key": "k", "score": float("nan")})
        {'key': 'k', 'score': None, 'nan_fields': ['score']}
    """
    nan_fields = [k for k, v in record.items() if isinstance(v, float) and not math.isfinite(v)]
    if not nan_fields:
        return record
    return {**{k: (None if k in nan_fields else v) for k, v in record.items()}, "nan_fields": nan_fields}


def restored(record: dict) -> dict:
    """A record read back from JSON, its non-finite fields NaN again (the inverse of :func:`jsonable`).

    Args:
        record: a record as :func:`jsonable` wrote it.

    Example:
        >>> restored({"key": "k", "score": None, "nan_fields": ["score"]})["score"]
        nan
    """
    record = dict(record)
    for name in record.pop("nan_fields", []):
        record[name] = float("nan")
    return record


def cell_key(kind: str, behaviour: str, layer: int, method: str, lam: float) -> str:
    """The cell's key in ``cells.jsonl``: ``kind|behaviour|L<layer>|method|λ``.

    Args:
        kind: ``ab``, ``capability``, ``open`` or ``topic``.
        behaviour: the behaviour (or topic).
        layer: the steered layer.
        method: the steering method.
        lam: the strength.

    Example:
        >>> cell_key("ab", "sycophancy", 9, "sas", 4.0)
        'ab|sycophancy|L9|sas|4'
    """
    return f"{kind}|{behaviour}|L{layer}|{method}|{lam:.12g}"  # "g" alone keeps 6 digits: 1024.5 and 1024.4 collide


class CellStore:
    """Finished cells, one JSON line each, appended (and flushed) as soon as a cell is done."""

    def __init__(self, path: Path):
        self.path = path
        self.cells: dict[str, dict] = {}
        if path.exists():
            for line in path.read_text().splitlines():
                if line.strip():
                    try:
                        record = restored(json.loads(line))
                    except json.JSONDecodeError:
                        continue  # a line cut off by an interruption: that cell is redone
                    self.cells[record["key"]] = record

    def __contains__(self, key: str) -> bool:
        return key in self.cells

    def add(self, record: dict) -> None:
        self.cells[record["key"]] = record
        with open(self.path, "a") as handle:
            handle.write(json.dumps(jsonable(record), allow_nan=False) + "\n")
            handle.flush()

    def unsteered(self, kind: str, behaviour: str) -> dict | None:
        """The figures of a finished λ = 0 cell of this kind and behaviour, if any.

        At λ = 0 every method is the same unsteered model on the same items (no vector, no
        instruction) at every layer, so the cell is measured once and shared.
        """
        for record in self.cells.values():
            if record["kind"] == kind and record["behaviour"] == behaviour and record["lam"] == 0:
                if "measured_in" in record or "@delta=0" in record["method"]:  # a copy, or the SAE spliced in
                    continue
                shared = {k: v for k, v in record.items() if k not in CELL_FIELDS}
                return {**shared, "measured_in": record["key"]}
        return None


RUN_IDENTITY = "run_identity.json"
# Settings that only add cells (another λ, method, layer, behaviour...) may change between resumes; every
# other setting changes what a finished cell or a saved vector means (its items, τ, rule, SAE, judge...).
GRID_FIELDS = frozenset(
    {
        "behaviours",
        "layers",
        "methods",
        "lams",
        "cost_lams",
        "tau_sweep",
        "data_sizes",
        "layer_sweep_behaviour",
        "compositions",
        "composition_lams",
        "conditional",
        "topics",
        "topic_strengths",
        "topic_swap",
        "device",
        "cost_budget",
        "delta_ablation",
        "kl_targets",
    }
)
# What a run folder holds besides its identity; a restart removes these.
RUN_FILES = ("cells.jsonl", "vectors", "topics", "units.json", "results.json", RUN_IDENTITY)


def run_identity(cfg) -> dict:
    """The settings of ``cfg`` that finished cells and saved vectors depend on (JSON-ready).

    Args:
        cfg: an :class:`~sas_lens.evaluation.config.EvalConfig`.

    Example:
        >>> from sas_lens.evaluation.config import EvalConfig
        >>> "tau" in run_identity(EvalConfig(behaviours=("refusal",), data_dir="caa"))
        True
    """
    settings = json.loads(json.dumps(asdict(cfg), default=str))
    return {name: value for name, value in settings.items() if name not in GRID_FIELDS}


def _defaults_of(cfg, names: set[str]) -> dict:
    """The JSON-ready defaults of those of ``cfg``'s fields named in ``names`` that have one."""
    values = {}
    for spec in fields(cfg):
        if spec.name not in names:
            continue
        if spec.default is not MISSING:
            values[spec.name] = spec.default
        elif spec.default_factory is not MISSING:
            values[spec.name] = spec.default_factory()
    return json.loads(json.dumps(values, default=str))


def claim_run_folder(cfg, out_dir: Path, *, restart: bool = False) -> None:
    """Record ``cfg``'s identity in ``out_dir``, or refuse to resume a run that was made with other settings.

    Args:
        cfg: the run's config.
        out_dir: the results folder.
        restart: remove the old run's results first (cells, vectors, units) and start over.

    Raises:
        RunMismatchError: ``out_dir`` holds a run whose settings differ (the message lists them).

    Example:
        >>> from sas_lens.evaluation.config import EvalConfig
        >>> claim_run_folder(EvalConfig(behaviours=("refusal",), data_dir="caa", tau=0.7), Path("eval_out"))
        >>> claim_run_folder(EvalConfig(behaviours=("refusal",), data_dir="caa", tau=0.9), Path("eval_out"))
        Traceback (most recent call last):
        ...
        sas_lens.errors.RunMismatchError: eval_out holds a run made with other settings (tau: 0.7 -> 0.9); ...
    """
    path = out_dir / RUN_IDENTITY
    identity = run_identity(cfg)
    if restart:
        for name in RUN_FILES:
            target = out_dir / name
            shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    elif path.exists():
        recorded = json.loads(path.read_text())
        # A setting added by a later sas_lens is missing from an older run's record: at its default it changes
        # nothing that run measured, so it matches.
        recorded = {**_defaults_of(cfg, set(identity) - set(recorded)), **recorded}
        changed = sorted(k for k in set(recorded) | set(identity) if recorded.get(k) != identity.get(k))
        if changed:
            lines = "; ".join(f"{k}: {recorded.get(k)!r} -> {identity.get(k)!r}" for k in changed)
            raise RunMismatchError(
                f"{out_dir} holds a run made with other settings ({lines}); its finished cells and vectors would be "
                "mixed with new ones. Use another --out, or restart this one (run_evaluation(..., restart=True), "
                "`sas-lens eval ... --restart`), which deletes its results."
            )
    elif (out_dir / "cells.jsonl").exists():
        raise RunMismatchError(
            f"{out_dir} holds cells of a run that recorded no settings (an earlier sas_lens), so they cannot be "
            "checked against this config. Use another --out, or restart it (--restart), which deletes its results."
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(identity, indent=1))
