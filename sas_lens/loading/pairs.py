"""Contrastive data: A/B items and prompt/completion pairs, read from files or the shipped demo sets.

Two kinds of pair:

- :class:`ABItem`: a question whose text ends with lettered choices ``(A) ...``
  ``(B) ...``, the letter that matches the behaviour and the one that does not
  (the CAA format: ``{"question", "answer_matching_behavior", "answer_not_matching_behavior"}``);
- :class:`CompletionPair`: one prompt with a positive and a negative completion
  (``{"prompt", "positive", "negative"}``).

Example:
    >>> import sas_lens as sl
    >>> pairs = sl.load_pairs([{"prompt": "The film was", "positive": " wonderful", "negative": " dreadful"}])
    >>> pairs.kind, len(pairs)
    ('completion', 1)
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Union

from sas_lens.errors import DataError, suggest

_CHOICE = re.compile(r"\(([A-Z])\)")
_LETTER = re.compile(r"^\s*\(?([A-Z])\)?\s*$")
_AB_KEYS = ("question", "answer_matching_behavior", "answer_not_matching_behavior")
_COMPLETION_KEYS = ("prompt", "positive", "negative")


@dataclass(frozen=True)
class ABItem:
    """A multiple-choice item: ``question`` holds the lettered choices; letters are bare (``"A"``)."""

    question: str
    matching: str
    not_matching: str

    @property
    def choices(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(_CHOICE.findall(self.question)))


@dataclass(frozen=True)
class CompletionPair:
    """One prompt, a completion showing the behaviour and one showing its opposite."""

    prompt: str
    positive: str
    negative: str


Pair = Union[ABItem, CompletionPair]


@dataclass(frozen=True)
class PairSet(Sequence):
    """A named, validated list of pairs of one kind (``"ab"`` or ``"completion"``)."""

    name: str
    pairs: tuple[Pair, ...]
    source: str = "<in memory>"
    description: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.pairs:
            raise DataError(f"The pair set {self.name!r} ({self.source}) is empty; steering vectors need pairs.")
        kinds = {type(p) for p in self.pairs}
        if len(kinds) > 1:
            raise DataError(f"The pair set {self.name!r} mixes A/B items and completion pairs; use one kind per set.")

    @property
    def kind(self) -> str:
        return "ab" if isinstance(self.pairs[0], ABItem) else "completion"

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return PairSet(self.name, self.pairs[index], self.source, self.description)
        return self.pairs[index]

    def __iter__(self) -> Iterator[Pair]:
        return iter(self.pairs)

    def split(self, n_first: int) -> tuple["PairSet", "PairSet"]:
        """The first ``n_first`` pairs and the rest, e.g. to hold out test pairs."""
        return self[:n_first], self[n_first:]

    def __repr__(self) -> str:
        return f"PairSet({self.name!r}, {len(self)} {self.kind} pairs, source={self.source!r})"


def demo_sets() -> list[str]:
    """Names of the demo pair sets shipped with the package (``load_pairs("demo:<name>")``).

    Example:
        >>> demo_sets()
        ['caution', 'formality', 'sentiment', 'topic-food']
    """
    folder = resources.files("sas_lens") / "data" / "pairs"
    if not folder.is_dir():
        return []
    return sorted(p.name[: -len(".jsonl")] for p in folder.iterdir() if p.name.endswith(".jsonl"))


def load_pairs(source: str | Path | Iterable[Any], *, name: str | None = None, limit: int | None = None) -> PairSet:
    """Read contrastive pairs.

    Args:
        source: ``"demo:<name>"`` for a shipped set (see :func:`demo_sets`); a path to a
            CAA-format ``.json`` array, a ``.jsonl`` file or a ``.csv`` file with the keys of
            either kind; or an iterable of :class:`ABItem`, :class:`CompletionPair` or dicts.
        name: the set's name (default: the demo name or the file's stem).
        limit: keep the first ``limit`` pairs.

    Raises:
        DataError: unknown demo set, unreadable or malformed file, missing keys, empty
            set, or a matching letter that is not among the question's choices. The
            message names the file and the record.

    Example:
        >>> pairs = load_pairs([{"prompt": "The film was", "positive": " great", "negative": " dull"}])
        >>> pairs.kind, len(pairs)
        ('completion', 1)
    """
    if isinstance(source, str) and source.startswith("demo:"):
        demo = source[len("demo:") :]
        available = demo_sets()
        if demo not in available:
            raise DataError(f"No demo pair set {demo!r}.{suggest(demo, available)} Available: {available}.")
        path = resources.files("sas_lens") / "data" / "pairs" / f"{demo}.jsonl"
        records = _read_jsonl(path.read_text(encoding="utf-8"), source)
        return _to_pair_set(records, name or demo, source, limit)
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise DataError(f"No such pair file: {path}. Give a .json (CAA), .jsonl or .csv file, or 'demo:<name>'.")
        return _to_pair_set(_read_file(path), name or path.stem, str(path), limit)
    return _to_pair_set(list(source), name or "pairs", "<in memory>", limit)


def _read_file(path: Path) -> list[Any]:
    text = path.read_text(encoding="utf-8")
    suffix = path.suffix.lower()
    if suffix == ".json":
        try:
            records = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataError(f"{path} is not valid JSON (line {err.lineno}: {err.msg}).") from err
        if not isinstance(records, list):
            raise DataError(f"{path} must hold a JSON array of records, found a {type(records).__name__}.")
        return records
    if suffix == ".jsonl":
        return _read_jsonl(text, str(path))
    if suffix == ".csv":
        return list(csv.DictReader(text.splitlines()))
    raise DataError(f"Cannot read pairs from {path}: use a .json (CAA array), .jsonl or .csv file.")


def _read_jsonl(text: str, where: str) -> list[Any]:
    records = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise DataError(f"{where}, line {line_number}: not valid JSON ({err.msg}).") from err
    return records


def _to_pair_set(records: list[Any], name: str, where: str, limit: int | None) -> PairSet:
    if limit is not None:
        records = records[:limit]
    if not records:
        raise DataError(f"The pair set {name!r} ({where}) is empty; steering vectors need pairs.")
    pairs = tuple(_to_pair(record, where, index) for index, record in enumerate(records))
    return PairSet(name, pairs, where)


def _to_pair(record: Any, where: str, index: int) -> Pair:
    if isinstance(record, (ABItem, CompletionPair)):
        pair = record
    elif isinstance(record, dict):
        if all(key in record for key in _AB_KEYS):
            pair = ABItem(
                str(record["question"]),
                _letter(record["answer_matching_behavior"], where, index),
                _letter(record["answer_not_matching_behavior"], where, index),
            )
        elif all(key in record for key in _COMPLETION_KEYS):
            pair = CompletionPair(str(record["prompt"]), str(record["positive"]), str(record["negative"]))
        else:
            raise DataError(
                f"{where}, record {index}: keys {sorted(record)} are neither an A/B item {list(_AB_KEYS)} "
                f"nor a completion pair {list(_COMPLETION_KEYS)}."
            )
    else:
        raise DataError(f"{where}, record {index}: expected an object with named fields, got {type(record).__name__}.")
    _validate(pair, where, index)
    return pair


def _letter(value: Any, where: str, index: int) -> str:
    match = _LETTER.match(str(value))
    if not match:
        raise DataError(f"{where}, record {index}: answer {value!r} is not a choice letter like '(A)' or 'B'.")
    return match.group(1)


def _validate(pair: Pair, where: str, index: int) -> None:
    if isinstance(pair, ABItem):
        if not pair.question.strip():
            raise DataError(f"{where}, record {index}: the question is empty.")
        choices = pair.choices
        for letter in (pair.matching, pair.not_matching):
            if letter not in choices:
                raise DataError(
                    f"{where}, record {index}: answer ({letter}) is not among the question's choices "
                    f"{['(' + c + ')' for c in choices] or 'none found: choices are written (A) ..., (B) ...'}."
                )
        if pair.matching == pair.not_matching:
            raise DataError(
                f"{where}, record {index}: the matching and non-matching answers are both ({pair.matching})."
            )
    else:
        if not pair.prompt.strip():
            raise DataError(f"{where}, record {index}: the prompt is empty.")
        if pair.positive == pair.negative:
            raise DataError(f"{where}, record {index}: the positive and negative completions are identical.")
        if not pair.positive.strip() or not pair.negative.strip():
            raise DataError(f"{where}, record {index}: a completion is empty.")
