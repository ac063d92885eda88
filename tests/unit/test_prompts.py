"""Formatting pairs as text and marking the tokens a vector reads."""

import pytest

from sas_lens.loading.pairs import ABItem
from sas_lens.loading.prompts import (
    PromptStyle,
    format_ab,
    format_completion,
    tokenize_with_spans,
)

ITEM = ABItem("is the movie good ?\n\nChoices:\n(A) yes\n(B) no", "A", "B")


def test_ab_span_is_the_letter():
    text, (start, end) = format_ab(ITEM, "B")
    assert text.endswith("Answer: (B)") and text[start:end] == "B"


def test_completion_span_is_the_completion():
    text, (start, end) = format_completion("the movie was", " good and fun")
    assert text[start:end] == " good and fun"


def test_spans_map_to_tokens_under_left_padding(tokenizer):
    texts, spans = zip(*[format_completion("the movie was", " good"), format_completion("the", " bad")])
    tokens, attention, span_mask = tokenize_with_spans(tokenizer, list(texts), list(spans))
    assert tokens.shape == attention.shape == span_mask.shape
    assert (tokens[:, -1] != tokenizer.pad_token_id).all()  # left padded: every row ends with real text
    assert not attention[1, 0] and attention[0].all()
    assert tokens[0, 0] == tokenizer.bos_token_id
    decoded = [tokenizer.decode(tokens[i][span_mask[i]]) for i in range(2)]
    assert decoded == ["good", "bad"]


def test_ab_letter_token(tokenizer):
    text, span = format_ab(ITEM, "A")
    tokens, _, span_mask = tokenize_with_spans(tokenizer, [text], [span])
    assert span_mask.sum() == 1
    assert tokenizer.decode(tokens[0][span_mask[0]]) == "A"
    assert tokenizer.decode(tokens[0, span_mask[0].nonzero()[0, 0] - 1]) == "("


def test_chat_style_without_template_is_refused(tokenizer):
    with pytest.raises(ValueError, match="chat template"):
        format_ab(ITEM, "A", PromptStyle("chat"), tokenizer)
    with pytest.raises(ValueError, match="'base' or 'chat'"):
        PromptStyle("instruct")
