"""Steered generation: left-padded batches with the KV cache, on TransformerLens or the transformers twin.

Example:
    >>> out = sl.generate(model, ["i think the movie"], steering={vec: 4.0}, sae=sae, max_new_tokens=4)
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from sas_lens.loading.prompts import tokenize_with_spans
from sas_lens.steering.engine import build_hooks


@torch.no_grad()
def generate(
    model,
    prompts: str | list[str],
    *,
    steering: Mapping | None = None,
    sae=None,
    positions: str = "all",
    when=None,
    max_new_tokens: int = 40,
    do_sample: bool = False,
    seed: int | None = None,
    backend: str = "tl",
    batch_size: int = 8,
    **generate_kwargs,
) -> list[str]:
    """Continue prompts, steered, in left-padded batches with the KV cache; returns the continuations.

    Args:
        model: a HookedTransformer (from :func:`sas_lens.load_model`).
        prompts: one prompt or a list of them.
        steering: ``{vector: λ}`` as for :func:`~sas_lens.steering.engine.steer`; ``None`` or ``{}``: unsteered.
        sae: the SAE(s) the SAS vectors were built on.
        max_new_tokens: tokens to generate per prompt.
        batch_size: prompts per left-padded batch.
        backend: ``"tl"`` (TransformerLens's ``generate``) or ``"hf"`` (the same hooks on the
            Hugging Face twin of the model, decoded by ``transformers``; several times faster).
        do_sample, seed: greedy by default; with ``do_sample=True`` a ``seed`` makes it repeatable.
        positions: see :class:`PositionPolicy`.
        when: a :class:`~sas_lens.steering.conditions.Condition` gating the steering.

    Example:
        >>> out = sl.generate(model, prompts, steering={vec: 4.0}, sae=sae, max_new_tokens=4)
        >>> len(out) == len(prompts) and all(isinstance(text, str) for text in out)
        True
    """
    if backend not in ("tl", "hf"):
        raise ValueError(f"backend must be 'tl' or 'hf', got {backend!r}.")
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    hooks, policy = build_hooks(model, steering or {}, sae=sae, positions=positions, when=when)
    if backend == "hf":
        from sas_lens.steering.hf_backend import hf_generate, hf_model_for

        hf_model = hf_model_for(model)
    outputs: list[str] = []
    with torch.random.fork_rng():
        if seed is not None:
            torch.manual_seed(seed)
        for start in range(0, len(prompts), batch_size):
            batch = prompts[start : start + batch_size]
            tokens, attention, _ = tokenize_with_spans(model.tokenizer, batch, [(0, len(p)) for p in batch])
            tokens, attention = tokens.to(model.cfg.device), attention.to(model.cfg.device)
            policy.reset(attention, prompt_len=tokens.shape[1])  # generated tokens are what comes after
            if backend == "hf":
                out = hf_generate(
                    model,
                    hf_model,
                    tokens,
                    attention,
                    hooks,
                    max_new_tokens=max_new_tokens,
                    do_sample=do_sample,
                    **generate_kwargs,
                )
            else:
                with model.hooks(fwd_hooks=hooks):
                    out = model.generate(
                        tokens,
                        max_new_tokens=max_new_tokens,
                        do_sample=do_sample,
                        verbose=False,
                        use_past_kv_cache=True,
                        padding_side="left",
                        **generate_kwargs,
                    )
            outputs.extend(_continuations(model.tokenizer, out[:, tokens.shape[1] :]))
    return outputs


def _continuations(tokenizer, new_tokens: torch.Tensor) -> list[str]:
    texts = []
    for row in new_tokens.tolist():
        if tokenizer.eos_token_id in row:
            row = row[: row.index(tokenizer.eos_token_id)]
        texts.append(tokenizer.decode(row, skip_special_tokens=True))
    return texts
