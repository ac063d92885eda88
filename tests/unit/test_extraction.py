"""Batched, left-padded extraction equals running each text alone."""

import pytest
import torch

from sas_lens.loading.pairs import load_pairs
from sas_lens.loading.prompts import PromptStyle, tokenize_with_spans
from sas_lens.steering.extraction import collect_residuals, pair_texts
from tests.helpers import tiny_model

COMPLETIONS = load_pairs(
    [
        {"prompt": "the movie was", "positive": " good and fun", "negative": " bad"},
        {"prompt": "i", "positive": " love this story", "negative": " hate this boring story ."},
        {"prompt": "the plot of this film was very", "positive": " great", "negative": " awful"},
    ]
)
AB = load_pairs(
    [
        {
            "question": "is it good ?\n\nChoices:\n(A) yes\n(B) no",
            "answer_matching_behavior": "(A)",
            "answer_not_matching_behavior": "(B)",
        },
        {
            "question": "was the ending of the movie sad ?\n(A) yes\n(B) no",
            "answer_matching_behavior": "(B)",
            "answer_not_matching_behavior": "(A)",
        },
    ]
)


def one_by_one(model, pairs, layer, read):
    texts, spans = pair_texts(pairs, PromptStyle(), model.tokenizer)
    rows = []
    for text, span in zip(texts, spans):
        tokens, _, mask = tokenize_with_spans(model.tokenizer, [text], [span])
        _, cache = model.run_with_cache(tokens, names_filter=f"blocks.{layer}.hook_resid_post")
        acts = cache[f"blocks.{layer}.hook_resid_post"][0][mask[0]]
        rows.append(acts.mean(0) if read == "mean" else acts[-1])
    rows = torch.stack(rows)
    return rows[: len(pairs)], rows[len(pairs) :]


@pytest.mark.parametrize("positional", ["standard", "rotary"])
@pytest.mark.parametrize(("pairs", "read"), [(COMPLETIONS, "mean"), (COMPLETIONS, "last"), (AB, "mean")])
def test_batched_extraction_equals_one_text_at_a_time(positional, pairs, read):
    model = tiny_model(positional_embedding_type=positional)
    got = collect_residuals(model, pairs, [0, 2], read=read, batch_size=4, progress=False)
    for layer in (0, 2):
        positive, negative = one_by_one(model, pairs, layer, read)
        torch.testing.assert_close(got.positive[layer], positive, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(got.negative[layer], negative, atol=1e-5, rtol=1e-4)


def test_bad_read_and_layer_are_refused(model):
    with pytest.raises(ValueError, match="read must be one of"):
        collect_residuals(model, COMPLETIONS, 1, read="first")
    from sas_lens.errors import LayerOutOfRangeError

    with pytest.raises(LayerOutOfRangeError):
        collect_residuals(model, COMPLETIONS, 5)


def token_rows_one_by_one(model, pairs, layer):
    """Every read token's residual, each text run alone: (positive rows, their pairs, negative rows, pairs)."""
    texts, spans = pair_texts(pairs, PromptStyle(), model.tokenizer)
    sides = []
    for side_texts, side_spans in (
        (texts[: len(pairs)], spans[: len(pairs)]),
        (texts[len(pairs) :], spans[len(pairs) :]),
    ):
        rows, owner = [], []
        for pair, (text, span) in enumerate(zip(side_texts, side_spans)):
            tokens, _, mask = tokenize_with_spans(model.tokenizer, [text], [span])
            _, cache = model.run_with_cache(tokens, names_filter=f"blocks.{layer}.hook_resid_post")
            acts = cache[f"blocks.{layer}.hook_resid_post"][0][mask[0]]
            rows.append(acts)
            owner += [pair] * len(acts)
        sides += [torch.cat(rows), torch.tensor(owner)]
    return sides


@pytest.mark.parametrize("read", ["tokens", "token_mean"])
def test_token_reads_keep_every_completion_token(read):
    model = tiny_model(positional_embedding_type="rotary")
    got = collect_residuals(model, COMPLETIONS, [1], read=read, batch_size=4, progress=False)
    positive, positive_pair, negative, negative_pair = token_rows_one_by_one(model, COMPLETIONS, 1)
    rows, pair = got.rows(1, "positive")
    assert pair.tolist() == positive_pair.tolist() == [0, 0, 0, 1, 1, 1, 2]  # " good and fun", ...
    torch.testing.assert_close(rows, positive, atol=1e-5, rtol=1e-4)  # batched vs alone: float32 rounding
    torch.testing.assert_close(got.rows(1, "negative")[0], negative, atol=1e-5, rtol=1e-4)
    assert got.rows(1, "negative")[1].tolist() == negative_pair.tolist()
    # the per-pair rows stay the mean over the completion, as with read="mean"
    mean = collect_residuals(model, COMPLETIONS, [1], read="mean", batch_size=4, progress=False)
    torch.testing.assert_close(got.positive[1], mean.positive[1])
