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
