"""Latents that fire on everything: how often each latent fires on ordinary text, and whether it fires on BOS.

A latent in every behaviour's vector is no behaviour's (on the demo's 16k SAE latent 10402 tops the
sentiment vector and the formality vector). FGAA (arXiv 2501.09929) drops latents whose firing density
exceeds 0.01 and latents active on the BOS token before it builds a vector; ``sas_vector``'s
``max_density`` and ``drop_bos`` do the same with the figures below. Density is read on the shipped
reference prompts (150 sentence openings written for sas_lens, about 1,500 tokens) unless other texts are
given: a coarse estimate, enough to tell a latent that fires on one token in a hundred from one that
fires on half of them.

Example:
    >>> stats = latent_density(model, sae, ["the movie was good", "i love this story"])
    >>> stats["density"].shape, stats["fires_on_bos"].dtype
    (torch.Size([48]), torch.bool)
"""

from __future__ import annotations

import torch

from sas_lens.loading.activations import sae_codes
from sas_lens.loading.prompts import left_pad, reference_prompts
from sas_lens.loading.saes import check_sae_fits


@torch.no_grad()
def latent_density(model, sae, texts: list[str] | None = None, *, batch_size: int = 16) -> dict[str, torch.Tensor]:
    """Each latent's firing density on ``texts`` (BOS excluded) and whether it fires on the BOS token.

    Args:
        model: the HookedTransformer ``sae`` reads.
        sae: the SAE.
        texts: the texts (default: the shipped reference prompts).
        batch_size: texts per forward pass.

    Returns:
        ``{"density": [d_sae] share of non-BOS tokens where the latent is active, "fires_on_bos": [d_sae] bool,
        "n_tokens": tokens counted}``.

    Example:
        >>> latent_density(model, sae, ["the movie was good"])["n_tokens"]   # BOS not counted
        4
    """
    check_sae_fits(sae, model)
    texts = reference_prompts() if texts is None else list(texts)
    if not texts:
        raise ValueError("latent_density needs at least one text.")
    active = torch.zeros(sae.cfg.d_sae)
    fires_on_bos = torch.zeros(sae.cfg.d_sae, dtype=torch.bool)
    n_tokens = 0
    bos = model.tokenizer.bos_token_id
    for start in range(0, len(texts), batch_size):
        rows = [model.to_tokens(text, prepend_bos=True)[0].tolist() for text in texts[start : start + batch_size]]
        tokens, attention = left_pad(model.tokenizer, rows)
        codes = sae_codes(model, sae, tokens.to(model.cfg.device), attention.to(model.cfg.device))
        is_bos = (tokens == bos) & attention if bos is not None else torch.zeros_like(attention)
        counted = attention & ~is_bos
        active += (codes[counted] > 0).float().sum(0)
        fires_on_bos |= (codes[is_bos] > 0).any(0)
        n_tokens += int(counted.sum())
    return {"density": active / max(n_tokens, 1), "fires_on_bos": fires_on_bos, "n_tokens": n_tokens}
