"""A/B answer probabilities under steering (the CAA protocol's measurement).

For each item the model reads the question and the answer prefix ending in
``(``; the probability of the behaviour-matching letter is normalised over the
two letters: ``p = P(match) / (P(match) + P(other))``.

Example:
    >>> p = ab_probabilities(model, sl.load_pairs("demo:caution"), steering={vec: 4.0}, sae=sae)
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from sas_lens.loading.models import is_bridge
from sas_lens.loading.pairs import ABItem, PairSet
from sas_lens.loading.prompts import (
    PromptStyle,
    format_ab,
    left_pad,
    tokenize_with_spans,
)
from sas_lens.steering.engine import build_hooks
from sas_lens.steering.prefix import PrefixCache, run_from_prefix
from sas_lens.typing import Float, Tensor


def last_position_logits(
    model, tokens: Tensor, attention_mask: Tensor | None = None, *, prefix: PrefixCache | None = None
) -> Float[Tensor, "batch d_vocab"]:
    """The model's logits at the last position only, equal to ``model(tokens)[:, -1]``.

    Gemma's unembedding (262k tokens) at every position costs more than all the blocks below
    it, and an A/B item reads one position: unembedding only that one made A/B scoring about
    2x faster on the embedded model.

    Args:
        model: a HookedTransformer.
        tokens: left-padded token ids.
        attention_mask: their mask (required with ``prefix``).
        prefix: keeps the unsteered blocks below the first hooked one across calls (see
            :mod:`sas_lens.steering.prefix`).

    Example:
        >>> logits = last_position_logits(model, model.to_tokens("The film was"))
    """
    if is_bridge(model):  # no residual-only forward to reuse: the full pass, read at the last position
        return model(tokens, attention_mask=attention_mask)[:, -1]
    if prefix is not None:
        residual = run_from_prefix(model, tokens, attention_mask, prefix)[:, -1]
    else:
        residual = model(tokens, attention_mask=attention_mask, stop_at_layer=model.cfg.n_layers)[:, -1]
    if model.cfg.normalization_type is not None:
        residual = model.ln_final(residual[:, None])[:, 0]
    logits = model.unembed(residual[:, None])[:, 0]
    cap = getattr(model.cfg, "output_logits_soft_cap", None)
    if cap is not None and cap > 0:  # Gemma 2's final soft-cap, as in HookedTransformer.forward
        logits = cap * torch.tanh(logits / cap)
    return logits


def _letter_prompt(model, item: ABItem, style: PromptStyle) -> tuple[list[int], int, int]:
    """The context tokens before the answer letter, and the token ids of both letters."""
    rows = []
    for letter in (item.matching, item.not_matching):
        text, span = format_ab(item, letter, style, model.tokenizer)
        tokens, _, mask = tokenize_with_spans(model.tokenizer, [text], [span])
        position = int(mask[0].nonzero()[0, 0])
        if int(mask[0].sum()) != 1 or model.tokenizer.decode(tokens[0, position]).strip() != letter:
            raise ValueError(
                f"The tokenizer does not give the answer letter {letter!r} a token of its own after "
                f"{style.answer_prefix!r}; choose an answer prefix after which it does."
            )
        rows.append((tokens[0, :position].tolist(), int(tokens[0, position])))
    (context, match_id), (other_context, other_id) = rows
    if context != other_context:
        raise ValueError("The two answers of an item tokenize with different contexts.")
    return context, match_id, other_id


@torch.no_grad()
def ab_probabilities(
    model,
    items: PairSet,
    *,
    steering: Mapping | None = None,
    sae=None,
    when=None,
    style: PromptStyle = PromptStyle(),
    batch_size: int = 8,
    prefix: PrefixCache | None = None,
) -> Float[Tensor, " n"]:
    """Normalised probability of the behaviour-matching letter for each A/B item, optionally steered.

    Steering applies at every position of the prompt (as in CAA's A/B evaluation).

    Args:
        model: a HookedTransformer.
        items: A/B items (a :class:`~sas_lens.loading.pairs.PairSet` of ``ABItem``).
        steering: ``{vector: λ}`` as for :func:`~sas_lens.steering.engine.steer`; ``None``: unsteered.
        sae: the SAE(s) the SAS vectors were built on.
        when: a :class:`~sas_lens.steering.conditions.Condition` gating the steering (per item for
            ``per="sequence"``, padding excluded).
        style: how an item is written as a prompt (base-model text or the chat template).
        batch_size: items per forward pass.
        prefix: a :class:`~sas_lens.steering.prefix.PrefixCache` shared by calls on the same items (a λ sweep):
            the blocks below the first steered layer run once per batch, not once per call.

    Returns:
        ``p(matching) / (p(matching) + p(other))`` per item, read at the answer letter.

    Example:
        >>> p = sl.ab_probabilities(model, sl.load_pairs("demo:caution"), steering={vec: 4.0}, sae=sae)
        >>> bool(((p >= 0) & (p <= 1)).all())
        True
    """
    if items.kind != "ab":
        raise ValueError(f"ab_probabilities needs A/B items; {items.name!r} holds completion pairs.")
    prompts = [_letter_prompt(model, item, style) for item in items]
    hooks, policy = build_hooks(model, steering or {}, sae=sae, when=when)
    out = torch.empty(len(prompts))
    with model.hooks(fwd_hooks=hooks):
        for start in range(0, len(prompts), batch_size):
            batch = prompts[start : start + batch_size]
            tokens, attention = left_pad(model.tokenizer, [context for context, _, _ in batch])
            # each batch is a new prompt, all of it; padding never fires a condition
            policy.reset(attention, prompt_len=tokens.shape[1])
            device = model.cfg.device
            logits = last_position_logits(model, tokens.to(device), attention.to(device), prefix=prefix).float()
            pair_logits = torch.stack(
                [logits[i, [match_id, other_id]] for i, (_, match_id, other_id) in enumerate(batch)]
            )
            out[start : start + len(batch)] = pair_logits.softmax(-1)[:, 0].cpu()
    return out
