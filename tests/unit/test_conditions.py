"""Conditional steering: a condition that never fires changes nothing, one that always fires is plain steering,
per-token gating is a manual masked edit, and per-sequence decisions hold under the KV cache and left padding."""

import inspect

import pytest
import torch

import sas_lens as sl
from sas_lens.steering.conditions import Condition, text_firing_rates
from sas_lens.steering.engine import steer
from sas_lens.steering.generation import generate
from sas_lens.steering.vectors import DenseVector
from tests.conftest import leftover_hooks
from tests.helpers import HOOK, random_sae, tiny_model
from tests.unit.test_steering import TOKENS, literal_edit, residual, vector_for

PROVENANCE = {"hook_name": HOOK, "layer": 1, "model_name": "tiny-random"}


def dense(seed=0):
    return DenseVector(torch.randn(16, generator=torch.Generator().manual_seed(seed)) * 3, PROVENANCE)


def silent_latent(sae, model, tokens=TOKENS):
    off = torch.nonzero((sae.encode(residual(model, tokens)) == 0).all(dim=0).all(dim=0)).squeeze(-1)
    assert len(off), "every latent fires somewhere; pick other tokens"
    return int(off[0])


def test_a_condition_that_never_fires_leaves_the_model_bit_identical(model):
    sae = random_sae("jumprelu")
    never = sl.Condition.latents(sae, [silent_latent(sae, model)])
    clean = model(TOKENS)
    for per in ("token", "sequence"):
        with steer(model, {dense(): 5.0, vector_for(sae): 4.0}, sae=sae, when=Condition(sae, never.ids, per=per)):
            assert torch.equal(model(TOKENS), clean)


def test_a_condition_that_always_fires_is_plain_steering(model):
    sae = random_sae("jumprelu")
    always = sl.Condition.latents(sae, [0, 1], threshold=-1.0)  # codes are ≥ 0
    steering = {dense(): 5.0, vector_for(sae): 4.0}
    with steer(model, steering, sae=sae):
        plain = model(TOKENS)
    for per in ("token", "sequence"):
        with steer(model, steering, sae=sae, when=Condition(sae, always.ids, -1.0, per)):
            assert torch.equal(model(TOKENS), plain)
    assert not torch.equal(plain, model(TOKENS))


@pytest.mark.parametrize("condition_layer", [0, 1])
def test_per_token_gating_is_the_manual_edit_where_the_condition_fires(model, condition_layer):
    sae = random_sae("jumprelu")
    reader = random_sae("jumprelu", hook_name=f"blocks.{condition_layer}.hook_resid_post", seed=5)
    _, cache = model.run_with_cache(TOKENS, names_filter=reader.cfg.metadata.hook_name)
    codes = reader.encode(cache[reader.cfg.metadata.hook_name])
    latent = int(((codes > 0).float().mean(dim=(0, 1)) - 0.5).abs().argmin())  # fires on about half the tokens
    condition = sl.Condition.latents(reader, [latent])
    fires = codes[..., latent] > 0
    assert fires.any() and not fires.all()
    vec = vector_for(sae)
    a = residual(model)
    edited = torch.where(fires[..., None], literal_edit(sae, a, 6.0 * vec.dense()), a)
    with steer(model, {vec: 6.0}, sae=sae, when=condition):
        torch.testing.assert_close(model(TOKENS), model(edited, start_at_layer=2), atol=1e-4, rtol=1e-4)


def prompts_that_split(sae, model, prompts):
    """A latent firing (after BOS) on the first prompt and on none of the others' tokens."""
    codes = []
    for prompt in prompts:
        tokens = model.to_tokens(prompt)
        codes.append(sae.encode(residual(model, tokens))[0, 1:] > 0)
    only_first = codes[0].any(dim=0) & ~torch.stack([c.any(dim=0) for c in codes[1:]]).any(dim=0)
    assert only_first.any(), "no latent separates the prompts; pick others"
    return int(torch.nonzero(only_first)[0])


def test_per_sequence_decisions_hold_under_the_kv_cache_and_left_padding():
    model = tiny_model(positional_embedding_type="rotary")
    sae = random_sae("jumprelu")
    prompts = ["the movie was very good and the music was fun", "i love", "the plot"]
    condition = sl.Condition.latents(sae, [prompts_that_split(sae, model, prompts)], per="sequence")
    steering = {dense(): 6.0}
    together = generate(model, prompts, steering=steering, when=condition, max_new_tokens=5)
    alone = [generate(model, p, steering=steering, when=condition, max_new_tokens=5)[0] for p in prompts]
    assert together == alone  # left padding never fires the condition
    plain = generate(model, prompts, steering=steering, max_new_tokens=5)
    unsteered = generate(model, prompts, max_new_tokens=5)
    assert together[0] == plain[0] and together[1:] == unsteered[1:]  # steered where the prompt fired, only
    assert plain[0] != unsteered[0]
    outputs = []
    for cached in (True, False):
        with steer(model, steering, when=condition) as policy:
            policy.reset()
            outputs.append(
                model.generate(
                    model.to_tokens(prompts[0]),
                    max_new_tokens=6,
                    do_sample=False,
                    verbose=False,
                    use_past_kv_cache=cached,
                ).tolist()
            )
    assert outputs[0] == outputs[1]


def test_a_condition_read_after_the_steered_hook_is_refused_before_any_hook(model):
    late = random_sae("jumprelu", hook_name="blocks.2.hook_resid_post")
    with pytest.raises(ValueError, match="after the steered hook"):
        with steer(model, {dense(): 1.0}, when=sl.Condition.latents(late, [0])):
            pass
    assert leftover_hooks() == []
    # pytest's jaxtyping/beartype hook may wrap build_hooks (and refuse first): the library's own check, unwrapped
    from sas_lens.steering.engine import build_hooks

    with pytest.raises(TypeError, match="when= takes a sl.Condition"):
        inspect.unwrap(build_hooks)(model, {dense(): 1.0}, when=[0])
    with pytest.raises(ValueError, match="outside the SAE"):
        sl.Condition.latents(late, [10_000])


def test_conditions_from_examples_watch_the_latents_and_thresholds_that_separate_the_texts(model):
    from sas_lens.steering.conditions import best_thresholds, text_max_codes

    sae = random_sae("jumprelu")
    on, off = ["the movie was good", "the music was fun"], ["i hate it", "the plot was bad"]
    rates = text_firing_rates(model, sae, on)
    peaks, by_hand = text_max_codes(model, sae, on), torch.zeros(sae.cfg.d_sae)
    for i, text in enumerate(on):
        codes = sae.encode(residual(model, model.to_tokens(text)))[0, 1:]
        by_hand += (codes > 0).any(dim=0).float()
        torch.testing.assert_close(peaks[i], codes.max(dim=0).values.detach())
    torch.testing.assert_close(rates, by_hand / len(on))
    condition = sl.Condition.from_examples(model, sae, on, off, top_k=2)
    # literal reference, brute force: each latent's best gap over thresholds at its own on-text peaks
    off_peaks = [sae.encode(residual(model, model.to_tokens(text)))[0, 1:].max(dim=0).values.detach() for text in off]

    def best_by_hand(latent):
        on_values, off_values = [float(p[latent]) for p in peaks], [float(p[latent]) for p in off_peaks]
        candidates = [
            (sum(v >= t for v in on_values) / 2 - sum(v >= t for v in off_values) / 2, t) for t in on_values if t > 0
        ]
        return max(candidates, key=lambda pair: pair[0], default=(0.0, 0.0))

    gaps = {latent: best_by_hand(latent)[0] for latent in range(sae.cfg.d_sae)}
    chosen_gaps = sorted(gaps[latent] for latent in condition.ids)
    assert chosen_gaps == sorted(gaps.values())[-2:]  # the two widest gaps (ties may pick either latent)
    for latent, t in zip(condition.ids, condition.threshold):
        assert t == pytest.approx(best_by_hand(latent)[1], rel=1e-5)
    gap, _ = best_thresholds(torch.tensor([[3.0], [2.0]]), torch.tensor([[1.0], [3.5]]))
    assert gap.tolist() == [0.5]  # at 2.0: both on texts reach it, one of two off texts


def test_a_longer_second_prompt_in_one_block_is_steered_as_if_alone(model):
    sae = random_sae("jumprelu")
    vec = vector_for(sae, nnz=12)
    short, long = TOKENS[:1, :4], TOKENS[1:]  # long does not begin with short: a new prompt, not a re-run
    for positions in ("prompt", "all"):
        with steer(model, {vec: 5.0}, sae=sae, positions=positions):
            model(short)
            second = model(long)  # no reset: before the fix its last 3 positions read as "generated"
        with steer(model, {vec: 5.0}, sae=sae, positions=positions):
            alone = model(long)
        torch.testing.assert_close(second, alone, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(alone, model(long), atol=1e-3)


def test_a_per_sequence_condition_decides_again_for_each_prompt_and_batch_size():
    model = tiny_model(positional_embedding_type="rotary")
    sae = random_sae("jumprelu")
    prompts = ["the movie was very good and the music was fun", "i love", "the plot"]
    condition = sl.Condition.latents(sae, [prompts_that_split(sae, model, prompts)], per="sequence")
    steering = {dense(): 6.0}
    fires, silent = model.to_tokens(prompts[0]), model.to_tokens(prompts[1])
    with steer(model, steering, when=condition):
        steered = model(fires)
        after = model(silent)  # a new, shorter prompt: its own decision, not the first prompt's
        batch = model(torch.cat([fires, fires]))  # another batch size: a new decision, no expand error
    torch.testing.assert_close(after, model(silent), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(steered, model(fires), atol=1e-3)
    torch.testing.assert_close(batch, torch.cat([steered, steered]), atol=1e-5, rtol=1e-5)


def test_a_position_policy_given_with_a_condition_steers_as_steer_does(model):
    from sas_lens.steering.engine import PositionPolicy, build_hooks

    sae = random_sae("jumprelu")
    condition = sl.Condition.latents(sae, [0, 1], threshold=-1.0)  # always fires
    hooks, policy = build_hooks(model, {dense(): 2.0}, positions=PositionPolicy("prompt"), when=condition)
    with model.hooks(fwd_hooks=hooks):
        via_policy = model(TOKENS)  # AttributeError on the policy's missing gate before the fix
    with steer(model, {dense(): 2.0}, positions="prompt", when=condition):
        expected = model(TOKENS)
    torch.testing.assert_close(via_policy, expected)
    other = sl.Condition.latents(sae, [2])
    with pytest.raises(ValueError, match="another condition"):
        build_hooks(model, {dense(): 2.0}, positions=policy, when=other)


def test_steering_hooks_own_their_policy_and_reset_between_prompts(model):
    sae = random_sae("jumprelu")
    vec = vector_for(sae, nnz=12)
    hooks = sl.steering_hooks(model, {vec: 5.0}, sae=sae, positions="generated")
    prompt = TOKENS[:1, :4]
    hooks.reset(prompt_len=4)
    continued = model.run_with_hooks(TOKENS[:1], fwd_hooks=hooks)  # prompt + 3 generated tokens, re-run
    clean = model(TOKENS[:1])
    torch.testing.assert_close(continued[:, :4], clean[:, :4], atol=1e-5, rtol=1e-5)  # the prompt: unsteered
    assert not torch.allclose(continued[:, 4:], clean[:, 4:], atol=1e-3)
    hooks.reset()  # a new prompt, its length read from the pass: nothing is generated yet
    torch.testing.assert_close(model.run_with_hooks(prompt, fwd_hooks=hooks), model(prompt), atol=1e-5, rtol=1e-5)
    assert hooks.policy.prompt_len == 4 and leftover_hooks() == []


def test_a_condition_read_later_in_the_same_block_is_refused(model):
    reader = random_sae("jumprelu")  # reads blocks.1.hook_resid_post
    early = DenseVector(torch.ones(16), {**PROVENANCE, "hook_name": "blocks.1.hook_resid_pre"})
    with pytest.raises(ValueError, match="after the steered hook blocks.1.hook_resid_pre"):  # same layer number
        with steer(model, {early: 1.0}, when=sl.Condition.latents(reader, [0])):
            pass
    assert leftover_hooks() == []
    with steer(model, {dense(): 1.0}, when=sl.Condition.latents(reader, [0])):  # the same hook: allowed
        model(TOKENS)
