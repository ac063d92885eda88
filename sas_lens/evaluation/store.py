"""The finished cells of an evaluation run, appended to ``cells.jsonl`` as each one ends (what makes runs resumable)."""

from __future__ import annotations

import json
import math
from pathlib import Path

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
    return f"{kind}|{behaviour}|L{layer}|{method}|{lam:g}"


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
