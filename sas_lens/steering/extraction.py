"""Residuals of contrastive pairs at their read positions, for one or several layers in one pass.

Each pair gives a positive and a negative text (:mod:`sas_lens.loading.prompts`); both
are run through the model in left-padded batches that stop after the deepest
layer needed, and the residual ``blocks.L.hook_resid_post`` is read at the
answer letter (A/B items) or over the completion: its mean (``"mean"``), its last token
(``"last"``), or every token of it kept as a row (``"tokens"``, ``"token_mean"``: SAS then
encodes each token, and either counts tokens as Algorithm 1's rows or averages each pair's
token codes; encoding the mean residual instead sees a point no single token sits at).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from sas_lens.loading.models import check_model_kind
from sas_lens.loading.pairs import ABItem, PairSet
from sas_lens.loading.prompts import (
    PromptStyle,
    format_ab,
    format_completion,
    tokenize_with_spans,
)
from sas_lens.loading.saes import check_layer, resolved_hook_name
from sas_lens.typing import Float, Tensor

READ_POSITIONS = ("mean", "last", "tokens", "token_mean")
TOKEN_READS = ("tokens", "token_mean")


@dataclass(frozen=True)
class ContrastiveResiduals:
    """Residuals of the positive and negative sides of each pair, per layer: ``[n_pairs, d_model]``.

    With a token read (``"tokens"``, ``"token_mean"``), ``positive``/``negative`` hold each pair's
    mean residual over its read tokens, and ``token_rows`` every read token's residual:
    ``{side: {layer: [n_tokens, d_model]}}`` with ``token_pair[side]``, the pair of each row.
    """

    positive: dict[int, Float[Tensor, "n d_model"]]
    negative: dict[int, Float[Tensor, "n d_model"]]
    read: str
    token_rows: dict[str, dict[int, Tensor]] | None = None
    token_pair: dict[str, Tensor] | None = None

    def rows(self, layer: int, side: str) -> tuple[Tensor, Tensor]:
        """A side's rows at ``layer`` and the pair each comes from (one row per pair unless the read is by token).

        Args:
            layer: the layer.
            side: ``"positive"`` or ``"negative"``.

        Example:
            >>> r = ContrastiveResiduals({9: torch.ones(2, 4)}, {9: torch.zeros(2, 4)}, "mean")
            >>> rows, pair = r.rows(9, "positive")
            >>> rows.shape, pair.tolist()
            (torch.Size([2, 4]), [0, 1])
        """
        if self.token_rows is None:
            per_pair = getattr(self, side)[layer]
            return per_pair, torch.arange(per_pair.shape[0])
        return self.token_rows[side][layer], self.token_pair[side]


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
        >>> residuals = collect_residuals(model, sl.load_pairs("demo:sentiment"), [0, 1], progress=False)
        >>> vec = sl.sas_vector(model, sae, "demo:sentiment", residuals=residuals)
    """
    check_model_kind(model)
    if read not in READ_POSITIONS:
        raise ValueError(f"read must be one of {READ_POSITIONS}, got {read!r}.")
    layers = [layers] if isinstance(layers, int) else sorted(set(layers))
    for layer in layers:
        check_layer(model, layer)
    hooks = [resolved_hook_name(model, f"blocks.{layer}.hook_resid_post") for layer in layers]
    texts, spans = pair_texts(pairs, style, model.tokenizer)
    # Longest first, so that padding within a batch stays small.
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    out = {layer: torch.empty(len(texts), model.cfg.d_model) for layer in layers}
    token_rows: dict[int, list[tuple[int, Tensor]]] = {layer: [] for layer in layers}
    for start in tqdm(range(0, len(order), batch_size), desc="residuals", disable=not progress, leave=False):
        index = order[start : start + batch_size]
        tokens, attention, span_mask = tokenize_with_spans(
            model.tokenizer, [texts[i] for i in index], [spans[i] for i in index]
        )
        device = model.cfg.device
        _, cache = model.run_with_cache(
            tokens.to(device),
            attention_mask=attention.to(device),
            names_filter=hooks,
            stop_at_layer=layers[-1] + 1,
        )
        for layer, hook in zip(layers, hooks):
            acts = cache[hook].float().cpu()
            out[layer][index] = _read(acts, span_mask, "mean" if read in TOKEN_READS else read)
            if read in TOKEN_READS:
                token_rows[layer] += [(text, acts[row][span_mask[row]]) for row, text in enumerate(index)]
    n = len(pairs)
    tokens_by_side = pair_of_row = None
    if read in TOKEN_READS:
        tokens_by_side, pair_of_row = _split_token_rows(token_rows, n)
    return ContrastiveResiduals(
        positive={layer: acts[:n] for layer, acts in out.items()},
        negative={layer: acts[n:] for layer, acts in out.items()},
        read=read,
        token_rows=tokens_by_side,
        token_pair=pair_of_row,
    )


def _split_token_rows(token_rows: dict[int, list[tuple[int, Tensor]]], n_pairs: int):
    """Token rows per side, in pair order, and the pair of each row (texts ``i < n`` are positive)."""
    by_side: dict[str, dict[int, Tensor]] = {"positive": {}, "negative": {}}
    owner: dict[str, Tensor] = {}
    for layer, rows in token_rows.items():
        rows = sorted(rows, key=lambda item: item[0])
        for side, chosen in (("positive", rows[:n_pairs]), ("negative", rows[n_pairs:])):
            by_side[side][layer] = torch.cat([acts for _, acts in chosen])
            owner[side] = torch.cat([torch.full((len(acts),), text % n_pairs) for text, acts in chosen])
    return by_side, owner


def _read(acts: Tensor, span_mask: Tensor, read: str) -> Tensor:
    if read == "last":
        last = span_mask.shape[1] - 1 - span_mask.flip(1).float().argmax(1)
        return acts[torch.arange(acts.shape[0]), last]
    weights = span_mask.float()
    return (acts * weights[..., None]).sum(1) / weights.sum(1, keepdim=True)
