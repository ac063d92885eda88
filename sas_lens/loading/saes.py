"""Loading SAEs (shipped, local folder, or SAELens release) and checking they fit a model.

Example:
    >>> import sas_lens as sl
    >>> model = sl.load_model()                                   # doctest: +SKIP
    >>> sae = sl.load_sae(model=model)                            # doctest: +SKIP
    >>> sae = sl.load_sae("gemma-scope-2-270m-pt-res", "layer_9_width_16k_l0_medium")  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import torch

from sas_lens.errors import (
    HookNotFoundError,
    IncompatibleSAEError,
    LayerOutOfRangeError,
    NoDefaultSAEError,
    suggest,
)

PRETRAINED_DIR = Path(__file__).parent.parent / "pretrained"
"""Folder of the SAEs shipped inside the package, one SAELens folder each."""

DEFAULT_SAE = "16k"
"""Short name of the shipped default SAE (see :func:`shipped_saes`)."""

SHIPPED_RELEASE = "sas_lens"
"""The release id recorded on shipped SAEs; their SAE id is the folder name (``gemma-3-270m-res-l9-16k``)."""

_LAYER_IN_HOOK = re.compile(r"^blocks\.(\d+)\.")


def shipped_saes(layer: int | None = None) -> dict[str, Path]:
    """Short name -> folder of every SAE shipped with the package (read from each ``card.json``).

    Args:
        layer: only the SAEs at this layer.

    Example:
        >>> sorted(shipped_saes(layer=9))
        ['16k', '4k', '4k-6.4M']
    """
    return {name: folder for name, (folder, _) in _shipped_cards(layer).items()}


def _shipped_cards(layer: int | None) -> dict[str, tuple[Path, dict]]:
    """Short name -> (folder, card) of the shipped SAEs (at ``layer`` unless ``None``), each card read once."""
    found: dict[str, tuple[Path, dict]] = {}
    if PRETRAINED_DIR.is_dir():
        for card_path in sorted(PRETRAINED_DIR.glob("*/card.json")):
            card = json.loads(card_path.read_text())
            if layer is None or card.get("layer") == layer:
                found[card["short_name"]] = card_path.parent, card
    return found


def load_sae(
    release: str | Path | None = None,
    sae_id: str | None = None,
    *,
    layer: int | None = None,
    model: Any = None,
    device: str | torch.device | None = None,
    dtype: str = "float32",
):
    """Load an SAE, and when ``model`` is given check that it fits before returning it.

    Args:
        release: ``None`` for the shipped default, a shipped short name (``"16k"``,
            ``"4k"``, ``"l12-4k"``: :func:`shipped_saes` lists them), a local SAELens folder
            (``cfg.json`` + ``sae_weights.safetensors``), or an SAELens release id (then
            ``sae_id`` is required): downloaded when online; with ``HF_HUB_OFFLINE=1``,
            read from the Hugging Face cache without a connection, or a clear
            :class:`~sas_lens.errors.SAENotCachedError` when it is not there.
        sae_id: the SAE's id within an SAELens release.
        layer: with a shipped width (``"4k"``) or ``None``, the shipped SAE of that width (the
            widest, for ``None``) at this layer: ``load_sae("4k", layer=12)``.
        model: if given, :func:`check_sae_fits` is run against it.
        device: defaults to the model's device, else ``"cpu"``.
        dtype: the dtype the SAE runs in. Shipped SAEs are stored in bfloat16 but run
            in float32: SAELens casts inputs to the SAE's dtype, and Gemma residuals
            overflow float16.

    Raises:
        NoDefaultSAEError: no shipped SAE of that name, or no such SAELens release or id.
        SAENotCachedError: offline, and the release's SAE is not in the Hugging Face cache.
        IncompatibleSAEError, HookNotFoundError, LayerOutOfRangeError: the SAE does
            not fit ``model``.

    Example:
        >>> sae = load_sae("4k")
        >>> sae.cfg.d_sae, sae.cfg.metadata.hook_name, sae.cfg.metadata.sae_id
        (4096, 'blocks.9.hook_resid_post', 'gemma-3-270m-res-l9-4k')
        >>> sae = sl.load_sae("gemma-scope-2-270m-pt-res", "layer_9_width_16k_l0_medium")  # doctest: +SKIP
    """
    from sae_lens import SAE

    if device is None:
        device = model.cfg.device if model is not None else "cpu"
    device = str(device)
    if layer is not None:
        if sae_id is not None:
            raise ValueError("Give either layer= (a shipped SAE) or sae_id= (an SAELens release), not both.")
        release = _shipped_at_layer(None if release is None else str(release), layer)
    if release is None or (sae_id is None and str(release) in shipped_saes()) or release == SHIPPED_RELEASE:
        folder = _shipped_folder(sae_id if release == SHIPPED_RELEASE else release)
        sae = SAE.load_from_disk(folder, device=device, dtype=dtype)
        # A shipped SAE says which it is, so that a vector built on it records the SAE it needs.
        sae.cfg.metadata.sae_lens_release = SHIPPED_RELEASE
        sae.cfg.metadata.sae_id = folder.name
    elif Path(release).expanduser().is_dir():
        sae = SAE.load_from_disk(Path(release).expanduser(), device=device, dtype=dtype)
    elif sae_id is None:
        shipped = shipped_saes()
        raise NoDefaultSAEError(
            f"{str(release)!r} is neither a shipped SAE ({sorted(shipped) or 'none shipped yet'}) nor a "
            f"folder.{suggest(str(release), shipped)} For an SAELens release, also give sae_id, e.g. "
            "load_sae('gemma-scope-2-270m-pt-res', 'layer_9_width_16k_l0_medium')."
        )
    else:
        from sas_lens.loading.release_saes import load_release_sae

        sae = load_release_sae(str(release), sae_id, device=device, dtype=dtype)
    if model is not None:
        check_sae_fits(sae, model)
    return sae


def width_label(d_sae: int) -> str:
    """How shipped names and errors write a width: ``"4k"`` for 4096 latents, the number when not a multiple of 1024.

    Args:
        d_sae: the SAE's number of latents.

    Example:
        >>> width_label(16384), width_label(48)
        ('16k', '48')
    """
    return f"{d_sae // 1024}k" if d_sae % 1024 == 0 else str(d_sae)


def shipped_sae_per_width(layer: int) -> dict[str, str]:
    """Width -> short name of the shipped SAE of that width at ``layer``, narrowest first.

    Where one width is shipped twice at a layer (``"4k"`` and ``"4k-6.4M"``, an SAE trained on more
    tokens), the one named after the width alone (``"4k"``, ``"l12-4k"``) is chosen: a width and a layer
    keep naming the SAE they named when vectors were saved on it; the others are loaded by name.

    Args:
        layer: the block whose residual the SAEs read.

    Example:
        >>> shipped_sae_per_width(9)
        {'4k': '4k', '16k': '16k'}
    """
    by_d_sae: dict[int, list[str]] = {}
    for name, (_, card) in _shipped_cards(layer).items():
        by_d_sae.setdefault(card.get("d_sae", 0), []).append(name)
    per_width: dict[str, str] = {}
    for d_sae, names in sorted(by_d_sae.items()):
        label = width_label(d_sae)
        # named after the width first, then by name (ties are deterministic)
        per_width[label] = max(names, key=lambda name: (name in (label, f"l{layer}-{label}"), name))
    return per_width


def shipped_sae_at(layer: int, width: str | None = None) -> str | None:
    """The short name of the shipped SAE of ``width`` (``"4k"``; the widest for ``None``) at ``layer``, or ``None``.

    Of two SAEs of one width, the one named after it (:func:`shipped_sae_per_width`).

    Args:
        layer: the block whose residual the SAE reads.
        width: ``"4k"``, ``"16k"``, ...; ``None``: the widest shipped at that layer.

    Example:
        >>> shipped_sae_at(9), shipped_sae_at(9, "4k")
        ('16k', '4k')
    """
    per_width = shipped_sae_per_width(layer)
    if width is None:
        return next(reversed(per_width.values()), None)  # narrowest first: the last is the widest
    return per_width.get(width.lower())


def _shipped_at_layer(width: str | None, layer: int) -> str:
    name = shipped_sae_at(layer, width)
    if name is None:
        offered = sorted(
            {(card.get("layer"), width_label(card.get("d_sae", 0))) for _, card in _shipped_cards(None).values()},
            key=lambda pair: (pair[0] is None, pair),
        )
        raise NoDefaultSAEError(
            f"No shipped SAE{f' of width {width}' if width else ''} at layer {layer}. Shipped (layer, width): "
            f"{offered}. Train one with `sas-lens train-sae ... --layer {layer}`."
        )
    return name


def _shipped_folder(short_name: str | Path | None) -> Path:
    shipped = shipped_saes()
    name = DEFAULT_SAE if short_name is None else str(short_name)
    if name in shipped:
        return shipped[name]
    by_folder = {folder.name: folder for folder in shipped.values()}
    if name in by_folder:
        return by_folder[name]
    if not shipped:
        raise NoDefaultSAEError(
            "No default SAE is shipped with this version of sas_lens yet. Load one by path "
            "(sl.load_sae('path/to/sae_folder')), by SAELens release "
            "(sl.load_sae('gemma-scope-2-270m-pt-res', 'layer_9_width_16k_l0_medium')), "
            "or train one with `sas-lens train-sae`."
        )
    raise NoDefaultSAEError(f"No shipped SAE is called {name!r}.{suggest(name, shipped)} Shipped: {sorted(shipped)}.")


def sae_hook_name(sae) -> str:
    """The hook an SAE reads, from its SAELens metadata.

    Args:
        sae: an SAELens SAE.

    Example:
        >>> sae_hook_name(sl.load_sae("4k"))
        'blocks.9.hook_resid_post'
    """
    hook_name = getattr(sae.cfg.metadata, "hook_name", None)
    if not hook_name:
        raise IncompatibleSAEError(
            "This SAE's config names no hook (cfg.metadata.hook_name is empty), so sas_lens cannot "
            "tell where it attaches. Set it, e.g. sae.cfg.metadata.hook_name = 'blocks.9.hook_resid_post'."
        )
    return hook_name


FINGERPRINT_PREFIX = "2-"
"""Marks fingerprints of the current kind; older files carry :func:`legacy_sae_fingerprint`'s, unprefixed."""

# Config fields that change what an SAE computes from the same weights.
_FINGERPRINTED_CFG = ("normalize_activations", "apply_b_dec_to_input", "rescale_acts_by_decoder_norm", "k")


def sae_fingerprint(sae) -> str:
    """A short hash of everything that sets an SAE's numbers: two SAEs with the same one compute the same.

    Hashed, as bytes (the same on every machine): every per-latent vector in full (``b_enc``,
    ``threshold``, ...) and ``b_dec``; the encoder columns and decoder rows of 256 evenly spaced latents
    (all of them up to 256 latents), which any re-training moves; the architecture, widths and the
    config fields that change the computation (normalisation, ``apply_b_dec_to_input``, TopK's ``k`` and
    decoder-norm rescaling). Re-calibrating a JumpReLU threshold or re-training the encoder gives another
    fingerprint, so caches keyed by it (latent indexes, topic and output scores) and vectors built on the
    old SAE stop matching. A hand edit of one weight of an unsampled latent is not seen.

    Args:
        sae: an SAELens SAE.

    Example:
        >>> sae_fingerprint(sl.load_sae("4k")) == sae_fingerprint(sl.load_sae("4k"))
        True
    """
    settings = {name: getattr(sae.cfg, name, None) for name in _FINGERPRINTED_CFG}
    digest = hashlib.sha256(
        json.dumps([sae.cfg.architecture(), sae.cfg.d_in, sae.cfg.d_sae, settings], default=str).encode()
    )
    d_sae = sae.cfg.d_sae
    n = min(256, d_sae)  # evenly spaced latents, in integers (float32 positions round for wide SAEs)
    latents = torch.arange(n, dtype=torch.int64) * (d_sae - 1) // max(n - 1, 1)
    for name, param in sorted(sae.named_parameters()):
        tensor = param.detach()
        if tensor.ndim == 2 and tensor.shape[0] == d_sae:  # W_dec: rows per latent
            tensor = tensor[latents.to(tensor.device)]
        elif tensor.ndim == 2 and tensor.shape[1] == d_sae:  # W_enc: columns per latent
            tensor = tensor[:, latents.to(tensor.device)]
        digest.update(name.encode())
        digest.update(tensor.float().cpu().contiguous().numpy().tobytes())
    return FINGERPRINT_PREFIX + digest.hexdigest()[:16]


def legacy_sae_fingerprint(sae) -> str:
    """The fingerprint that files of earlier sas_lens versions carry (decoder rows and biases only), to check them by.

    Args:
        sae: an SAELens SAE.

    Example:
        >>> len(legacy_sae_fingerprint(sl.load_sae("4k")))
        16
    """
    digest = hashlib.sha256()
    for tensor in (sae.W_dec[:: max(1, sae.cfg.d_sae // 256)], sae.b_dec, sae.b_enc):
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    digest.update(f"{sae.cfg.architecture()}:{sae.cfg.d_in}:{sae.cfg.d_sae}".encode())
    return digest.hexdigest()[:16]


def fingerprint_matches(recorded: str | None, sae) -> bool:
    """Whether a recorded fingerprint (either kind; ``None``: nothing recorded) is ``sae``'s.

    Args:
        recorded: a fingerprint from a saved file.
        sae: an SAELens SAE.

    Example:
        >>> fingerprint_matches(sae_fingerprint(sl.load_sae("4k")), sl.load_sae("4k"))
        True
    """
    if recorded is None:
        return True
    if recorded.startswith(FINGERPRINT_PREFIX):
        return recorded == sae_fingerprint(sae)
    return recorded == legacy_sae_fingerprint(sae)


def sae_release_and_id(sae) -> tuple[str | None, str | None]:
    """The SAELens release and SAE id an SAE was loaded by (shipped SAEs: ``"sas_lens"`` and their folder name).

    Args:
        sae: an SAELens SAE.

    Example:
        >>> sae_release_and_id(sl.load_sae("4k"))
        ('sas_lens', 'gemma-3-270m-res-l9-4k')
    """
    metadata = sae.cfg.metadata
    release = getattr(metadata, "sae_lens_release", None) or getattr(sae.cfg, "release", None)
    sae_id = getattr(metadata, "sae_id", None) or getattr(sae.cfg, "sae_id", None)
    return release, sae_id


def hook_layer(hook_name: str) -> int | None:
    """The block index in ``blocks.L.…`` hook names; ``None`` for other hooks.

    Args:
        hook_name: a TransformerLens hook name.

    Example:
        >>> hook_layer("blocks.9.hook_resid_post"), hook_layer("hook_embed")
        (9, None)
    """
    match = _LAYER_IN_HOOK.match(hook_name)
    return int(match.group(1)) if match else None


def check_layer(model, layer: int) -> None:
    """Raise :class:`LayerOutOfRangeError` unless ``0 <= layer < n_layers``.

    Args:
        model: a HookedTransformer.
        layer: the layer asked for.

    Example:
        >>> check_layer(model, 18)   # LayerOutOfRangeError: ... valid layers are 0 to 17  # doctest: +SKIP
    """
    n_layers = model.cfg.n_layers
    if not 0 <= layer < n_layers:
        raise LayerOutOfRangeError(
            f"Layer {layer} is out of range: {model.cfg.model_name} has {n_layers} layers, "
            f"so valid layers are 0 to {n_layers - 1}."
        )


def resolved_hook_name(model, hook_name: str) -> str:
    """The hook point's own name: a TransformerBridge's alias resolved (``blocks.9.hook_resid_post`` is its
    ``blocks.9.hook_out``), any other model's name as given.

    Hooks are registered under this name, so that ``hook.name`` inside a hook is the name sas_lens gave:
    SAELens's ``SAETransformerBridge`` lists only canonical names in ``hook_dict`` and its ``hooks()`` silently
    skips an alias.

    Args:
        model: a HookedTransformer, TransformerBridge or HookedHF.
        hook_name: the hook asked for.

    Example:
        >>> resolved_hook_name(model, "blocks.1.hook_resid_post")
        'blocks.1.hook_resid_post'
    """
    resolve = getattr(model, "_resolve_hook_name", None)  # the bridge's own alias map (no public accessor)
    resolved = resolve(hook_name) if resolve is not None else hook_name
    return resolved if resolved in model.hook_dict else hook_name


def check_hook_exists(model, hook_name: str) -> None:
    """Raise :class:`HookNotFoundError` (or :class:`LayerOutOfRangeError`) if the model lacks the hook.

    Args:
        model: a HookedTransformer.
        hook_name: the hook asked for.

    Example:
        >>> check_hook_exists(model, "blocks.9.hook_resid_pst")   # HookNotFoundError: ... Did you mean  # doctest: +SKIP
    """
    if resolved_hook_name(model, hook_name) in model.hook_dict:
        return
    layer = hook_layer(hook_name)
    if layer is not None and not 0 <= layer < model.cfg.n_layers:
        check_layer(model, layer)
    raise HookNotFoundError(
        f"The model {model.cfg.model_name} has no hook {hook_name!r}.{suggest(hook_name, model.hook_dict)} "
        "Residual-stream SAEs read hooks named 'blocks.<layer>.hook_resid_post'."
    )


def check_sae_fits(sae, model) -> None:
    """Check, before anything is attached, that ``sae`` can read ``model``'s activations.

    Args:
        sae: an SAELens SAE.
        model: a HookedTransformer.

    Raises:
        HookNotFoundError: the SAE's hook is not in the model.
        LayerOutOfRangeError: the hook names a layer the model does not have.
        IncompatibleSAEError: the SAE's ``d_in`` differs from the model's ``d_model``, or
            the SAE runs in float16 (see below).

    SAELens casts an SAE's input to the SAE's dtype, and residual norms exceed float16's
    range (65,504) on real models (Gemma 3 270M's layer 9 reaches 88,000), so a float16 SAE
    encodes ``inf``; it is refused here rather than steering with garbage.

    Example:
        >>> check_sae_fits(sl.load_sae("4k"), model)  # doctest: +SKIP
    """
    if sae.dtype == torch.float16:
        raise IncompatibleSAEError(
            "This SAE runs in float16, whose range (65,504) residual activations exceed (Gemma's reach 88,000), so "
            "its encoding would overflow to inf. Run it in float32 or bfloat16: sae.to(torch.float32), or "
            "sl.load_sae(..., dtype='float32')."
        )
    hook_name = sae_hook_name(sae)
    check_hook_exists(model, hook_name)
    if sae.cfg.d_in != model.cfg.d_model:
        sae_model = getattr(sae.cfg.metadata, "model_name", None) or "another model"
        raise IncompatibleSAEError(
            f"The SAE has d_in={sae.cfg.d_in} but {model.cfg.model_name} has d_model={model.cfg.d_model}: "
            f"it was trained on {sae_model}. Load an SAE trained on {model.cfg.model_name}, "
            "or load the model this SAE was trained on."
        )


def write_shipped_sae(source: str | Path, short_name: str, card: dict, dtype: torch.dtype = torch.bfloat16) -> Path:
    """Copy a trained SAELens folder into the package as a shipped SAE (maintainers' tool).

    Weights are stored in ``dtype`` (bfloat16 by default: half the size, and unlike
    float16 it keeps float32's range, which the encoder needs once the activation
    scale is folded into it); :func:`load_sae` runs them in float32.

    Args:
        source: a trained SAELens folder.
        short_name: the name ``load_sae`` will know it by (``"16k"``).
        card: what the card records (``model``, ``layer``, training settings, evaluation).
        dtype: the dtype stored on disk.

    Example:
        >>> write_shipped_sae("runs/l9-16k", "16k", {"model": "gemma-3-270m", "layer": 9})  # doctest: +SKIP
    """
    from safetensors.torch import load_file, save_file

    source = Path(source)
    at_layer = f"l{card['layer']}-"
    target = PRETRAINED_DIR / f"{card['model']}-res-{'' if short_name.startswith(at_layer) else at_layer}{short_name}"
    target.mkdir(parents=True, exist_ok=True)
    weights = load_file(source / "sae_weights.safetensors")
    save_file(
        {name: tensor.to(dtype).contiguous() for name, tensor in weights.items()}, target / "sae_weights.safetensors"
    )
    cfg = json.loads((source / "cfg.json").read_text())
    cfg["dtype"] = "float32"
    (target / "cfg.json").write_text(json.dumps(cfg, indent=1))
    (target / "card.json").write_text(json.dumps({"short_name": short_name, **card}, indent=2))
    return target
