"""Reusing the unsteered blocks below the first hook: the same probabilities as the full forward, fewer blocks run."""

import pytest
import torch

import sas_lens as sl
from sas_lens.steering.prefix import PrefixCache, first_hooked_layer
from sas_lens.steering.scoring import ab_probabilities
from tests.helpers import random_sae
from tests.unit.test_scoring import ITEMS
from tests.unit.test_steering import vector_for

# Both paths run the same blocks on the same batches; only where the residual comes from differs
# (kept from an earlier call or just computed), so agreement to float32 rounding is expected.
TOLERANCE = dict(atol=1e-6, rtol=1e-5)


class BlockCalls:
    """Counts the forward calls of each block through torch's own hooks (invisible to TransformerLens's hook points)."""

    def __init__(self, model):
        self.counts = [0] * model.cfg.n_layers
        self.handles = [block.register_forward_pre_hook(self._counter(i)) for i, block in enumerate(model.blocks)]

    def _counter(self, i):
        def count(module, args):
            self.counts[i] += 1

        return count

    def remove(self):
        for handle in self.handles:
            handle.remove()


def test_a_sweep_from_the_prefix_equals_the_full_forward_and_skips_the_blocks_below(model):
    sae = random_sae("jumprelu")  # reads and steers blocks.1.hook_resid_post
    sas, dense = vector_for(sae, nnz=10), sl.dense_vector(model, ITEMS, layer=2)
    cache, calls = PrefixCache(), BlockCalls(model)
    try:
        for steering in ({sas: -8.0}, {sas: 8.0}, {dense: 6.0}, {sas: 8.0, dense: 6.0}, {}):
            full = ab_probabilities(model, ITEMS, steering=steering, sae=sae, batch_size=2)
            before = list(calls.counts)
            reused = ab_probabilities(model, ITEMS, steering=steering, sae=sae, batch_size=2, prefix=cache)
            torch.testing.assert_close(reused, full, **TOLERANCE)
            assert calls.counts[2] - before[2] == 2  # two batches, the top block always runs
        assert not torch.allclose(
            ab_probabilities(model, ITEMS, steering={sas: 8.0}, sae=sae), ab_probabilities(model, ITEMS), atol=1e-4
        )  # the sweep steers
        # block 0 ran for the prefixes only: start 1 (SAS), 2 (dense), 3 (unsteered), each once per batch
        before = list(calls.counts)
        ab_probabilities(model, ITEMS, steering={sas: 3.0}, sae=sae, batch_size=2, prefix=cache)
        assert calls.counts[0] == before[0]
        assert len(cache) == 3 * 2
    finally:
        calls.remove()


def test_other_prompts_and_a_hook_of_the_caller_below_the_steered_layer_are_not_served_from_the_cache(model):
    sae = random_sae("jumprelu")
    vec, outer = vector_for(sae, nnz=10), sl.dense_vector(model, ITEMS, layer=0)
    cache = PrefixCache()
    ab_probabilities(model, ITEMS, steering={vec: 8.0}, sae=sae, prefix=cache)
    other = sl.load_pairs(
        [
            {
                "question": "the food was cold ?\n(A) yes\n(B) no",
                "answer_matching_behavior": "(A)",
                "answer_not_matching_behavior": "(B)",
            }
        ]
    )
    torch.testing.assert_close(
        ab_probabilities(model, other, steering={vec: 8.0}, sae=sae, prefix=cache),
        ab_probabilities(model, other, steering={vec: 8.0}, sae=sae),
        **TOLERANCE,
    )
    with sl.steer(model, {outer: 6.0}):  # the caller steers layer 0 around the sweep
        expected = ab_probabilities(model, ITEMS, steering={vec: 8.0}, sae=sae)
        got = ab_probabilities(model, ITEMS, steering={vec: 8.0}, sae=sae, prefix=cache)
    torch.testing.assert_close(got, expected, **TOLERANCE)
    assert not torch.allclose(got, ab_probabilities(model, ITEMS, steering={vec: 8.0}, sae=sae), atol=1e-4)


@pytest.mark.parametrize(
    ("hooks", "expected"),
    [
        ([], 3),
        (["blocks.2.hook_resid_post"], 2),
        (["blocks.1.attn.hook_z", "blocks.2.hook_resid_pre"], 1),
        (["hook_embed"], 0),
        (["ln_final.hook_normalized"], 3),
    ],
)
def test_first_hooked_layer(model, hooks, expected):
    with model.hooks(fwd_hooks=[(name, lambda act, hook: act) for name in hooks]):
        assert first_hooked_layer(model) == expected
    assert first_hooked_layer(model) == 3


def test_a_full_cache_keeps_nothing_more_and_still_answers(model):
    sae = random_sae("jumprelu")
    vec = vector_for(sae, nnz=10)
    cache = PrefixCache(max_bytes=0)
    torch.testing.assert_close(
        ab_probabilities(model, ITEMS, steering={vec: 8.0}, sae=sae, prefix=cache),
        ab_probabilities(model, ITEMS, steering={vec: 8.0}, sae=sae),
        **TOLERANCE,
    )
    assert len(cache) == 0 and cache.n_bytes == 0


def test_rotary_positions_survive_the_restart_under_left_padding():
    from tests.helpers import tiny_model

    model = tiny_model(positional_embedding_type="rotary")  # Gemma's: positions come from the attention mask
    vec = sl.dense_vector(model, ITEMS, layer=1)
    full = ab_probabilities(model, ITEMS, steering={vec: 6.0}, batch_size=3)  # items of three lengths: padded
    torch.testing.assert_close(
        ab_probabilities(model, ITEMS, steering={vec: 6.0}, batch_size=3, prefix=PrefixCache()), full, **TOLERANCE
    )


def test_a_new_model_at_a_dead_models_address_gets_none_of_its_residuals(model):
    from tests.helpers import tiny_model

    cache = PrefixCache()
    vec = sl.dense_vector(model, ITEMS, layer=1)
    ab_probabilities(model, ITEMS, steering={vec: 6.0}, prefix=cache)
    other = tiny_model(seed=1)
    cache._models[id(other)] = cache._models.pop(id(model))  # as if `other` lived where `model` died
    for key in list(cache._entries):
        cache._entries[(id(other), *key[1:])] = cache._entries.pop(key)
    other_vec = sl.dense_vector(other, ITEMS, layer=1)
    torch.testing.assert_close(
        ab_probabilities(other, ITEMS, steering={other_vec: 6.0}, prefix=cache),
        ab_probabilities(other, ITEMS, steering={other_vec: 6.0}),
        **TOLERANCE,
    )
