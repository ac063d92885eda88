"""Reading a model's activations at one hook, and an SAE's codes there; the forward stops after the hook's block.

Example:
    >>> codes = sae_codes(model, sae, model.to_tokens("What a lovely day"))   # doctest: +SKIP
    >>> codes.shape                                                           # doctest: +SKIP
    torch.Size([1, 6, 16384])
"""

from __future__ import annotations

import torch

from sas_lens.loading.saes import hook_layer, resolved_hook_name, sae_hook_name
from sas_lens.typing import Float, Int, Tensor


@torch.no_grad()
def activations_at(
    model, hook_name: str, tokens: Int[Tensor, "batch pos"], attention_mask: Tensor | None = None
) -> Tensor:
    """The activations at ``hook_name`` for ``tokens`` (on the model's device); blocks after the hook's are not run.

    Args:
        model: a HookedTransformer.
        hook_name: any hook of the model.
        tokens: token ids.
        attention_mask: for left-padded batches.

    Example:
        >>> acts = activations_at(model, "blocks.9.hook_resid_post", model.to_tokens("Hello"))  # doctest: +SKIP
    """
    layer = hook_layer(hook_name)
    hook_name = resolved_hook_name(model, hook_name)  # a bridge caches under the canonical name
    device = model.cfg.device
    mask = attention_mask.to(device) if attention_mask is not None else None
    _, cache = model.run_with_cache(
        tokens.to(device),
        attention_mask=mask,
        names_filter=hook_name,
        stop_at_layer=layer + 1 if layer is not None else None,
    )
    return cache[hook_name]


@torch.no_grad()
def sae_codes(
    model, sae, tokens: Int[Tensor, "batch pos"], attention_mask: Tensor | None = None
) -> Float[Tensor, "batch pos d_sae"]:
    """``f(a)``: the SAE's codes of the activations at its hook, float32 on the CPU.

    Args:
        model: the HookedTransformer ``sae`` reads.
        sae: the SAE.
        tokens: token ids.
        attention_mask: for left-padded batches.

    Example:
        >>> codes = sae_codes(model, sae, model.to_tokens("Hello"))  # doctest: +SKIP
    """
    acts = activations_at(model, sae_hook_name(sae), tokens, attention_mask)
    return sae.encode(acts.to(sae.device, sae.dtype)).float().cpu()
