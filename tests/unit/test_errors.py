import pytest

from sas_lens.errors import (
    DataError,
    HookNotFoundError,
    IncompatibleSAEError,
    SASLensError,
    suggest,
)


def test_errors_are_builtin_subclasses():
    assert issubclass(HookNotFoundError, KeyError) and issubclass(HookNotFoundError, SASLensError)
    assert issubclass(IncompatibleSAEError, ValueError)
    assert issubclass(DataError, ValueError)


def test_hook_error_prints_without_quotes():
    assert str(HookNotFoundError("no hook 'x'")) == "no hook 'x'"


@pytest.mark.parametrize(
    ("name", "expected"),
    [("blocks.0.hook_resid_pst", " Did you mean 'blocks.0.hook_resid_post'?"), ("zzz", "")],
)
def test_suggest(name, expected):
    assert suggest(name, ["blocks.0.hook_resid_post", "blocks.0.hook_resid_pre"], n=1) == expected
