"""Golden tests of steering: an edit that σ cancels leaves the model bit-identical, the fast path is the literal
formula, hooks equal a manual edit of cached residuals, positions hold under the KV cache; refusals attach nothing.

λ = 0 itself is not a test of the formula: a zero shift has an empty support, so the edit computes nothing.
Suppressing latents that are off on every token (a non-zero negative strength) runs the whole formula, and
must still change nothing: σ(f(a) + λv) = f(a) there, so the Δ-corrected edit is exactly zero."""

import pytest
import torch

import sas_lens as sl
from sas_lens.loading.saes import sae_fingerprint
from sas_lens.steering.engine import steer
from sas_lens.steering.generation import generate
from sas_lens.steering.vectors import DenseVector, SASVector
from tests.conftest import leftover_hooks
from tests.helpers import ARCHITECTURES, HOOK, random_sae, tiny_model

TOKENS = torch.tensor([[1, 5, 9, 12, 7, 30, 22], [1, 8, 8, 40, 41, 6, 10]])


def sigma(sae, s):
    """The SAE's own nonlinearity on an already-encoded code (the paper's σ)."""
    if sae.cfg.architecture() == "jumprelu":
        return s.relu() * (s > sae.threshold)
    return s.relu()


def vector_for(sae, seed=0, nnz=6):
    generator = torch.Generator().manual_seed(seed)
    indices = torch.randperm(sae.cfg.d_sae, generator=generator)[:nnz].sort().values
    values = torch.randn(nnz, generator=generator)
    return SASVector(
        indices,
        values,
        sae.cfg.d_sae,
        {"hook_name": HOOK, "layer": 1, "model_name": "tiny-random", "sae_fingerprint": sae_fingerprint(sae)},
    )


def literal_edit(sae, a, shift):
    """Algorithm 2 as written: â(σ(f(a) + Σλv)) + Δ with Δ = a − â(f(a)).

    SAELens's per-token normalisations keep the scale of the last ``encode`` for the
    next ``decode``, hence one ``encode`` before each ``decode``.
    """
    codes = sae.encode(a)
    reconstruction = sae.decode(codes)
    sae.encode(a)
    return sae.decode(sigma(sae, codes + shift)) + (a - reconstruction)


def residual(model, tokens=TOKENS):
    _, cache = model.run_with_cache(tokens, names_filter=HOOK)
    return cache[HOOK]


def silent_vector(sae, model, n=6):
    """A vector on up to ``n`` latents that are off on every token of TOKENS (positive values)."""
    off = torch.nonzero((sae.encode(residual(model)) == 0).all(dim=0).all(dim=0)).squeeze(-1)[:n]
    assert len(off) >= 2, "the random SAE fires every latent somewhere; pick other TOKENS"
    return SASVector(off, torch.linspace(0.5, 2.0, len(off)), sae.cfg.d_sae, vector_for(sae).provenance)


def assert_suppressing_silent_latents_changes_nothing_and_raising_them_is_the_literal_edit(model, sae):
    vec = silent_vector(sae, model)
    clean = model(TOKENS)
    with steer(model, {vec: -3.0}, sae=sae):
        steered = model(TOKENS)
    assert torch.equal(steered, clean), f"max |diff| {(steered - clean).abs().max().item():.3g}"
    # Raised instead, the same latents change the model by what the literal formula says. Tolerance: float32
    # matmuls of different shapes (the |S| slice against the full SAE) round differently, ~1e-6 relative.
    expected = model(literal_edit(sae, residual(model), 20.0 * vec.dense()), start_at_layer=2)
    with steer(model, {vec: 20.0}, sae=sae):
        raised = model(TOKENS)
    torch.testing.assert_close(raised, expected, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(raised, clean, atol=1e-3)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_suppressing_latents_that_never_fire_leaves_logits_bit_identical(model, architecture):
    assert_suppressing_silent_latents_changes_nothing_and_raising_them_is_the_literal_edit(
        model, random_sae(architecture)
    )


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_hooked_steering_equals_manual_edit_of_cached_residuals(model, architecture):
    sae = random_sae(architecture)
    v1, v2 = vector_for(sae, 0), vector_for(sae, 1)
    shift = 3.0 * v1.dense() - 1.5 * v2.dense()
    edited = literal_edit(sae, residual(model), shift)
    expected = model(edited, start_at_layer=2)
    with steer(model, {v1: 3.0, v2: -1.5}, sae=sae):
        steered = model(TOKENS)
    torch.testing.assert_close(steered, expected, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(steered, model(TOKENS), atol=1e-3)  # the vectors did something


@pytest.mark.parametrize("architecture", ["jumprelu", "topk"])
@pytest.mark.parametrize("normalisation", ["constant_norm_rescale", "layer_norm", "expected_average_only_in"])
def test_steering_through_an_sae_that_normalises_its_input(model, architecture, normalisation):
    sae = random_sae(architecture, normalize_activations=normalisation)
    assert_suppressing_silent_latents_changes_nothing_and_raising_them_is_the_literal_edit(model, sae)
    vec = vector_for(sae)
    clean = model(TOKENS)
    expected = model(literal_edit(sae, residual(model), 4.0 * vec.dense()), start_at_layer=2)
    with steer(model, {vec: 4.0}, sae=sae):
        steered = model(TOKENS)
    torch.testing.assert_close(steered, expected, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(steered, clean, atol=1e-3)


def literal_ungated_edit(sae, a, shift):
    """``gate="none"`` as written: â(f(a) + Σλv) + Δ, the shifted code decoded without σ."""
    codes = sae.encode(a)
    reconstruction = sae.decode(codes)
    sae.encode(a)
    return sae.decode(codes + shift) + (a - reconstruction)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("normalisation", ["none", "constant_norm_rescale", "layer_norm"])
def test_ungated_steering_is_the_shift_decoded_without_sigma(model, architecture, normalisation):
    sae = random_sae(architecture, normalize_activations=normalisation)
    vec = vector_for(sae).with_gate("none")
    expected = model(literal_ungated_edit(sae, residual(model), -3.0 * vec.dense()), start_at_layer=2)
    with steer(model, {vec: -3.0}, sae=sae):
        steered = model(TOKENS)
    torch.testing.assert_close(steered, expected, atol=1e-4, rtol=1e-4)  # float32 matmuls of different shapes
    assert not torch.allclose(steered, model(TOKENS), atol=1e-3)


def test_the_gate_decides_whether_suppressing_silent_latents_does_anything(model):
    """σ cancels lowering a latent that is off (Algorithm 2: bit-identical); without it, the edit is −3·v·W_dec."""
    sae = random_sae("jumprelu")
    vec = silent_vector(sae, model)
    clean = model(TOKENS)
    with steer(model, {vec: -3.0}, sae=sae):
        assert torch.equal(model(TOKENS), clean)
    moved = residual(model) - 3.0 * vec.values @ sae.W_dec[vec.indices]
    with steer(model, {vec.with_gate("none"): -3.0}, sae=sae):
        torch.testing.assert_close(model(TOKENS), model(moved, start_at_layer=2), atol=1e-4, rtol=1e-4)


def test_vectors_with_different_gates_add_their_own_edits_at_one_hook(model):
    sae = random_sae("jumprelu")
    gated, ungated = vector_for(sae, 0), vector_for(sae, 1).with_gate("none")
    a = residual(model)
    both = literal_edit(sae, a, 2.0 * gated.dense()) + (literal_ungated_edit(sae, a, 1.5 * ungated.dense()) - a)
    with steer(model, {gated: 2.0, ungated: 1.5}, sae=sae):
        torch.testing.assert_close(model(TOKENS), model(both, start_at_layer=2), atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="with_gate"):
        gated + ungated


def test_sas_and_dense_mix_at_one_hook(model):
    sae = random_sae("jumprelu")
    vec = vector_for(sae)
    dense = DenseVector(torch.randn(16), {"hook_name": HOOK, "layer": 1, "model_name": "tiny-random"})
    a = residual(model)
    expected = model(literal_edit(sae, a, 2.0 * vec.dense()) - 0.5 * dense.vector, start_at_layer=2)
    with steer(model, {vec: 2.0, dense: -0.5}, sae=sae):
        torch.testing.assert_close(model(TOKENS), expected, atol=1e-4, rtol=1e-4)


def test_positions_prompt_and_mask(model):
    sae = random_sae("standard")
    vec = vector_for(sae)
    a = residual(model)
    mask = torch.zeros(2, 7, dtype=torch.bool)
    mask[:, 3:5] = True
    edited = torch.where(mask[..., None], literal_edit(sae, a, 4.0 * vec.dense()), a)
    with steer(model, {vec: 4.0}, sae=sae, positions=mask):
        torch.testing.assert_close(model(TOKENS), model(edited, start_at_layer=2), atol=1e-4, rtol=1e-4)
    clean = model(TOKENS)
    with steer(model, {vec: 4.0}, sae=sae, positions="generated"):
        assert torch.equal(model(TOKENS), clean)  # a prompt pass has no generated tokens


@pytest.mark.parametrize("positions", ["all", "prompt", "generated"])
def test_kv_cached_generation_steers_the_same_positions_as_uncached(positions):
    model = tiny_model(positional_embedding_type="rotary")
    sae = random_sae("jumprelu")
    vec = vector_for(sae, nnz=12)
    outputs = []
    for cached in (True, False):
        with steer(model, {vec: 25.0}, sae=sae, positions=positions) as policy:
            policy.reset()
            outputs.append(
                model.generate(TOKENS[:1], max_new_tokens=6, do_sample=False, verbose=False, use_past_kv_cache=cached)
            )
    assert outputs[0].tolist() == outputs[1].tolist()
    if positions != "prompt":  # steering the generated tokens changes what is generated
        unsteered = model.generate(TOKENS[:1], max_new_tokens=6, do_sample=False, verbose=False)
        assert outputs[0].tolist() != unsteered.tolist()


def test_generate_returns_continuations(model):
    sae = random_sae("jumprelu")
    texts = generate(model, ["the movie was", "i love"], steering={vector_for(sae): 5.0}, sae=sae, max_new_tokens=4)
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda sae, vec: ({vec: float("nan")}, sae), ValueError, "finite"),
        (lambda sae, vec: ({vec: float("inf")}, sae), ValueError, "finite"),
        (lambda sae, vec: ({vec: 1.0}, None), sl.errors.IncompatibleSAEError, "No SAE given"),
        (
            lambda sae, vec: ({vec: 1.0}, random_sae("jumprelu", seed=3)),
            sl.errors.IncompatibleSAEError,
            "built on another SAE",
        ),
        (lambda sae, vec: ({"not a vector": 1.0}, sae), TypeError, "SASVector, DenseVector or a topic swap"),
    ],
)
def test_bad_steering_is_refused_before_any_hook(model, make, error, message):
    sae = random_sae("jumprelu")
    steering, given_sae = make(sae, vector_for(sae))
    with pytest.raises(error, match=message):
        with steer(model, steering, sae=given_sae):
            pass
    assert leftover_hooks() == []


def test_hooks_are_removed_after_an_error_inside_the_block(model):
    sae = random_sae("jumprelu")
    with pytest.raises(RuntimeError):
        with steer(model, {vector_for(sae): 1.0}, sae=sae):
            model(TOKENS)
            raise RuntimeError("user code failed")
    assert leftover_hooks() == []
    torch.testing.assert_close(model(TOKENS), tiny_model()(TOKENS))


def test_empty_steering_and_an_empty_vector_add_nothing(model):
    from sas_lens.steering.build_vectors import sas_from_codes

    sae = random_sae("jumprelu")
    codes = torch.rand(3, sae.cfg.d_sae)
    zero = SASVector.from_dense(sas_from_codes(codes, codes, tau=0.5), vector_for(sae).metadata)
    assert len(zero) == 0  # identical sides: every kept latent is common
    clean = model(TOKENS)
    for steering in ({}, {zero: 5.0}):
        with steer(model, steering, sae=sae):
            steered = model(TOKENS)
        assert torch.equal(steered, clean), f"max |diff| = {(steered - clean).abs().max():.3g}"


@pytest.mark.parametrize("positions", ["all", "generated"])
def test_left_padded_batch_generates_what_each_prompt_generates_alone(positions):
    model = tiny_model(positional_embedding_type="rotary")
    sae = random_sae("jumprelu")
    steering = {vector_for(sae, nnz=12): 20.0}
    prompts = ["the movie was very good and the music was fun", "i love", "the plot"]
    together = generate(model, prompts, steering=steering, sae=sae, positions=positions, max_new_tokens=5)
    alone = [generate(model, p, steering=steering, sae=sae, positions=positions, max_new_tokens=5)[0] for p in prompts]
    assert together == alone


def test_sampling_with_a_seed_is_repeatable(model):
    kwargs = dict(max_new_tokens=6, do_sample=True, seed=7, temperature=2.0)
    assert generate(model, ["the movie"], **kwargs) == generate(model, ["the movie"], **kwargs)
    with pytest.raises(ValueError, match="backend"):
        generate(model, ["the movie"], backend="vllm")


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_without_delta_lambda_zero_is_the_sae_spliced_in_as_saelens_does_it(model, architecture):
    """The Δ ablation at λ = 0 replaces the residual with the SAE's reconstruction: SAELens's run_with_saes."""
    sae = random_sae(architecture)
    vec = vector_for(sae).with_delta(False)
    with steer(model, {vec: 0.0}, sae=sae):
        steered = model(TOKENS)
    spliced = model.run_with_saes(TOKENS, saes=[sae])
    torch.testing.assert_close(steered, spliced, atol=1e-4, rtol=1e-4)  # the slice path against the full SAE
    assert not torch.allclose(steered, model(TOKENS), atol=1e-3)  # the random SAE's error Δ is not small
    assert not model.acts_to_saes  # run_with_saes took its SAE off again


@pytest.mark.parametrize("gate", ["sae", "none"])
@pytest.mark.parametrize("normalisation", ["none", "constant_norm_rescale"])
def test_without_delta_steering_is_the_reconstruction_of_the_shifted_code(model, gate, normalisation):
    sae = random_sae("jumprelu", normalize_activations=normalisation)
    vec = vector_for(sae).with_gate(gate).with_delta(False)
    a = residual(model)
    literal = literal_edit if gate == "sae" else literal_ungated_edit
    codes_error = a - (sae.decode(sae.encode(a)))
    expected = model(literal(sae, a, 4.0 * vec.dense()) - codes_error, start_at_layer=2)
    with steer(model, {vec: 4.0}, sae=sae):
        steered = model(TOKENS)
    torch.testing.assert_close(steered, expected, atol=1e-4, rtol=1e-4)
    with steer(model, {vec.with_delta(True): 4.0}, sae=sae):
        assert not torch.allclose(model(TOKENS), steered, atol=1e-3)  # the switch changes the edit


def test_delta_switch_is_saved_and_vectors_that_disagree_do_not_add(tmp_path):
    sae = random_sae("jumprelu")
    vec = vector_for(sae).with_delta(False)
    assert sl.load_vector(vec.save(tmp_path / "v")).delta is False
    assert sl.load_vector(vector_for(sae).save(tmp_path / "w")).delta is True
    with pytest.raises(ValueError, match="with_delta"):
        vec + vector_for(sae, 1)
    # pytest's beartype hook may refuse the constructor call first: the library's own check, on a built vector
    broken = vector_for(sae)
    object.__setattr__(broken, "delta", "no")
    with pytest.raises(TypeError, match="delta must be True or False"):
        broken.__post_init__()


def test_steer_around_run_with_cache_generate_and_run_with_saes_behaves_as_documented(model):
    from tests.unit.test_conditions import dense

    push = dense()
    a = residual(model)
    clean = model(TOKENS)
    with steer(model, {push: 3.0}):
        steered = model(TOKENS)
        logits, cache = model.run_with_cache(TOKENS)
        generated = model.generate(TOKENS[:1], max_new_tokens=4, do_sample=False, verbose=False)
    assert torch.equal(logits, steered) and not torch.equal(steered, clean)
    torch.testing.assert_close(cache[HOOK], a + 3.0 * push.vector)  # the cache holds the steered residual
    with steer(model, {push: 3.0}) as policy:
        policy.reset()
        again = model.generate(TOKENS[:1], max_new_tokens=4, do_sample=False, verbose=False, use_past_kv_cache=False)
    assert generated.tolist() == again.tolist()

    earlier = random_sae("jumprelu", hook_name="blocks.0.hook_resid_post")
    with steer(model, {push: 3.0}):
        composed = model.run_with_saes(TOKENS, saes=[earlier])
    by_hand = model.run_with_hooks(
        TOKENS,
        fwd_hooks=[
            ("blocks.0.hook_resid_post", lambda x, hook: earlier(x)),
            (HOOK, lambda x, hook: x + 3.0 * push.vector),
        ],
    )
    torch.testing.assert_close(composed, by_hand, atol=1e-4, rtol=1e-4)

    same = random_sae("jumprelu")
    with pytest.warns(UserWarning, match="replaced the hook point"):
        with steer(model, {push: 3.0}):
            model.run_with_saes(TOKENS, saes=[same])
    assert leftover_hooks() == [] and torch.equal(model(TOKENS), clean)


@pytest.mark.parametrize("gate", ["sae", "none"])
def test_a_topk_sae_that_rescales_by_decoder_norm_steers_by_the_literal_formula(model, gate):
    sae = random_sae("topk")
    sae.cfg.rescale_acts_by_decoder_norm = True  # SAELens reads it at every encode / decode
    with torch.no_grad():  # unequal decoder-row norms, so that the rescaling matters
        sae.W_dec.mul_(torch.linspace(0.3, 3.0, sae.cfg.d_sae)[:, None])
    vec = vector_for(sae).with_gate(gate)
    literal = literal_edit if gate == "sae" else literal_ungated_edit
    expected = model(literal(sae, residual(model), 4.0 * vec.dense()), start_at_layer=2)
    with steer(model, {vec: 4.0}, sae=sae):
        steered = model(TOKENS)
    torch.testing.assert_close(steered, expected, atol=1e-4, rtol=1e-4)  # float32 matmuls of different shapes
    assert not torch.allclose(steered, model(TOKENS), atol=1e-3)


def test_a_batchtopk_training_sae_is_refused_with_how_to_convert_it(model):
    from sae_lens import BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    sae = BatchTopKTrainingSAE(
        BatchTopKTrainingSAEConfig(
            d_in=model.cfg.d_model, d_sae=32, k=2, metadata=SAEMetadata(hook_name=HOOK, model_name="tiny-random")
        )
    )
    vec = vector_for(sae)
    with pytest.raises(
        sl.errors.IncompatibleSAEError, match=r"batchtopk.*other tokens of the batch.*save_inference_model"
    ):
        with steer(model, {vec: 1.0}, sae=sae):
            pass
    assert leftover_hooks() == []


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("gate", ["sae", "none"])
def test_a_sequence_steered_alone_equals_the_same_sequence_in_a_batch(model, architecture, gate):
    sae = random_sae(architecture)
    vec = vector_for(sae).with_gate(gate)
    loud = TOKENS.clone()
    loud[1] = torch.tensor([1, 40, 40, 40, 40, 40, 40])  # one repeated token beside the first sequence
    with steer(model, {vec: 3.0}, sae=sae):
        alone = model(TOKENS[:1])
        batched = model(loud)
    # per-token edits: equal up to float32 rounding of matmuls over batches of another size
    torch.testing.assert_close(batched[:1], alone, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(alone, model(TOKENS[:1]), atol=1e-3)
