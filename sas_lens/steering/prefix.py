"""The unsteered blocks below the first hooked layer, run once per batch of prompts and kept.

In a λ sweep at layer L every steered run of the same prompts computes the same
residuals in blocks ``0 … L−1``: no hook is there to change them. A :class:`PrefixCache`
keeps, per batch, the residual entering the first block that has a hook, and later
runs start there (TransformerLens's ``start_at_layer``), so a sweep at layer 9 of 18
runs half the model per λ. Hooks on ``blocks.L.hook_resid_post`` fire inside block L,
so the cached residual is the one entering block L, and block L runs with its hooks.

What counts as "hooked" is read from the model itself, at call time: every hook
point with a forward hook, the caller's own included. A residual is reused only for
the same model, the same token ids and mask, and the same start layer, so a cache
cannot hand one prompt's residual to another; what it cannot see is a change of the
model's weights, so keep a cache for one model as it is (the evaluation harness keeps
one per run).

Example:
    >>> cache, items = PrefixCache(), sl.load_pairs("demo:caution")
    >>> for lam in (-4.0, 0.0, 4.0):
    ...     p = sl.ab_probabilities(model, items, steering={vec: lam}, sae=sae, prefix=cache)
    >>> len(cache) > 0   # the blocks below the hook ran once, for the first λ
    True
"""

from __future__ import annotations

import re
import weakref

from sas_lens.typing import Float, Tensor

_BLOCK = re.compile(r"blocks\.(\d+)\.")


def first_hooked_layer(model) -> int:
    """The first block any forward hook of ``model`` sits in: 0 for hooks on the embedding, ``n_layers`` for none.

    Args:
        model: a HookedTransformer (with the hooks of interest attached).

    Example:
        >>> fn = lambda a, hook: a
        >>> with model.hooks(fwd_hooks=[("blocks.1.hook_resid_post", fn)]):
        ...     first_hooked_layer(model)
        1
    """
    first = model.cfg.n_layers
    for name, point in model.hook_dict.items():
        if point._forward_hooks:
            match = _BLOCK.match(name)
            if match:
                first = min(first, int(match.group(1)))
            elif not name.startswith(("ln_final", "unembed")):  # hook_embed, hook_pos_embed, hook_tokens
                return 0
    return first


class PrefixCache:
    """Per (model, start layer, batch of prompts): the unsteered residual entering block ``start``.

    Args:
        max_bytes: stop keeping new residuals beyond this many bytes (they are then recomputed each
            time, as without a cache); 1 GiB by default.

    Example:
        >>> cache = PrefixCache()
        >>> cache.n_bytes
        0
    """

    def __init__(self, max_bytes: int = 2**30):
        self.max_bytes = max_bytes
        self.n_bytes = 0
        self._entries: dict[tuple, Tensor] = {}
        self._models: dict[int, weakref.ref] = {}  # an id is reused once its model is gone: entries die with it

    def residual(self, model, tokens: Tensor, attention_mask: Tensor, start: int) -> Float[Tensor, "batch pos d_model"]:
        """The residual entering block ``start`` for these tokens, computed (blocks below ``start``) or reused.

        Args:
            model: the HookedTransformer; no hook may sit below ``start`` (see :func:`first_hooked_layer`).
            tokens: left-padded token ids.
            attention_mask: their mask.
            start: the first block that will run.
        """
        owner = self._models.get(id(model))
        if owner is None or owner() is not model:
            self._forget(id(model))
            self._models[id(model)] = weakref.ref(model)
        key = (
            id(model),
            start,
            tuple(tokens.shape),
            tokens.cpu().numpy().tobytes(),
            attention_mask.cpu().numpy().tobytes(),
        )
        if key in self._entries:
            return self._entries[key]
        residual = model(tokens, attention_mask=attention_mask, stop_at_layer=start)
        size = residual.numel() * residual.element_size()
        if self.n_bytes + size <= self.max_bytes:
            self._entries[key] = residual
            self.n_bytes += size
        return residual

    def __len__(self) -> int:
        return len(self._entries)

    def _forget(self, model_id: int) -> None:
        for key in [key for key in self._entries if key[0] == model_id]:
            residual = self._entries.pop(key)
            self.n_bytes -= residual.numel() * residual.element_size()


def run_from_prefix(model, tokens: Tensor, attention_mask: Tensor, cache: PrefixCache | None) -> Tensor:
    """The residual after the last block, equal to ``model(tokens, stop_at_layer=n_layers)``, reusing ``cache``.

    Args:
        model: a HookedTransformer, its hooks attached.
        tokens: left-padded token ids.
        attention_mask: their mask.
        cache: where the unsteered prefix is kept; ``None`` runs every block.

    Example:
        >>> mask = tokens != model.tokenizer.pad_token_id
        >>> run_from_prefix(model, tokens, mask, PrefixCache()).shape == (*tokens.shape, model.cfg.d_model)
        True
    """
    n_layers = model.cfg.n_layers
    start = first_hooked_layer(model) if cache is not None else 0
    if start == 0:
        return model(tokens, attention_mask=attention_mask, stop_at_layer=n_layers)
    residual = cache.residual(model, tokens, attention_mask, start)
    if start == n_layers:
        return residual
    return model(residual, start_at_layer=start, attention_mask=attention_mask, stop_at_layer=n_layers)
