"""The latent index: same top contexts and frequencies as a brute-force scan, cached on disk, reloaded."""

import numpy as np
import pytest
import torch

from sas_lens.analysis.latent_index import LatentIndex, build_latent_index, latent_index
from sas_lens.loading.text_data import (
    iter_documents,
    iter_token_sequences,
    resolve_text_files,
)
from tests.helpers import HOOK, WORDS, random_sae, tiny_model

CONTEXT = 8


@pytest.fixture
def corpus(tmp_path):
    rng = np.random.default_rng(2)
    path = tmp_path / "corpus.txt"
    path.write_text("\n\n".join(" ".join(rng.choice(WORDS, size=30)) for _ in range(12)))
    return path


def brute_force(model, sae, corpus, n_top):
    """Encode every sequence, then sort each latent's activations over all non-BOS positions."""
    sequences = torch.cat(
        list(iter_token_sequences(model.tokenizer, iter_documents(resolve_text_files(corpus)), CONTEXT, 4))
    )
    _, cache = model.run_with_cache(sequences, names_filter=HOOK)
    codes = sae.encode(cache[HOOK]).detach()
    codes[:, 0] = 0
    flat = codes.reshape(-1, sae.cfg.d_sae)
    return sequences, flat, flat.sort(dim=0, descending=True)


def test_index_matches_a_brute_force_scan(model, corpus):
    sae = random_sae("jumprelu")
    index = build_latent_index(
        model, sae, corpus, n_tokens=10_000, context_size=CONTEXT, n_top=5, batch_size=4, progress=False
    )
    sequences, flat, ranked = brute_force(model, sae, corpus, 5)
    assert torch.equal(index.tokens, sequences)
    assert index.n_tokens == sequences.shape[0] * (CONTEXT - 1)
    assert torch.equal(index.fire_counts, (flat > 0).sum(0))
    torch.testing.assert_close(index.values, ranked.values[:5].T)
    fired = ranked.values[:5].T > 0
    assert fired.any() and (~fired).any()  # both branches are exercised
    # Positions: each holds the activation recorded for it (ties may be ordered either way).
    latents = torch.arange(sae.cfg.d_sae)[:, None].expand_as(index.positions)
    assert torch.equal(flat[index.positions[fired], latents[fired]], index.values[fired])
    assert (index.positions[~fired] == -1).all()


def test_top_contexts_mark_the_peak_token(model, corpus):
    sae = random_sae("jumprelu")
    index = build_latent_index(
        model, sae, corpus, n_tokens=10_000, context_size=CONTEXT, n_top=3, batch_size=4, progress=False
    )
    latent = int(index.values[:, 0].argmax())
    (best, *_) = index.top_contexts(latent, model.tokenizer, n=3)
    row, pos = divmod(int(index.positions[latent, 0]), CONTEXT)
    assert best["token"] == model.tokenizer.decode([int(index.tokens[row, pos])])
    assert best["activation"] == pytest.approx(float(index.values[latent, 0]))
    with pytest.raises(IndexError, match="out of range"):
        index.top_contexts(sae.cfg.d_sae, model.tokenizer)


def test_index_is_cached_and_reloaded(model, corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("SAS_LENS_CACHE", str(tmp_path / "cache"))
    sae = random_sae("jumprelu")
    settings = dict(n_tokens=10_000, context_size=CONTEXT, n_top=4, batch_size=4, progress=False)
    first = latent_index(model, sae, corpus, **settings)
    assert len(list((tmp_path / "cache" / "indexes").iterdir())) == 1

    class Built(Exception):
        pass

    def build(*args, **kwargs):
        raise Built

    monkeypatch.setattr("sas_lens.analysis.latent_index.build_latent_index", build)
    again = latent_index(model, sae, corpus, **settings)  # from disk: the stub is not called
    assert torch.equal(again.values, first.values) and again.metadata == first.metadata
    assert again.metadata["cached_at"].startswith(str(tmp_path / "cache"))
    with pytest.raises(Built):  # another SAE is another key
        latent_index(model, random_sae("jumprelu", seed=5), corpus, **settings)
    with pytest.raises(Built):  # other settings are another key
        latent_index(model, sae, corpus, **{**settings, "n_top": 3})
    with pytest.raises(Built):  # the batch size sets how many whole batches reach n_tokens
        latent_index(model, sae, corpus, **{**settings, "batch_size": 2})
    with pytest.raises(Built):  # a re-calibrated threshold is another SAE
        recalibrated = random_sae("jumprelu")
        recalibrated.threshold.data.mul_(1.5)
        latent_index(model, recalibrated, corpus, **settings)
    with pytest.raises(Built):  # another model of the same name (other weights) is another key
        other = tiny_model(seed=7)
        assert other.cfg.model_name == model.cfg.model_name
        latent_index(other, sae, corpus, **settings)


def test_saved_index_round_trips(model, corpus, tmp_path):
    index = build_latent_index(
        model,
        random_sae("jumprelu"),
        corpus,
        n_tokens=10_000,
        context_size=CONTEXT,
        n_top=2,
        batch_size=4,
        progress=False,
    )
    loaded = LatentIndex.load(index.save(tmp_path / "idx"))
    assert torch.equal(loaded.positions, index.positions) and loaded.n_tokens == index.n_tokens


def test_merging_shards_in_any_order_gives_the_same_top_even_with_ties():
    from sas_lens.analysis.latent_index import _merge, _PartialIndex

    values = torch.tensor([[3.0, 1.0], [2.0, 1.0], [2.0, 1.0], [2.0, 0.5]])  # ties across the shards
    positions = torch.tensor([[7, 7], [9, 9], [4, 4], [1, 1]])
    parts = [
        _PartialIndex(values[i : i + 1], positions[i : i + 1], torch.ones(2, dtype=torch.long), 1) for i in range(4)
    ]
    forward, backward = _merge(parts, n_top=2), _merge(parts[::-1], n_top=2)
    assert torch.equal(forward.positions, backward.positions)
    assert forward.positions[:, 0].tolist() == [7, 1] and forward.positions[:, 1].tolist() == [4, 7]  # earliest wins
    assert forward.fire_counts.tolist() == [4, 4] and forward.n_tokens == 4
