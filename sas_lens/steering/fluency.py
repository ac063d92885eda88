"""Fluency of generated text: perplexity under the unsteered model and distinct-n repetition.

One definition for every caller (open-ended answers, topic continuations), so their figures compare:
a continuation with no tokens has no perplexity (NaN), and summaries take the median over the finite ones.

Example:
    >>> distinct_n("the cat the cat the cat", 2)   # 2 distinct bigrams of 5
    0.4
"""

from __future__ import annotations

import math
import statistics

import torch


def text_perplexity(model, prompt: str, continuation: str) -> float:
    """Perplexity of ``continuation`` after ``prompt`` under ``model`` as it is (unsteered unless hooked); NaN if empty.

    Args:
        model: a HookedTransformer.
        prompt: the context, not scored.
        continuation: the text scored.

    Example:
        >>> text_perplexity(model, "the film was", " great") > 1
        True
    """
    prompt_ids = model.to_tokens(prompt)
    full = model.to_tokens(prompt + continuation)
    n_new = full.shape[1] - prompt_ids.shape[1]
    if n_new <= 0:
        return float("nan")
    with torch.no_grad():
        loss = model(full, return_type="loss", loss_per_token=True)[0, -n_new:]
    return math.exp(float(loss.double().mean()))


def distinct_n(text: str, n: int = 2) -> float:
    """Distinct n-grams over all n-grams of the whitespace tokens (1.0 for texts shorter than n).

    Args:
        text: the text.
        n: the n-gram length.

    Example:
        >>> distinct_n("a b a b", 2)
        0.6666666666666666
    """
    words = text.split()
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 1.0


def fluency(model, prompts: list[str], texts: list[str]) -> dict[str, float | None]:
    """Median perplexity of ``texts`` after ``prompts`` (finite ones; ``None`` if none) and mean distinct-2.

    Args:
        model: the HookedTransformer that scores (unsteered, for a fair comparison).
        prompts: the prompts the texts continue.
        texts: the continuations.

    Example:
        >>> sorted(fluency(model, ["the film was", "i"], [" good", " love it"]).items())[0]
        ('distinct_2', 1.0)
    """
    perplexities = [text_perplexity(model, p, t) for p, t in zip(prompts, texts, strict=True)]
    finite = [x for x in perplexities if math.isfinite(x)]
    return {
        "perplexity": statistics.median(finite) if finite else None,
        "distinct_2": sum(distinct_n(t, 2) for t in texts) / len(texts) if texts else None,
    }
