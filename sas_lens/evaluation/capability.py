"""Capability kept under steering: MMLU and TruthfulQA A/B accuracy, and perplexity on held-out text.

MMLU and TruthfulQA come in CAA's A/B format (``{"prompt", "correct", "incorrect", ...}``);
an item counts as right when the normalised probability of the correct letter
exceeds 1/2. Perplexity is ``exp`` of the mean next-token loss over text tokens
(BOS excluded), steered at every position.

Example:
    >>> items = load_capability_items("caa/test/mmlu/mmlu.json", limit=100)   # doctest: +SKIP
    >>> accuracy(model, items, steering={vec: 4.0}, sae=sae)                  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path

import torch

from sas_lens.errors import DataError
from sas_lens.loading.pairs import ABItem, PairSet
from sas_lens.loading.prompts import PromptStyle
from sas_lens.loading.text_data import (
    iter_documents,
    iter_token_sequences,
    resolve_text_files,
)
from sas_lens.steering.engine import steering_hooks
from sas_lens.steering.scoring import ab_probabilities

_KEYS = ("prompt", "correct", "incorrect")


def load_capability_items(path: str | Path, *, limit: int | None = None, name: str | None = None) -> PairSet:
    """Read a CAA-format MMLU / TruthfulQA file as A/B items whose "matching" letter is the correct one.

    Args:
        path: the JSON file (CAA's ``test/mmlu/mmlu.json`` layout).
        limit: keep the first ``limit`` items.
        name: the set's name (default: the file's stem).

    Example:
        >>> mmlu = load_capability_items("CAA/datasets/test/mmlu/mmlu.json", limit=100)  # doctest: +SKIP
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"No such capability file: {path}. Give CAA's mmlu.json or truthful_qa.json.")
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(f"{path} is not valid JSON: {err}.") from err
    if not isinstance(records, list):
        raise DataError(f"{path} must hold a JSON array of items.")
    items = []
    for number, record in enumerate(records[:limit] if limit else records, start=1):
        missing = [key for key in _KEYS if not isinstance(record, dict) or key not in record]
        if missing:
            raise DataError(f"{path}, item {number}: missing {missing}; expected the keys {list(_KEYS)}.")
        correct, incorrect = (str(record[k]).strip().strip("()") for k in ("correct", "incorrect"))
        items.append(ABItem(record["prompt"], correct, incorrect))
    return PairSet(name or path.stem, tuple(items), str(path))


def accuracy(
    model,
    items: PairSet,
    *,
    steering: Mapping | None = None,
    sae=None,
    when=None,
    style: PromptStyle = PromptStyle(),
    prefix=None,
) -> dict[str, float]:
    """Accuracy (p(correct) > 1/2) and mean p(correct) on capability items.

    Args:
        model: a HookedTransformer.
        items: from :func:`load_capability_items`.
        steering: ``{vector: λ}``; ``None``: unsteered.
        sae: the SAE(s) of the SAS vectors.
        when: a condition gating the steering (see :func:`~sas_lens.steering.scoring.ab_probabilities`).
        style: how items are written as prompts.
        prefix: a :class:`~sas_lens.steering.prefix.PrefixCache` shared across calls on the same items.

    Example:
        >>> accuracy(model, mmlu, steering={vec: 4.0}, sae=sae)  # doctest: +SKIP
    """
    p = ab_probabilities(model, items, steering=steering, sae=sae, when=when, style=style, prefix=prefix)
    return {"accuracy": float((p > 0.5).double().mean()), "p_correct": float(p.double().mean()), "n": len(p)}


@torch.no_grad()
def perplexity(
    model,
    texts,
    *,
    steering: Mapping | None = None,
    sae=None,
    n_tokens: int = 20_000,
    context_size: int = 128,
    batch_size: int = 8,
) -> float:
    """Perplexity over the first ``n_tokens`` text tokens of ``texts`` (files or folders), optionally steered.

    Args:
        model: a HookedTransformer.
        texts: held-out text files or folders.
        steering: ``{vector: λ}``; ``None``: unsteered.
        sae: the SAE(s) of the SAS vectors.
        n_tokens: tokens to score.
        context_size: tokens per sequence.
        batch_size: sequences per forward pass.

    Example:
        >>> perplexity(model, "heldout.txt", steering={vec: 4.0}, sae=sae, n_tokens=10_000)  # doctest: +SKIP
    """
    hooks = steering_hooks(model, steering or {}, sae=sae)
    files = resolve_text_files(texts)
    context_size = min(context_size, model.cfg.n_ctx)
    total_loss, counted = 0.0, 0
    with model.hooks(fwd_hooks=hooks):
        for tokens in iter_token_sequences(model.tokenizer, iter_documents(files), context_size, batch_size):
            if counted >= n_tokens:
                break
            loss = model(tokens.to(model.cfg.device), return_type="loss", loss_per_token=True)
            total_loss += float(loss.double().sum())
            counted += loss.numel()
    if counted == 0:
        raise DataError(f"{texts} holds fewer than {context_size} tokens of text; cannot measure perplexity.")
    return math.exp(total_loss / counted)
