"""One steering engine, three model kinds: a TransformerBridge and a plain transformers model steer as the literal
edit says, and agree with each other.

All on one tiny random transformers Gemma 3 (3 layers, width 16, norms of random weight), built offline: the
bridge and the HookedHF wrapper each get their own copy of the same weights. Tolerances: float32 with the
same weights but different module wrappers and orders of summation, 1e-5.
"""

import copy

import pytest
import torch

import sas_lens as sl
from sas_lens.errors import HookNotFoundError
from sas_lens.loading.hf_models import HookedHF
from sas_lens.steering.provenance import Provenance, SAEIdentity
from tests.helpers import HOOK, random_sae, tiny_hf_gemma

TOL = dict(atol=1e-5, rtol=1e-5)
TEXTS = ["the movie was good and fun", "i love this"]


@pytest.fixture(scope="module")
def weights():
    return tiny_hf_gemma()


@pytest.fixture(scope="module")
def hooked(weights):
    hf_model, tokenizer = weights
    return HookedHF(copy.deepcopy(hf_model), tokenizer, name="tiny-gemma")


@pytest.fixture(scope="module")
def bridge(weights):
    from transformer_lens.model_bridge import TransformerBridge

    hf_model, tokenizer = weights
    bridge = TransformerBridge.boot_transformers(
        "google/gemma-3-270m", hf_model=copy.deepcopy(hf_model), tokenizer=tokenizer, device="cpu"
    )
    bridge.cfg.model_name = "tiny-gemma"
    return bridge.eval()


@pytest.fixture(scope="module")
def sae():
    return random_sae("jumprelu", d_sae=48)


def sparse(sae, gate):
    dense = torch.zeros(sae.cfg.d_sae)
    dense[[2, 5, 11, 30]] = torch.tensor([3.0, -1.0, 2.0, 1.5])
    provenance = Provenance(name="v", model_name="tiny-gemma", hook_name=HOOK, layer=1, sae=SAEIdentity.of(sae))
    return sl.SASVector.from_dense(dense, provenance, gate=gate)


def dense_vector():
    vector = torch.randn(16, generator=torch.Generator().manual_seed(3))
    return sl.DenseVector(vector, {"name": "d", "hook_name": HOOK, "layer": 1, "model_name": "tiny-gemma"})


def literal_edit(sae, vector, lam):
    """Algorithm 2 written out: a + (σ(f(a) + λv) − f(a))·W_dec, or a + λv·W_dec without σ, or a + λv."""

    def edit(a):
        if isinstance(vector, sl.DenseVector):
            return a + lam * vector.vector
        codes = sae.encode(a)
        if vector.gate == "none":
            return a + (lam * vector.dense()) @ sae.W_dec
        shifted = codes + lam * vector.dense()
        gated = shifted.relu() * (shifted > sae.threshold)
        return a + (gated - codes) @ sae.W_dec

    return edit


def by_hand(hf_model, tokens, edit):
    """Logits of the transformers model with ``edit`` applied to decoder layer 1's output by a hand-written hook."""

    def hook(module, inputs, output):
        residual = output[0] if isinstance(output, tuple) else output
        return (edit(residual), *output[1:]) if isinstance(output, tuple) else edit(residual)

    handle = hf_model.model.layers[1].register_forward_hook(hook)
    try:
        with torch.no_grad():
            return hf_model(input_ids=tokens).logits
    finally:
        handle.remove()


def test_the_residual_after_each_block_is_the_decoder_layers_output(weights, hooked, bridge):
    hf_model, _ = weights
    tokens = hooked.to_tokens(TEXTS[0])
    with torch.no_grad():
        hidden = hf_model(input_ids=tokens, output_hidden_states=True).hidden_states
        _, mine = hooked.run_with_cache(tokens)
        _, theirs = bridge.run_with_cache(tokens, names_filter=lambda name: name.endswith("hook_resid_post"))
    for layer in range(3):
        name = f"blocks.{layer}.hook_resid_post"
        torch.testing.assert_close(mine[name], theirs[name], **TOL)
        if layer < 2:  # HF's last hidden state is after the final norm; the hook's is before it
            torch.testing.assert_close(mine[name], hidden[layer + 1], **TOL)
    last = hooked(tokens, stop_at_layer=3)
    torch.testing.assert_close(last, mine["blocks.2.hook_resid_post"], **TOL)
    torch.testing.assert_close(hooked.unembed(hooked.ln_final(last)), hooked(tokens), **TOL)


@pytest.mark.parametrize(
    "make", [lambda sae: sparse(sae, "sae"), lambda sae: sparse(sae, "none"), lambda sae: dense_vector()]
)
def test_steered_logits_equal_the_literal_edit_on_every_kind(weights, hooked, bridge, sae, make):
    hf_model, _ = weights
    vector = make(sae)
    tokens = hooked.to_tokens(TEXTS[0])
    expected = by_hand(hf_model, tokens, literal_edit(sae, vector, 6.0))
    assert (expected - by_hand(hf_model, tokens, lambda a: a)).abs().max() > 1e-3  # the edit does something
    for model in (hooked, bridge):
        with torch.no_grad(), sl.steer(model, {vector: 6.0}, sae=sae):
            torch.testing.assert_close(model(tokens), expected, **TOL)
        with torch.no_grad():
            torch.testing.assert_close(model(tokens), by_hand(hf_model, tokens, lambda a: a), **TOL)  # no hook left


def test_generation_with_the_kv_cache_and_left_padding_is_greedy_decoding_of_the_steered_model(hooked, sae):
    vector = sparse(sae, "none")
    prompts = ["the movie was", "i love this story and the"]
    together = sl.generate(hooked, prompts, steering={vector: 8.0}, sae=sae, max_new_tokens=5)
    for prompt, text in zip(prompts, together):
        tokens = hooked.to_tokens(prompt)
        with torch.no_grad(), sl.steer(hooked, {vector: 8.0}, sae=sae):
            for _ in range(5):  # no cache, no padding: the whole sequence every step
                tokens = torch.cat([tokens, hooked(tokens)[:, -1].argmax(-1, keepdim=True)], dim=1)
        assert text == hooked.tokenizer.decode(tokens[0, -5:])


def test_a_bridge_and_a_transformers_model_give_the_same_ab_probabilities_and_conditions(hooked, bridge, sae):
    vector = sparse(sae, "sae")
    items = sl.load_pairs("demo:caution")
    p_hooked = sl.ab_probabilities(hooked, items, steering={vector: 4.0}, sae=sae)
    p_bridge = sl.ab_probabilities(bridge, items, steering={vector: 4.0}, sae=sae)
    torch.testing.assert_close(p_hooked, p_bridge, **TOL)
    assert (p_hooked - sl.ab_probabilities(hooked, items, sae=sae)).abs().max() > 1e-4
    condition = sl.Condition(sae, ids=(2, 5, 11), threshold=0.0)
    tokens = hooked.to_tokens(TEXTS)
    out = []
    for model in (hooked, bridge):
        with torch.no_grad(), sl.steer(model, {vector: 6.0}, sae=sae, when=condition):
            out.append(model(tokens))
    real = tokens != hooked.tokenizer.pad_token_id  # padding: HookedHF masks it, the bridge attends to it
    torch.testing.assert_close(out[0][real], out[1][real], **TOL)


def test_vectors_built_on_one_kind_steer_the_other(hooked, bridge, sae):
    on_hooked = sl.sas_vector(hooked, sae, "demo:sentiment", top_k=4)
    on_bridge = sl.sas_vector(bridge, sae, "demo:sentiment", top_k=4)
    assert on_hooked.indices.tolist() == on_bridge.indices.tolist()
    torch.testing.assert_close(on_hooked.values, on_bridge.values, **TOL)
    dense_h = sl.dense_vector(hooked, "demo:sentiment", layer=1)
    dense_b = sl.dense_vector(bridge, "demo:sentiment", layer=1)
    torch.testing.assert_close(dense_h.vector, dense_b.vector, **TOL)


def test_what_a_transformers_model_cannot_do_is_refused(weights, hooked):
    tokens = hooked.to_tokens(TEXTS[0])
    with pytest.raises(NotImplementedError, match="start_at_layer"):
        hooked(tokens, start_at_layer=1)
    with pytest.raises(HookNotFoundError, match="blocks.0.hook_resid_post .. blocks.2.hook_resid_post"):
        with hooked.hooks(fwd_hooks=[("blocks.1.hook_resid_pre", lambda a, hook: a)]):
            pass
    assert all(not layer._forward_hooks for layer in hooked.hf_model.model.layers)  # nothing left attached
    hf_model, _ = weights
    with pytest.raises(TypeError, match="kind='hf'"):
        with sl.steer(hf_model, {dense_vector(): 1.0}):
            pass


def test_what_needs_a_pass_from_a_block_is_refused_by_name_before_any_work(hooked, bridge, sae, monkeypatch):
    from sas_lens.steering import build_vectors

    def no_residuals(*args, **kwargs):
        raise AssertionError("residuals were collected before the refusal")

    monkeypatch.setattr(build_vectors, "collect_residuals", no_residuals)
    for model in (hooked, bridge):
        kind = type(model).__name__
        with pytest.raises(NotImplementedError, match=f'selection="attribution" .* a {kind} cannot'):
            sl.sas_vector(model, sae, "demo:sentiment", selection="attribution")
        with pytest.raises(NotImplementedError, match=f'fit="preference" .* a {kind} cannot'):
            sl.sas_vector(model, sae, "demo:sentiment", fit="preference")
        with pytest.raises(NotImplementedError, match=f'fit="preference" .* a {kind} cannot'):
            sl.dense_vector(model, "demo:sentiment", layer=1, fit="preference")
        with pytest.raises(NotImplementedError, match=f"Computing output scores .* a {kind} cannot"):
            sl.output_scores(model, sae, cache=False, progress=False)


def test_run_with_saes_beside_steering_on_an_sae_bridge(weights, sae):
    """SAELens's SAETransformerBridge splices an SAE at block 0 while sas_lens steers block 1: both edits apply."""
    from sae_lens import SAETransformerBridge

    hf_model, tokenizer = weights
    bridge = SAETransformerBridge.boot_transformers(
        "google/gemma-3-270m", hf_model=copy.deepcopy(hf_model), tokenizer=tokenizer, device="cpu"
    ).eval()
    bridge.cfg.model_name = "tiny-gemma"
    spliced = random_sae("jumprelu", d_sae=48, hook_name="blocks.0.hook_resid_post", seed=7)
    vector = sparse(sae, "sae")
    tokens = bridge.to_tokens(TEXTS[0])

    def both(module, inputs, output, layer):
        residual = output[0] if isinstance(output, tuple) else output
        if layer == 0:
            residual = spliced.decode(spliced.encode(residual))
        else:
            residual = literal_edit(sae, vector, 6.0)(residual)
        return (residual, *output[1:]) if isinstance(output, tuple) else residual

    handles = [
        hf_model.model.layers[layer].register_forward_hook(lambda m, i, o, layer=layer: both(m, i, o, layer))
        for layer in (0, 1)
    ]
    try:
        with torch.no_grad():
            expected = hf_model(input_ids=tokens).logits
    finally:
        for handle in handles:
            handle.remove()
    with torch.no_grad(), sl.steer(bridge, {vector: 6.0}, sae=sae):
        logits = bridge.run_with_saes(tokens, saes=[spliced])
    torch.testing.assert_close(logits, expected, **TOL)
    with torch.no_grad():  # neither the SAE nor the steering is left on the bridge
        torch.testing.assert_close(bridge(tokens), by_hand(hf_model, tokens, lambda a: a), **TOL)


def test_the_bridge_path_never_uses_hooked_transformer(weights, sae, monkeypatch):
    """What TransformerLens 4 will be: every HookedTransformer method raises, and the bridge still builds, steers,
    generates and scores."""
    from transformer_lens import HookedTransformer
    from transformer_lens.model_bridge import TransformerBridge

    def removed(*args, **kwargs):
        raise AssertionError("HookedTransformer was used on the bridge path")

    for method in ("__init__", "forward", "run_with_hooks", "run_with_cache", "hooks", "generate", "to_tokens"):
        monkeypatch.setattr(HookedTransformer, method, removed)
    hf_model, tokenizer = weights
    bridge = TransformerBridge.boot_transformers(
        "google/gemma-3-270m", hf_model=copy.deepcopy(hf_model), tokenizer=tokenizer, device="cpu"
    ).eval()
    bridge.cfg.model_name = "tiny-gemma"
    vector = sl.sas_vector(bridge, sae, "demo:sentiment", top_k=4)
    dense = sl.dense_vector(bridge, "demo:sentiment", layer=1)
    texts = sl.generate(bridge, ["the movie was"], steering={vector: 8.0, dense: 1.0}, sae=sae, max_new_tokens=3)
    probabilities = sl.ab_probabilities(bridge, sl.load_pairs("demo:caution"), steering={vector: 4.0}, sae=sae)
    assert len(texts) == 1 and texts[0]
    assert torch.isfinite(probabilities).all()


def test_trace_reads_every_kind_alike(weights, hooked, bridge, sae):
    """The trace reads the SAE's hook through each kind's cache (a bridge caches under the canonical name)."""
    from sae_lens import SAETransformerBridge

    hf_model, tokenizer = weights
    sae_bridge = SAETransformerBridge.boot_transformers(
        "google/gemma-3-270m", hf_model=copy.deepcopy(hf_model), tokenizer=tokenizer, device="cpu"
    ).eval()
    sae_bridge.cfg.model_name = "tiny-gemma"
    vector = sparse(sae, "none")
    traces = [
        sl.trace(model, sae, TEXTS[0], vectors=[vector], steering={vector: 8.0})
        for model in (hooked, bridge, sae_bridge)
    ]
    assert max(traces[0].kl) > 1e-3  # the steering changes the next-token distributions
    for other in traces[1:]:
        torch.testing.assert_close(torch.tensor(other.kl), torch.tensor(traces[0].kl), **TOL)
