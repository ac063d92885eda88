"""The fast generation backend: the same steering hooks on the Hugging Face twin of a model.

The output of Hugging Face decoder layer L is TransformerLens's
``blocks.L.hook_resid_post``, so the hook functions built by
:func:`sas_lens.steering.engine.steering_hooks` apply to it unchanged, and
``transformers``' ``generate`` (several times faster than TransformerLens's on
CPU) does the decoding. Hooks are PyTorch forward hooks, removed in a
``finally`` so that none outlives the call.
"""

from __future__ import annotations

from contextlib import contextmanager
from types import SimpleNamespace

import torch

from sas_lens.loading.saes import hook_layer


def has_hf_twin(model) -> bool:
    """Whether the fast ``"hf"`` generation backend is available for ``model``.

    Args:
        model: a model from :func:`~sas_lens.loading.models.load_model`.

    Example:
        >>> has_hf_twin(model)  # doctest: +SKIP
    """
    from sas_lens.loading.models import DEFAULT_MODEL, default_model_dir

    return getattr(model, "_sas_lens_hf_model", None) is not None or (
        model.cfg.model_name == DEFAULT_MODEL and (default_model_dir() / "config.json").exists()
    )


def preferred_backend(model) -> str:
    """``"hf"`` where the model has a transformers twin (faster generation), else ``"tl"``.

    Args:
        model: a model from :func:`~sas_lens.loading.models.load_model`.

    Example:
        >>> sl.generate(model, prompts, backend=preferred_backend(model))  # doctest: +SKIP
    """
    return "hf" if has_hf_twin(model) else "tl"


def hf_model_for(model):
    """The Hugging Face model with ``model``'s weights (loaded once and kept on ``model``).

    For the embedded default it is read from the converted cache; for any other
    model pass it in with ``load_model(name, hf_model=..., tokenizer=...)``.

    Args:
        model: a model from :func:`~sas_lens.loading.models.load_model`.

    Example:
        >>> hf_model = hf_model_for(model)  # doctest: +SKIP
    """
    hf_model = getattr(model, "_sas_lens_hf_model", None)
    if hf_model is not None:
        return hf_model
    from sas_lens.loading.models import DEFAULT_MODEL, default_model_dir

    if model.cfg.model_name != DEFAULT_MODEL or not (default_model_dir() / "config.json").exists():
        raise ValueError(
            "The 'hf' backend needs the Hugging Face twin of this model: load it with "
            "sl.load_model(name, hf_model=..., tokenizer=...), or use backend='tl'."
        )
    from transformers import AutoModelForCausalLM

    hf_model = AutoModelForCausalLM.from_pretrained(default_model_dir(), dtype=model.cfg.dtype)
    hf_model = hf_model.to(model.cfg.device).eval()
    # Kept beside the model, not registered as its submodule: the twin's weights must not join the model's
    # parameters(), state_dict() or fingerprint (caches keyed by the weights would stop matching after generate)
    object.__setattr__(model, "_sas_lens_hf_model", hf_model)
    return hf_model


def _decoder_layers(hf_model):
    for path in ("model.layers", "model.language_model.layers", "transformer.h", "gpt_neox.layers"):
        module = hf_model
        try:
            for part in path.split("."):
                module = getattr(module, part)
        except AttributeError:
            continue
        return module
    raise ValueError(f"Cannot find the decoder layers of {type(hf_model).__name__}.")


@contextmanager
def hf_hooks(hf_model, fwd_hooks):
    """Attach ``(hook_name, fn)`` pairs (``blocks.L.hook_resid_post`` only) to the HF decoder layers.

    Args:
        hf_model: the transformers twin.
        fwd_hooks: from :func:`~sas_lens.steering.engine.steering_hooks`.

    Example:
        >>> with hf_hooks(hf_model, sl.steering_hooks(model, {vec: 4.0}, sae=sae)):  # doctest: +SKIP
        ...     out = hf_model.generate(ids)  # doctest: +SKIP
    """
    layers = _decoder_layers(hf_model)
    handles = []
    try:
        for name, fn in fwd_hooks:
            layer = hook_layer(name)
            if layer is None or not name.endswith("hook_resid_post"):
                raise ValueError(f"The 'hf' backend steers blocks.L.hook_resid_post only, not {name!r}.")
            handles.append(layers[layer].register_forward_hook(_wrap(fn, name)))
        yield
    finally:
        for handle in handles:
            handle.remove()


def _wrap(fn, name: str):
    hook = SimpleNamespace(name=name)

    def forward_hook(module, inputs, output):
        residual = output[0] if isinstance(output, tuple) else output
        new = fn(residual, hook)
        if new is None:  # a hook that only reads (a condition's observer), as in TransformerLens
            return output
        return (new,) + output[1:] if isinstance(output, tuple) else new

    return forward_hook


@torch.no_grad()
def hf_generate(model, hf_model, tokens, attention_mask, fwd_hooks, *, max_new_tokens, do_sample, **kwargs):
    """``transformers`` generation of left-padded ``tokens`` with the steering hooks attached.

    Args:
        model: the HookedTransformer (for its tokenizer).
        hf_model: its transformers twin.
        tokens: left-padded prompt ids.
        attention_mask: their mask.
        fwd_hooks: the steering hooks.
        max_new_tokens: tokens to generate.
        do_sample: sample instead of greedy decoding.
        **kwargs: passed to ``generate``.

    Example:
        >>> sl.generate(model, prompts, steering={vec: 4.0}, sae=sae, backend="hf")   # the public way  # doctest: +SKIP
    """
    pad = model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else 0
    with hf_hooks(hf_model, fwd_hooks):
        return hf_model.generate(
            input_ids=tokens,
            attention_mask=attention_mask.long(),
            max_new_tokens=max_new_tokens,
            do_sample=do_sample,
            pad_token_id=pad,
            **kwargs,
        )
