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

import torch

from sas_lens.loading.hf_models import HookedHF, decoder_layer_hooks


def has_hf_twin(model) -> bool:
    """Whether the fast ``"hf"`` generation backend is available for ``model``.

    Args:
        model: a model from :func:`~sas_lens.loading.models.load_model`.

    Example:
        >>> has_hf_twin(model)  # doctest: +SKIP
    """
    from sas_lens.loading.models import DEFAULT_MODEL, default_model_dir

    if isinstance(model, HookedHF):
        return True
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
    if isinstance(model, HookedHF):  # a transformers model already: its own twin
        return model.hf_model
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
    with decoder_layer_hooks(hf_model, fwd_hooks):
        yield


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
