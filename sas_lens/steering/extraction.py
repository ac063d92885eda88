"""Residuals of contrastive pairs at their read positions, for one or several layers in one pass.

Each pair gives a positive and a negative text (:mod:`sas_lens.loading.prompts`); both
are run through the model in left-padded batches that stop after the deepest
layer needed, and the residual ``blocks.L.hook_resid_post`` is read at the
answer letter (A/B items) or over the completion (its mean, or its last token).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from sas_lens.loading.pairs import ABItem, PairSet
from sas_lens.loading.prompts import (
    PromptStyle,
    format_ab,
    format_completion,
    tokenize_with_spans,
)
from sas_lens.loading.saes import check_layer
from sas_lens.typing import Float, Tensor

READ_POSITIONS = ("mean", "last")


@dataclass(frozen=True)
class ContrastiveResiduals:
    """Residuals of the positive and negative sides of each pair, per layer: ``[n_pairs, d_model]``."""

    positive: dict[int, Float[Tensor, "n d_model"]]
    negative: dict[int, Float[Tensor, "n d_model"]]
    read: str


def pair_texts(pairs: PairSet, style: PromptStyle, tokenizer) -> tuple[list[str], list[tuple[int, int]]]:
    """Texts and read spans: the positive side of every pair, then the negative side.

    Args:
        pairs: the pairs.
        style: base-model text or the chat template.
        tokenizer: needed for the chat template.

    Example:
        >>> texts, spans = pair_texts(sl.load_pairs("demo:sentiment"), PromptStyle(), None)
        >>> len(texts) == 2 * len(spans) // 2
        True
    """
    positives, negatives = [], []
    for pair in pairs:
        if isinstance(pair, ABItem):
            positives.append(format_ab(pair, pair.matching, style, tokenizer))
            negatives.append(format_ab(pair, pair.not_matching, style, tokenizer))
        else:
            positives.append(format_completion(pair.prompt, pair.positive, style, tokenizer))
            negatives.append(format_completion(pair.prompt, pair.negative, style, tokenizer))
    texts, spans = zip(*(positives + negatives))
    return list(texts), list(spans)


@torch.no_grad()
def collect_residuals(
    model,
    pairs: PairSet,
    layers: int | Sequence[int],
    *,
    read: str = "mean",
    style: PromptStyle = PromptStyle(),
    batch_size: int = 8,
    progress: bool = True,
) -> ContrastiveResiduals:
    """Read ``blocks.L.hook_resid_post`` of both sides of every pair, for each layer in ``layers``.

    Args:
        model: a HookedTransformer with a fast tokenizer.
        pairs: A/B items (read at the answer letter; ``read`` does not apply) or
            completion pairs (read over the completion's tokens).
        layers: one layer or several; the forward pass stops after the deepest.
        read: ``"mean"`` over the completion's tokens, or its ``"last"`` token.
        style: base-model text or the tokenizer's chat template.
        batch_size: texts per forward pass.

    Example:
        >>> residuals = collect_residuals(model, sl.load_pairs("demo:sentiment"), [6, 9])  # doctest: +SKIP
        >>> vec = sl.sas_vector(model, sae, "demo:sentiment", residuals=residuals)  # doctest: +SKIP
    """
    if read not in READ_POSITIONS:
        raise ValueError(f"read must be one of {READ_POSITIONS}, got {read!r}.")
    layers = [layers] if isinstance(layers, int) else sorted(set(layers))
    for layer in layers:
        check_layer(model, layer)
    hooks = [f"blocks.{layer}.hook_resid_post" for layer in layers]
    texts, spans = pair_texts(pairs, style, model.tokenizer)
    # Longest first, so that padding within a batch stays small.
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    out = {layer: torch.empty(len(texts), model.cfg.d_model) for layer in layers}
    for start in tqdm(range(0, len(order), batch_size), desc="residuals", disable=not progress, leave=False):
        index = order[start : start + batch_size]
        tokens, attention, span_mask = tokenize_with_spans(model.tokenizer, [texts[i] for i in index],
                                                           [spans[i] for i in index])
        device = model.cfg.device
        _, cache = model.run_with_cache(
            tokens.to(device), attention_mask=attention.to(device), names_filter=hooks,
            stop_at_layer=layers[-1] + 1,
        )
        for layer, hook in zip(layers, hooks):
            out[layer][index] = _read(cache[hook].float().cpu(), span_mask, read)
    n = len(pairs)
    return ContrastiveResiduals(
        positive={layer: acts[:n] for layer, acts in out.items()},
        negative={layer: acts[n:] for layer, acts in out.items()},
        read=read,
    )


def _read(acts: Tensor, span_mask: Tensor, read: str) -> Tensor:
    if read == "last":
        last = span_mask.shape[1] - 1 - span_mask.flip(1).float().argmax(1)
        return acts[torch.arange(acts.shape[0]), last]
    weights = span_mask.float()
    return (acts * weights[..., None]).sum(1) / weights.sum(1, keepdim=True)
