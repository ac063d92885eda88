"""A plain ``transformers`` causal LM, seen the way sas_lens sees a HookedTransformer.

sas_lens steers the residual stream after a block, ``blocks.L.hook_resid_post``. In a Hugging Face
decoder that is the output of decoder layer L (its hidden state, before the next layer; the last
layer's, before the final norm). :class:`HookedHF` wraps the model with the few things the steering
engine asks of a model — ``cfg``, ``tokenizer``, ``to_tokens``, ``hook_dict``, ``hooks``,
``run_with_cache``, ``run_with_hooks``, a forward that can stop after a block, the final norm and the
unembedding, ``generate`` — and nothing else, so the engine and the edits are the ones HookedTransformer
models use. Hooks are PyTorch forward hooks on the decoder layers, removed in a ``finally``.

What it cannot do: start a forward pass at a block (``start_at_layer``), which the A/B prefix cache, output
scores, the attribution rule and fitted vectors use; the prefix cache takes the full pass instead, the others
refuse a :class:`HookedHF` by name (:func:`~sas_lens.loading.models.check_starts_at_block`).

Example:
    >>> hooked = HookedHF(hf_model, tokenizer)                    # doctest: +SKIP
    >>> with sl.steer(hooked, {vec: 4.0}, sae=sae):               # doctest: +SKIP
    ...     logits = hooked(hooked.to_tokens("The film was"))
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import SimpleNamespace

import torch
from torch import nn

from sas_lens.loading.saes import hook_layer

DECODER_LAYER_PATHS = ("model.layers", "model.language_model.layers", "transformer.h", "gpt_neox.layers")
FINAL_NORM_PATHS = ("model.norm", "model.language_model.norm", "transformer.ln_f", "gpt_neox.final_layer_norm")


def decoder_layers(hf_model) -> nn.ModuleList:
    """The decoder layers of a transformers causal LM (the ones whose outputs are ``blocks.L.hook_resid_post``).

    Args:
        hf_model: a transformers causal LM.

    Example:
        >>> len(decoder_layers(hf_model))  # doctest: +SKIP
        18
    """
    module = _find(hf_model, DECODER_LAYER_PATHS)
    if module is None:
        raise ValueError(
            f"Cannot find the decoder layers of {type(hf_model).__name__} (looked for {', '.join(DECODER_LAYER_PATHS)})."
        )
    return module


def _find(root, paths: Sequence[str]):
    for path in paths:
        module = root
        try:
            for part in path.split("."):
                module = getattr(module, part)
        except AttributeError:
            continue
        return module
    return None


def residual_hook(fn: Callable, name: str):
    """A PyTorch forward hook that hands a decoder layer's output residual to a TransformerLens-style ``fn(a, hook)``.

    Args:
        fn: returns the new residual, or ``None`` to leave it (a hook that only reads).
        name: the TransformerLens hook name ``fn`` sees as ``hook.name``.

    Example:
        >>> handle = layer.register_forward_hook(residual_hook(fn, "blocks.1.hook_resid_post"))  # doctest: +SKIP
    """
    hook = SimpleNamespace(name=name)

    def forward_hook(module, inputs, output):
        residual = output[0] if isinstance(output, tuple) else output
        new = fn(residual, hook)
        if new is None:
            return output
        return (new,) + tuple(output[1:]) if isinstance(output, tuple) else new

    return forward_hook


@contextmanager
def decoder_layer_hooks(hf_model, fwd_hooks: Iterable[tuple[str, Callable]]):
    """Attach ``(blocks.L.hook_resid_post, fn)`` pairs to the decoder layers for the ``with`` block.

    Args:
        hf_model: a transformers causal LM.
        fwd_hooks: TransformerLens-style ``(name, fn)`` pairs.

    Raises:
        HookNotFoundError: a name other than ``blocks.L.hook_resid_post`` of an existing layer.

    Example:
        >>> with decoder_layer_hooks(hf_model, [("blocks.1.hook_resid_post", fn)]):  # doctest: +SKIP
        ...     hf_model(ids)
    """
    from sas_lens.errors import HookNotFoundError

    layers = decoder_layers(hf_model)
    handles = []
    try:
        for name, fn in fwd_hooks:
            layer = hook_layer(name)
            if layer is None or name != f"blocks.{layer}.hook_resid_post" or not 0 <= layer < len(layers):
                raise HookNotFoundError(
                    f"A transformers model has the hooks blocks.0.hook_resid_post .. "
                    f"blocks.{len(layers) - 1}.hook_resid_post (the decoder layers' outputs), not {name!r}."
                )
            handles.append(layers[layer].register_forward_hook(residual_hook(fn, name)))
        yield
    finally:
        for handle in handles:
            handle.remove()


class _Stop(Exception):
    """Raised by a hook to end a forward pass after a block, carrying that block's output residual."""

    def __init__(self, residual: torch.Tensor):
        super().__init__()
        self.residual = residual


@dataclass
class HFConfig:
    """The fields of a HookedTransformer's ``cfg`` that sas_lens reads."""

    model_name: str
    d_model: int
    n_layers: int
    d_vocab: int
    n_ctx: int
    device: torch.device
    dtype: torch.dtype
    normalization_type: str | None = "RMS"
    output_logits_soft_cap: float | None = None
    default_prepend_bos: bool = True


class HookedHF(nn.Module):
    """A transformers causal LM with TransformerLens's residual hook names (``blocks.L.hook_resid_post``).

    Args:
        hf_model: a transformers causal LM (``AutoModelForCausalLM``).
        tokenizer: its tokenizer.
        name: the model's name in vector provenance (default: the config's ``name_or_path``).
    """

    def __init__(self, hf_model, tokenizer, name: str | None = None):
        super().__init__()
        self.hf_model = hf_model.eval()
        self.tokenizer = tokenizer
        if tokenizer.pad_token_id is None or tokenizer.pad_token_id == tokenizer.bos_token_id:
            raise ValueError(
                "The tokenizer needs a pad token other than BOS (padding is read from the token ids); set "
                "tokenizer.pad_token (e.g. to its EOS) first."
            )
        text = hf_model.config.get_text_config() if hasattr(hf_model.config, "get_text_config") else hf_model.config
        parameter = next(hf_model.parameters())
        self.cfg = HFConfig(
            model_name=name or getattr(hf_model.config, "name_or_path", None) or type(hf_model).__name__,
            d_model=text.hidden_size,
            n_layers=len(decoder_layers(hf_model)),
            d_vocab=text.vocab_size,
            n_ctx=getattr(text, "max_position_embeddings", 2048),
            device=parameter.device,
            dtype=parameter.dtype,
            output_logits_soft_cap=getattr(text, "final_logit_softcapping", None),
        )
        self.hook_dict = {f"blocks.{layer}.hook_resid_post": None for layer in range(self.cfg.n_layers)}
        norm = _find(hf_model, FINAL_NORM_PATHS)
        if norm is None:
            raise ValueError(f"Cannot find the final norm of {type(hf_model).__name__}.")
        self.ln_final = norm
        self.unembed = hf_model.get_output_embeddings()

    # Tokenizing, as TransformerLens does: BOS prepended, right padding unless asked otherwise.
    def to_tokens(
        self, text: str | list[str], prepend_bos: bool = True, padding_side: str = "right", **_
    ) -> torch.Tensor:
        texts = [text] if isinstance(text, str) else list(text)
        rows = [self.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
        if prepend_bos:
            rows = [[self.tokenizer.bos_token_id, *row] for row in rows]
        width = max(len(row) for row in rows)
        pad = [self.tokenizer.pad_token_id]
        rows = [
            row + pad * (width - len(row)) if padding_side == "right" else pad * (width - len(row)) + row
            for row in rows
        ]
        return torch.tensor(rows, device=self.cfg.device)

    def to_str_tokens(self, text: str | torch.Tensor, prepend_bos: bool = True) -> list[str]:
        ids = text.reshape(-1) if torch.is_tensor(text) else self.to_tokens(text, prepend_bos=prepend_bos)[0]
        return [self.tokenizer.decode([int(t)]) for t in ids]

    def _attention(self, tokens: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        if attention_mask is not None:
            return attention_mask.to(tokens.device)
        return (tokens != self.tokenizer.pad_token_id).long()

    def _inputs(self, tokens: torch.Tensor, attention_mask: torch.Tensor | None) -> dict:
        """Ids, mask and positions counted from each sequence's first real token (left padding), as TransformerLens."""
        attention = self._attention(tokens, attention_mask)
        positions = (attention.cumsum(-1) - 1).clamp_min(0)
        return dict(input_ids=tokens, attention_mask=attention, position_ids=positions, use_cache=False)

    @contextmanager
    def hooks(self, fwd_hooks=(), bwd_hooks=(), reset_hooks_end: bool = True, clear_contexts: bool = False):
        if bwd_hooks:
            raise ValueError("A HookedHF model takes forward hooks only.")
        with decoder_layer_hooks(self.hf_model, fwd_hooks):
            yield self

    def forward(
        self,
        tokens: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        *,
        return_type: str = "logits",
        loss_per_token: bool = False,
        stop_at_layer: int | None = None,
        start_at_layer: int | None = None,
    ) -> torch.Tensor:
        """Logits (or the loss, or with ``stop_at_layer=L`` the residual after block L − 1), as HookedTransformer."""
        if start_at_layer is not None:
            raise NotImplementedError(
                "A transformers model cannot start a forward pass at a block (start_at_layer); this computation "
                "needs a HookedTransformer (sl.load_model(), kind='tl')."
            )
        inputs = self._inputs(tokens, attention_mask)
        if stop_at_layer is not None:
            if not 1 <= stop_at_layer <= self.cfg.n_layers:
                raise ValueError(f"stop_at_layer must lie in 1..{self.cfg.n_layers}, got {stop_at_layer}.")

            def stop(a, hook):
                raise _Stop(a)

            try:
                with decoder_layer_hooks(self.hf_model, [(f"blocks.{stop_at_layer - 1}.hook_resid_post", stop)]):
                    self.hf_model(**inputs)
            except _Stop as stopped:
                return stopped.residual
            raise RuntimeError("The forward pass ended without reaching the stop hook.")
        logits = self.hf_model(**inputs).logits
        if return_type == "logits":
            return logits
        if return_type == "loss":
            log_probs = logits[:, :-1].float().log_softmax(-1)
            loss = -log_probs.gather(-1, tokens[:, 1:, None])[..., 0]
            return loss if loss_per_token else loss.mean()
        raise ValueError(f"return_type must be 'logits' or 'loss', got {return_type!r}.")

    def run_with_hooks(self, tokens: torch.Tensor, *args, fwd_hooks=(), **kwargs) -> torch.Tensor:
        with self.hooks(fwd_hooks=fwd_hooks):
            return self(tokens, *args, **kwargs)

    def run_with_cache(self, tokens: torch.Tensor, *args, names_filter=None, **kwargs):
        names = _filtered(self.hook_dict, names_filter)
        cache: dict[str, torch.Tensor] = {}

        def keep(a, hook):
            cache[hook.name] = a.detach()

        with self.hooks(fwd_hooks=[(name, keep) for name in names]):
            out = self(tokens, *args, **kwargs)
        return out, cache

    @torch.no_grad()
    def generate(
        self,
        tokens: torch.Tensor,
        *,
        max_new_tokens: int = 10,
        do_sample: bool = False,
        padding_side: str = "left",
        verbose: bool = False,
        use_past_kv_cache: bool = True,
        **kwargs,
    ) -> torch.Tensor:
        """The prompt and its continuation, as HookedTransformer.generate returns them (left-padded prompts)."""
        if padding_side != "left":
            raise ValueError("A HookedHF model generates from left-padded prompts.")
        return self.hf_model.generate(
            input_ids=tokens,
            attention_mask=self._attention(tokens, None),
            max_new_tokens=max_new_tokens,
            do_sample=do_sample,
            use_cache=use_past_kv_cache,
            pad_token_id=self.tokenizer.pad_token_id,
            **({"top_k": None, "top_p": None, "temperature": None} if not do_sample else {}),
            **kwargs,
        )


def _filtered(hook_dict, names_filter) -> list[str]:
    if names_filter is None:
        return list(hook_dict)
    if isinstance(names_filter, str):
        return [names_filter]
    if callable(names_filter):
        return [name for name in hook_dict if names_filter(name)]
    return list(names_filter)
