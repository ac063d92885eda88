"""The activation cache holds what run_with_cache gives, and resumes where it stopped."""

import numpy as np
import pytest
import torch

from sas_lens.errors import HookNotFoundError
from sas_lens.sae_training.activation_cache import (
    ActivationCache,
    build_activation_cache,
)
from tests.helpers import HOOK, WORDS


@pytest.fixture
def corpus(tmp_path):
    rng = np.random.default_rng(0)
    text = "\n\n".join(" ".join(rng.choice(WORDS, size=30)) for _ in range(20))
    path = tmp_path / "corpus.txt"
    path.write_text(text)
    return path


def test_cache_equals_direct_activations(tmp_path, model, corpus):
    cache = build_activation_cache(model, HOOK, corpus, tmp_path / "cache", n_tokens=60, context_size=8, batch_size=4)
    assert len(cache) == 4 * 7 * 3  # whole batches of 4 sequences x 7 non-BOS tokens until >= 60
    from sas_lens.loading.text_data import (
        iter_documents,
        iter_token_sequences,
        resolve_text_files,
    )

    tokens = next(iter_token_sequences(model.tokenizer, iter_documents(resolve_text_files(corpus)), 8, 4))
    _, direct = model.run_with_cache(tokens, names_filter=HOOK)
    expected = direct[HOOK][:, 1:].reshape(-1, model.cfg.d_model)
    torch.testing.assert_close(cache.batch(np.arange(28)), expected)


def test_interrupted_cache_resumes_to_the_same_rows(tmp_path, model, corpus):
    full = build_activation_cache(model, HOOK, corpus, tmp_path / "full", n_tokens=80, context_size=8, batch_size=2)
    build_activation_cache(model, HOOK, corpus, tmp_path / "parts", n_tokens=30, context_size=8, batch_size=2)
    with open(tmp_path / "parts" / "activations.f32", "ab") as data:
        data.write(b"\x00" * 100)  # a batch cut off mid-write by an interruption
    resumed = build_activation_cache(model, HOOK, corpus, tmp_path / "parts", n_tokens=80, context_size=8, batch_size=2)
    assert len(resumed) == len(full)
    np.testing.assert_array_equal(np.asarray(resumed.rows), np.asarray(full.rows))
    assert len(ActivationCache(tmp_path / "parts")) == len(full)


def test_cache_refuses_other_settings_and_missing_hooks(tmp_path, model, corpus):
    build_activation_cache(model, HOOK, corpus, tmp_path / "c", n_tokens=10, context_size=8, batch_size=2)
    with pytest.raises(ValueError, match="built with other settings"):
        build_activation_cache(model, HOOK, corpus, tmp_path / "c", n_tokens=10, context_size=6, batch_size=2)
    with pytest.raises(HookNotFoundError, match="Did you mean"):
        build_activation_cache(model, "blocks.1.hook_resid_pots", corpus, tmp_path / "d", n_tokens=10)


def test_one_pass_caches_several_hooks_as_single_hook_caches_would(tmp_path, model, corpus):
    from sas_lens.sae_training.activation_cache import build_activation_caches

    hooks = ["blocks.0.hook_resid_post", HOOK]
    together = build_activation_caches(
        model, {h: tmp_path / h for h in hooks}, corpus, n_tokens=40, context_size=8, batch_size=2
    )
    for hook in hooks:
        alone = build_activation_cache(
            model, hook, corpus, tmp_path / f"alone-{hook}", n_tokens=40, context_size=8, batch_size=2
        )
        assert together[hook].spec == alone.spec
        # same rows from a forward that stopped at another layer: equal up to float32 reassociation
        np.testing.assert_allclose(np.asarray(together[hook].rows), np.asarray(alone.rows), rtol=1e-5, atol=1e-5)


def test_several_hooks_resume_when_one_cache_is_a_batch_ahead(tmp_path, model, corpus):
    from sas_lens.sae_training.activation_cache import build_activation_caches

    hooks = ["blocks.0.hook_resid_post", HOOK]
    full = build_activation_caches(
        model, {h: tmp_path / "full" / h for h in hooks}, corpus, n_tokens=60, context_size=8, batch_size=2
    )
    # an interruption between the two hooks' writes: the first hook has one batch more than the second
    build_activation_cache(
        model, hooks[0], corpus, tmp_path / "parts" / hooks[0], n_tokens=28, context_size=8, batch_size=2
    )
    build_activation_cache(
        model, hooks[1], corpus, tmp_path / "parts" / hooks[1], n_tokens=14, context_size=8, batch_size=2
    )
    resumed = build_activation_caches(
        model, {h: tmp_path / "parts" / h for h in hooks}, corpus, n_tokens=60, context_size=8, batch_size=2
    )
    for hook in hooks:
        assert len(resumed[hook]) == len(full[hook])
        np.testing.assert_allclose(np.asarray(resumed[hook].rows), np.asarray(full[hook].rows), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="at least one hook"):
        build_activation_caches(model, {}, corpus, n_tokens=10)


def test_a_cache_resumed_with_another_batch_size_holds_each_sequence_once(tmp_path, model, corpus):
    full = build_activation_cache(model, HOOK, corpus, tmp_path / "full", n_tokens=84, context_size=8, batch_size=2)
    build_activation_cache(model, HOOK, corpus, tmp_path / "parts", n_tokens=14, context_size=8, batch_size=2)
    # 2 sequences written; batches of 3 resume inside the first batch: only its third sequence is new
    resumed = build_activation_cache(model, HOOK, corpus, tmp_path / "parts", n_tokens=84, context_size=8, batch_size=3)
    assert resumed.n_sequences * 7 == len(resumed)
    assert len(resumed) >= len(full)
    # same rows from forwards over batches of another size: equal up to float32 reassociation
    np.testing.assert_allclose(np.asarray(resumed.rows)[: len(full)], np.asarray(full.rows), rtol=1e-5, atol=1e-5)


def test_max_rows_reads_the_first_rows_only(tmp_path, model, corpus):
    full = build_activation_cache(model, HOOK, corpus, tmp_path / "c", n_tokens=56, context_size=8, batch_size=2)
    head = ActivationCache(tmp_path / "c", max_rows=20)
    assert len(head) == 20 and len(full) == 56
    torch.testing.assert_close(head.batch(np.arange(20)), full.batch(np.arange(20)))
    assert len(ActivationCache(tmp_path / "c", max_rows=10_000)) == 56
