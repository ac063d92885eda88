"""The hook-leak check itself: it sees a hook left on a model."""

from tests.conftest import leftover_hooks
from tests.helpers import HOOK


def test_leftover_hooks_sees_a_hook_until_it_is_removed(model):
    model.add_hook(HOOK, lambda acts, hook: acts)
    assert leftover_hooks() == [HOOK]
    model.reset_hooks()
    assert leftover_hooks() == []


def test_hooks_context_removes_hooks_even_after_an_error(model):
    try:
        with model.hooks(fwd_hooks=[(HOOK, lambda acts, hook: acts)]):
            raise RuntimeError("body failed")
    except RuntimeError:
        pass
    assert leftover_hooks() == []
