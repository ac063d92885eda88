"""The exceptions sas_lens raises for bad input.

Each one subclasses the builtin a caller would already catch (``ValueError`` or
``KeyError``), and each message says what was wrong, what was expected and how
to fix it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class SASLensError(Exception):
    """Base class of every error sas_lens raises on purpose."""


class HookNotFoundError(SASLensError, KeyError):
    """A hook name that the model does not have."""

    def __str__(self) -> str:  # KeyError would print the message in quotes.
        return str(self.args[0]) if self.args else ""


class IncompatibleSAEError(SASLensError, ValueError):
    """An SAE that does not fit the model it is used with."""


class LayerOutOfRangeError(SASLensError, ValueError):
    """A layer index outside ``0 .. n_layers - 1``."""


class NoDefaultSAEError(SASLensError, LookupError):
    """No SAE ships for the requested default."""


class SAENotCachedError(SASLensError, LookupError):
    """An SAELens release's SAE asked for offline that the local Hugging Face cache does not hold."""


class StrengthNotReachedError(SASLensError, ValueError):
    """A steering key too weak to reach a target effect (a KL, a norm) within the strengths tried.

    Callers that fall back (steer at the largest λ, skip a row) catch this one only: an SAE or layer
    that does not fit is another error and must not be mistaken for a weak vector.
    """


class RunMismatchError(SASLensError, ValueError):
    """A results folder holding a run of other settings than the ones asked to resume it with."""


class DataError(SASLensError, ValueError):
    """Input data (text files, pair sets) that cannot be used."""


class MissingExtraError(SASLensError, ImportError):
    """An optional dependency that is not installed (the message says which extra installs it)."""


class EvalError(SASLensError, RuntimeError):
    """Cells of an evaluation run that failed (the others are saved; running again retries them)."""


def suggest(name: str, choices: Iterable[str], n: int = 3) -> str:
    """Return ``" Did you mean 'a', 'b'?"`` for the closest choices, or ``""``.

    Args:
        name: what was asked for.
        choices: what exists.
        n: at most this many suggestions.

    Example:
        >>> suggest("16kk", ["16k", "4k"])
        " Did you mean '16k'?"
    """
    close = difflib.get_close_matches(name, list(choices), n=n, cutoff=0.6)
    if not close:
        return ""
    return " Did you mean " + ", ".join(repr(c) for c in close) + "?"
