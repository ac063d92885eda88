"""top_latents and trace_latents on the tiny model: order, logit lens, contexts, refusals."""

import pytest
import torch

from sas_lens.analysis.attribution import logit_lens, top_latents, trace_latents
from sas_lens.analysis.latent_index import build_latent_index
from sas_lens.errors import IncompatibleSAEError
from sas_lens.loading.saes import sae_fingerprint
from sas_lens.steering.vectors import SASVector
from tests.helpers import HOOK, WORDS, random_sae


def vector_on(sae, entries):
    indices = torch.tensor(sorted(entries), dtype=torch.long)
    values = torch.tensor([entries[i] for i in sorted(entries)], dtype=torch.float32)
    return SASVector(indices, values, sae.cfg.d_sae, {"name": "v", "hook_name": HOOK, "layer": 1,
                                                      "sae_fingerprint": sae_fingerprint(sae)})


def test_top_latents_are_ordered_by_magnitude_with_the_logit_lens(model):
    sae = random_sae("jumprelu")
    table = top_latents(vector_on(sae, {3: 0.5, 10: -2.0, 20: 1.0}), sae, model, k=2, n_tokens=3)
    assert table["latent"].tolist() == [10, 20] and table["sign"].tolist() == ["−", "+"]
    logits = sae.W_dec[10].detach() @ model.W_U.detach()
    expected_up = model.tokenizer.convert_ids_to_tokens(logits.topk(3).indices.tolist())
    expected_down = model.tokenizer.convert_ids_to_tokens((-logits).topk(3).indices.tolist())
    assert table.loc[0, "promotes"] == expected_up and table.loc[0, "suppresses"] == expected_down
    assert "neuronpedia" not in table and "contexts" not in table


def test_top_latents_with_an_index_and_a_neuronpedia_id(model, tmp_path):
    sae = random_sae("jumprelu")
    sae.cfg.metadata.neuronpedia_id = "gemma-2-2b/12-gemmascope-res-16k"
    corpus = tmp_path / "c.txt"
    corpus.write_text(" ".join(WORDS * 6))
    index = build_latent_index(model, sae, corpus, n_tokens=1000, context_size=8, n_top=3, batch_size=2,
                               progress=False)
    latent = int(index.values[:, 0].argmax())
    table = top_latents(vector_on(sae, {latent: 1.0}), sae, model, index=index, n_contexts=2)
    assert table.loc[0, "neuronpedia"].endswith(f"/12-gemmascope-res-16k/{latent}")
    assert table.loc[0, "frequency"] == pytest.approx(float(index.fire_counts[latent]) / index.n_tokens)
    assert len(table.loc[0, "contexts"]) == 2 and "«" in table.loc[0, "contexts"][0]
    with pytest.raises(IncompatibleSAEError, match="another SAE"):
        other = random_sae("jumprelu", seed=9)
        top_latents(vector_on(other, {1: 1.0}), other, model, index=index)


def test_top_latents_refuses_a_vector_of_another_sae(model):
    sae, other = random_sae("jumprelu"), random_sae("jumprelu", seed=4)
    with pytest.raises(IncompatibleSAEError):
        top_latents(vector_on(other, {1: 1.0}), sae, model)


def test_logit_lens_of_no_latents_is_empty(model):
    assert logit_lens(random_sae("jumprelu"), model, []) == []


def test_trace_latents_matches_encoding_the_cached_residual(model):
    sae = random_sae("jumprelu")
    tokens, acts = trace_latents(model, sae, "the movie was great", [1, 5, 7])
    _, cache = model.run_with_cache(model.to_tokens("the movie was great"), names_filter=HOOK)
    expected = sae.encode(cache[HOOK][0, 1:])[:, [1, 5, 7]].detach()
    assert len(tokens) == acts.shape[0] == expected.shape[0]
    torch.testing.assert_close(acts, expected)
