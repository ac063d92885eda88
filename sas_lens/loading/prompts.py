"""Turning pairs into model text, and finding the token each vector reads.

A/B items are read at the answer letter, as in CAA: the prompt is the question
followed by an answer prefix ending in ``(`` and the letter, and the residual is
taken at the letter's token. Completion pairs are read over the completion's
tokens (their mean, or the last one). Base models get plain text; chat models
get their tokenizer's chat template, with the answer as the start of the
assistant's turn.

Example:
    >>> from sas_lens.loading.pairs import ABItem
    >>> text, span = format_ab(ABItem("Agree?\\n(A) Yes\\n(B) No", "A", "B"), "A")
    >>> text[span[0]:span[1]]
    'A'
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import torch

from sas_lens.loading.pairs import ABItem

BASE_ANSWER_PREFIX = "\n\nAnswer: ("


@dataclass(frozen=True)
class PromptStyle:
    """How pairs become text: ``"base"`` (plain text) or ``"chat"`` (the tokenizer's chat template)."""

    kind: str = "base"
    answer_prefix: str = BASE_ANSWER_PREFIX

    def __post_init__(self) -> None:
        if self.kind not in ("base", "chat"):
            raise ValueError(f"PromptStyle kind must be 'base' or 'chat', got {self.kind!r}.")


def _chat_prefix(user_text: str, tokenizer) -> str:
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            "PromptStyle('chat') needs a tokenizer with a chat template; this one has none. "
            "Use PromptStyle('base') for base models."
        )
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": user_text}], tokenize=False, add_generation_prompt=True
    )


def format_ab(
    item: ABItem, letter: str, style: PromptStyle = PromptStyle(), tokenizer=None
) -> tuple[str, tuple[int, int]]:
    """The text of ``item`` answered with ``letter``, and the character span of that letter.

    Args:
        item: an A/B item.
        letter: the answer letter (``"A"``).
        style: base-model text or the chat template.
        tokenizer: needed for the chat template.

    Example:
        >>> text, span = format_ab(ABItem("Is it safe?\\n(A) Yes\\n(B) No", "B", "A"), "B")
        >>> text[span[0]:span[1]]
        'B'
    """
    if style.kind == "chat":
        prefix = _chat_prefix(item.question, tokenizer) + "("
    else:
        prefix = item.question + style.answer_prefix
    return prefix + letter + ")", (len(prefix), len(prefix) + len(letter))


def format_completion(
    prompt: str, completion: str, style: PromptStyle = PromptStyle(), tokenizer=None
) -> tuple[str, tuple[int, int]]:
    """The text of ``prompt`` + ``completion``, and the character span of the completion.

    Args:
        prompt: the prompt.
        completion: its completion.
        style: base-model text or the chat template.
        tokenizer: needed for the chat template.

    Example:
        >>> format_completion("The film was", " great")
        ('The film was great', (12, 18))
    """
    prefix = _chat_prefix(prompt, tokenizer) if style.kind == "chat" else prompt
    return prefix + completion, (len(prefix), len(prefix) + len(completion))


def tokenize_with_spans(tokenizer, texts: list[str], spans: list[tuple[int, int]], prepend_bos: bool = True):
    """Tokenize ``texts`` (left-padded) and mark the tokens overlapping each character span.

    Args:
        tokenizer: a fast (Rust) tokenizer.
        texts: the texts.
        spans: a character span per text.
        prepend_bos: put the BOS token first (unless a text starts with it).

    Returns:
        ``(tokens, attention_mask, span_mask)``, each ``[batch, pos]``; ``span_mask`` is
        True on the tokens that overlap the span (the read positions).

    Raises:
        ValueError: a span that no token covers (e.g. an empty completion).

    Example:
        >>> tokens, attention, read = tokenize_with_spans(model.tokenizer, ["The film was great"], [(12, 18)])  # doctest: +SKIP
    """
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("sas_lens needs a fast (Rust) tokenizer to map characters to tokens.")
    encodings = [tokenizer(text, add_special_tokens=False, return_offsets_mapping=True) for text in texts]
    bos = [tokenizer.bos_token_id] if prepend_bos and tokenizer.bos_token_id is not None else []
    skip_bos = [bool(bos) and text.startswith(tokenizer.bos_token or "\0") for text in texts]
    rows, masks = [], []
    for text, encoding, (start, end), has_bos in zip(texts, encodings, spans, skip_bos):
        ids = ([] if has_bos else bos) + encoding["input_ids"]
        offsets = ([] if has_bos else [(0, 0)]) + encoding["offset_mapping"]
        mask = [a < end and b > start and b > a for a, b in offsets]
        if not any(mask):
            raise ValueError(f"No token covers characters {start}:{end} of {text!r}.")
        rows.append(ids)
        masks.append(mask)
    tokens, attention = left_pad(tokenizer, rows)
    span_mask = torch.zeros_like(attention)
    span_mask[attention] = torch.tensor([flag for mask in masks for flag in mask])  # row by row, as attention
    return tokens, attention, span_mask


def left_pad(tokenizer, rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Token id rows as one left-padded ``[batch, pos]`` tensor and its boolean attention mask.

    Left padding keeps every row's last token at the last position, where generation and
    A/B scoring read; the pad id is the tokenizer's (0 if it has none).

    Args:
        tokenizer: the model's tokenizer (``None``: pad with 0).
        rows: token ids, one list per sequence.

    Example:
        >>> tokens, attention = left_pad(None, [[5, 6, 7], [8]])
        >>> tokens.tolist(), attention.sum(1).tolist()
        ([[5, 6, 7], [0, 0, 8]], [3, 1])
    """
    pad = getattr(tokenizer, "pad_token_id", None)
    width = max(len(row) for row in rows)
    tokens = torch.full((len(rows), width), pad if pad is not None else 0, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, row in enumerate(rows):
        tokens[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
        attention[i, width - len(row) :] = True
    return tokens, attention


def reference_prompts() -> list[str]:
    """The shipped reference prompt set (150 varied sentence openings written for sas_lens).

    Example:
        >>> len(reference_prompts())
        150
    """
    text = (resources.files("sas_lens") / "data" / "reference_prompts.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]
