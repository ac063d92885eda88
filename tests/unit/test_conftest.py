"""The hook-leak check itself: it sees a hook left on a model."""

from tests.conftest import leftover_hooks
from tests.helpers import HOOK


def test_leftover_hooks_sees_a_hook_until_it_is_removed(model):
    model.add_hook(HOOK, lambda acts, hook: acts)
    assert leftover_hooks() == [HOOK]
    model.reset_hooks()
    assert leftover_hooks() == []
