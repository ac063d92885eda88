"""How far a residual edit makes each pair's positive completion likelier than its negative one.

For a pair (prompt ``x``, completions ``y⁺``, ``y⁻``) and an edit ``δ`` added to
``blocks.L.hook_resid_post`` at every position (as steering adds it), the *preference margin* is

    m(δ) = [log p_δ(y⁺ | x) − log p_0(y⁺ | x)] − [log p_δ(y⁻ | x) − log p_0(y⁻ | x)],

each log-probability summed over the completion's tokens (A/B items: the answer letter). Two things
are built on it: ``selection="attribution"`` ranks latents by the margin's gradient through each
decoder row (:func:`margin_gradient`), and ``fit="preference"`` fits a vector's values to it
(:mod:`sas_lens.steering.fitting`). No edit reaches the blocks below ``L``, so they run once per batch
(:func:`prepare_pairs`) and each step runs only the blocks after ``L``.

Example:
    >>> batches = prepare_pairs(model, pairs, 1, batch_size=4)
    >>> g = margin_gradient(model, batches, 1)
    >>> g.shape
    torch.Size([16])
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from tqdm.auto import tqdm

from sas_lens.loading.pairs import PairSet
from sas_lens.loading.prompts import PromptStyle, tokenize_with_spans
from sas_lens.steering.extraction import pair_texts
from sas_lens.typing import Bool, Float, Int, Tensor


@dataclass(frozen=True)
class PairBatch:
    """Texts of some pairs, tokenized, with what every step reuses: the residual after block ``L``.

    ``positive[j]`` is True for a text that is its pair's positive side, ``pair[j]`` the pair it belongs to.
    """

    tokens: Int[Tensor, "batch pos"]
    attention: Bool[Tensor, "batch pos"]
    predicted: Bool[Tensor, "batch pos"]  # position t's logits predict completion token t + 1
    residual: Float[Tensor, "batch pos d_model"]  # after block L, unsteered
    positive: Bool[Tensor, " batch"]
    pair: Int[Tensor, " batch"]
    reference: Float[Tensor, " batch"]  # log p_0(y | x)


@torch.no_grad()
def prepare_pairs(
    model,
    pairs: PairSet,
    layer: int,
    *,
    style: PromptStyle = PromptStyle(),
    batch_size: int = 8,
    subset: list[int] | None = None,
) -> list[PairBatch]:
    """Tokenize ``pairs`` (both sides of a pair in one batch), run blocks ``0 … layer`` once, score unsteered.

    Args:
        model: a HookedTransformer.
        pairs: completion pairs or A/B items.
        layer: the block whose ``hook_resid_post`` will be edited.
        style: base-model text or the chat template.
        batch_size: pairs per batch (each batch holds ``2 × batch_size`` texts).
        subset: the pairs to use, by position (all if ``None``).

    Example:
        >>> [batch.tokens.shape[0] for batch in prepare_pairs(model, pairs, 1, batch_size=1)]   # both sides
        [2, 2]
    """
    texts, spans = pair_texts(pairs, style, model.tokenizer)
    n = len(pairs)
    chosen = list(range(n)) if subset is None else list(subset)
    batches = []
    for start in range(0, len(chosen), batch_size):
        group = chosen[start : start + batch_size]
        rows = group + [n + i for i in group]
        tokens, attention, span = tokenize_with_spans(
            model.tokenizer, [texts[i] for i in rows], [spans[i] for i in rows]
        )
        device = model.cfg.device
        tokens, attention = tokens.to(device), attention.to(device)
        predicted = torch.zeros_like(span)
        predicted[:, :-1] = span[:, 1:]
        residual = model(tokens, attention_mask=attention, stop_at_layer=layer + 1).float()
        batch = PairBatch(
            tokens=tokens,
            attention=attention,
            predicted=predicted.to(device),
            residual=residual,
            positive=torch.tensor([i < n for i in rows]),
            pair=torch.tensor([i % n for i in rows]),
            reference=torch.zeros(len(rows)),
        )
        reference = completion_log_probs(model, batch, layer, residual).cpu()
        batches.append(replace(batch, reference=reference))
    return batches


def completion_log_probs(
    model, batch: PairBatch, layer: int, residual: Float[Tensor, "batch pos d_model"]
) -> Float[Tensor, " batch"]:
    """``log p(y | x)`` of each text's completion when the residual after block ``layer`` is ``residual``.

    Differentiable in ``residual``; only the completion's positions are unembedded.

    Args:
        model: a HookedTransformer.
        batch: from :func:`prepare_pairs`.
        layer: the edited block.
        residual: the residual after block ``layer`` (``batch.residual`` unsteered, plus an edit).

    Example:
        >>> batch = prepare_pairs(model, pairs, 1)[0]
        >>> torch.allclose(completion_log_probs(model, batch, 1, batch.residual), batch.reference.to(model.cfg.device))
        True
    """
    n_layers = model.cfg.n_layers
    final = residual
    if layer + 1 < n_layers:
        final = model(
            residual.to(model.cfg.dtype),
            start_at_layer=layer + 1,
            attention_mask=batch.attention,
            stop_at_layer=n_layers,
        )
    rows, positions = torch.nonzero(batch.predicted, as_tuple=True)
    logits = model.unembed(model.ln_final(final[rows, positions][None]))[0].float()
    targets = batch.tokens[rows, positions + 1]
    token_log_probs = logits.log_softmax(-1).gather(1, targets[:, None])[:, 0]
    return torch.zeros(batch.tokens.shape[0], device=token_log_probs.device).index_add(0, rows, token_log_probs)


def margins(
    model, batch: PairBatch, layer: int, residual: Float[Tensor, "batch pos d_model"]
) -> Float[Tensor, " pairs"]:
    """The preference margin ``m`` of each pair in ``batch`` at the edited ``residual`` (pairs in batch order).

    Args:
        model: a HookedTransformer.
        batch: from :func:`prepare_pairs`.
        layer: the edited block.
        residual: the edited residual after block ``layer``.

    Example:
        >>> batch = prepare_pairs(model, pairs, 1)[0]
        >>> margins(model, batch, 1, batch.residual).abs().max().item()   # no edit, no margin
        0.0
    """
    change = completion_log_probs(model, batch, layer, residual) - batch.reference.to(residual.device)
    positive = batch.positive.to(change.device)
    return change[positive] - change[~positive]


def margin_gradient(
    model, batches: list[PairBatch], layer: int, *, scale=None, progress: bool = False
) -> Float[Tensor, " d_model"]:
    """``∂ mean m / ∂δ`` at ``δ = 0``, for one vector ``δ`` added at every position (times ``scale(residual)``).

    Args:
        model: a HookedTransformer.
        batches: from :func:`prepare_pairs`.
        layer: the edited block.
        scale: per-token factor of the edit (an SAE's :func:`~sas_lens.steering.edits.output_scale`); 1 if ``None``.
        progress: a progress bar.

    Example:
        >>> margin_gradient(model, prepare_pairs(model, pairs, 1), 1).shape
        torch.Size([16])
    """
    total = torch.zeros(model.cfg.d_model, device=batches[0].residual.device)
    n_pairs = sum(int(batch.positive.sum()) for batch in batches)
    with _frozen(model), torch.enable_grad():  # callers may run under no_grad (sas_vector does)
        for batch in tqdm(batches, desc="margin gradient", disable=not progress, leave=False):
            residual = batch.residual.clone().requires_grad_(True)
            (grad,) = torch.autograd.grad(margins(model, batch, layer, residual).sum(), residual)
            factor = 1.0 if scale is None else scale(batch.residual)
            total += (grad * factor * batch.attention[..., None]).sum((0, 1))
    return total / n_pairs


class _frozen:
    """The model's parameters need no gradient while a vector is fitted or attributed (restored on exit)."""

    def __init__(self, model):
        self.parameters = [p for p in model.parameters() if p.requires_grad]

    def __enter__(self):
        for p in self.parameters:
            p.requires_grad_(False)

    def __exit__(self, *exc):
        for p in self.parameters:
            p.requires_grad_(True)
