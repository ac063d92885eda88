"""Fixtures shared by all tiers, and the check that no test leaves a hook behind."""

from __future__ import annotations

import os
import weakref

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing in the tests may reach a model hub

from transformer_lens.hook_points import HookPoint  # noqa: E402

from tests.helpers import tiny_model, tiny_tokenizer  # noqa: E402

_touched: "weakref.WeakSet[HookPoint]" = weakref.WeakSet()
_original_add_hook = HookPoint.add_hook


def _recording_add_hook(self, *args, **kwargs):
    _touched.add(self)
    return _original_add_hook(self, *args, **kwargs)


HookPoint.add_hook = _recording_add_hook


def leftover_hooks() -> list[str]:
    """Names of hook points that still carry a forward or backward hook."""
    return sorted(hp.name or "<unnamed>" for hp in list(_touched) if hp._forward_hooks or hp._backward_hooks)


@pytest.fixture(autouse=True)
def no_hook_left_behind():
    """Fail any test that leaves a hook on a model, even one whose body raised."""
    yield
    left = leftover_hooks()
    for hp in list(_touched):
        hp.remove_hooks("both", including_permanent=True)
    _touched.clear()
    if left:
        pytest.fail(f"hooks left on a model after the test: {left}")


@pytest.fixture
def model():
    return tiny_model()


@pytest.fixture
def tokenizer():
    return tiny_tokenizer()
