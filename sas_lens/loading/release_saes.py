"""SAEs of SAELens releases by id (``"gemma-scope-2-270m-pt-res"``, ``"layer_9_width_16k_l0_medium"``), online or offline.

Online, SAELens's own loader downloads the SAE into the Hugging Face cache. Offline
(``HF_HUB_OFFLINE=1``), nothing may reach the network, and SAELens 6.54 still would:
when the cache lacks a file its Gemma Scope 2 loader falls back to HTTP range
requests, and it reads tensor shapes over HTTP even when the whole SAE is cached,
so the user gets a raw ``ConnectionError`` from deep inside ``requests``. Here the
release and id are checked against SAELens's directory first, the local cache is
looked up without a connection, and a cached SAE is loaded with the shape reader
pointed at the cached file; an SAE that is not cached gets one error that says how
to get it.

Example:
    >>> sae = load_release_sae("gemma-scope-2-270m-pt-res", "layer_9_width_16k_l0_medium")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import struct
from contextlib import contextmanager
from pathlib import Path

from sas_lens.errors import NoDefaultSAEError, SAENotCachedError, suggest


def hub_offline() -> bool:
    """Whether the Hugging Face hub is switched off (``HF_HUB_OFFLINE``, read now, not at import).

    Example:
        >>> isinstance(hub_offline(), bool)
        True
    """
    import huggingface_hub.constants

    from_env = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "on", "yes", "true")
    return from_env or bool(huggingface_hub.constants.HF_HUB_OFFLINE)


def release_location(release: str, sae_id: str) -> tuple[str, str]:
    """The Hugging Face repo and folder of an SAE in SAELens's directory of releases.

    Args:
        release: an SAELens release id.
        sae_id: an SAE id within it.

    Raises:
        NoDefaultSAEError: the release or the id is not in SAELens's directory (with the closest names).

    Example:
        >>> release_location("gemma-scope-2-270m-pt-res", "layer_9_width_16k_l0_medium")
        ('google/gemma-scope-2-270m-pt', 'resid_post/layer_9_width_16k_l0_medium')
    """
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    directory = get_pretrained_saes_directory()
    if release not in directory:
        raise NoDefaultSAEError(
            f"{release!r} is not an SAELens release.{suggest(release, directory)} Releases for Gemma 3 270M: "
            f"{sorted(r for r in directory if '270m' in r)}; a local SAELens folder loads by path."
        )
    entry = directory[release]
    if sae_id not in entry.saes_map:
        ids = sorted(entry.saes_map)
        shown = ", ".join(ids[:12]) + (f", ... ({len(ids)} in all)" if len(ids) > 12 else "")
        raise NoDefaultSAEError(f"The release {release!r} has no SAE {sae_id!r}.{suggest(sae_id, ids)} Ids: {shown}.")
    return entry.repo_id, entry.saes_map[sae_id]


def cached_folder(repo_id: str, folder: str) -> Path | None:
    """The local copy of ``folder`` of ``repo_id`` in the Hugging Face cache, or ``None``; never connects.

    Args:
        repo_id: e.g. ``"google/gemma-scope-2-270m-pt"``.
        folder: a folder inside the repo.

    Example:
        >>> cached_folder("google/gemma-scope-2-270m-pt", "resid_post/no_such_sae") is None
        True
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        snapshot = snapshot_download(repo_id, allow_patterns=[f"{folder}/*"], local_files_only=True)
    except LocalEntryNotFoundError:
        return None
    path = Path(snapshot) / folder
    return path if path.is_dir() and any(path.iterdir()) else None


def load_release_sae(release: str, sae_id: str, *, device: str = "cpu", dtype: str = "float32"):
    """Load ``sae_id`` of an SAELens ``release``: downloaded online, from the Hugging Face cache offline.

    Args:
        release: an SAELens release id.
        sae_id: an SAE id within it.
        device: where the SAE lives.
        dtype: the dtype it runs in.

    Raises:
        NoDefaultSAEError: no such release or id.
        SAENotCachedError: offline, and the cache holds no copy (the message says how to get one).

    Example:
        >>> sae = load_release_sae("gemma-scope-2-270m-pt-res", "layer_9_width_16k_l0_medium")  # doctest: +SKIP
    """
    from sae_lens import SAE

    repo_id, folder = release_location(release, sae_id)
    if not hub_offline():
        return SAE.from_pretrained(release, sae_id, device=device, dtype=dtype)
    if cached_folder(repo_id, folder) is None:
        from huggingface_hub.constants import HF_HUB_CACHE

        raise SAENotCachedError(
            f"HF_HUB_OFFLINE is set, and the Hugging Face cache ({HF_HUB_CACHE}) holds no copy of SAE {sae_id!r} "
            f"of the release {release!r} (repo {repo_id}, folder {folder}); sas_lens did not try to connect. "
            f"On a machine that is online, run `huggingface-cli download {repo_id} --include '{folder}/*'` "
            "and copy its cache here (or point HF_HUB_CACHE at it), or unset HF_HUB_OFFLINE to download it now; "
            "an SAE saved in SAELens's format loads by path: sl.load_sae('path/to/folder')."
        )
    with _shapes_read_from_cache():
        return SAE.from_pretrained(release, sae_id, device=device, dtype=dtype)


@contextmanager
def _shapes_read_from_cache():
    """Point SAELens's HTTP-only safetensors shape reader at the cached file, for the duration of one load."""
    from sae_lens.loading import pretrained_sae_loaders

    original = pretrained_sae_loaders.get_safetensors_tensor_shapes
    pretrained_sae_loaders.get_safetensors_tensor_shapes = _cached_safetensors_shapes
    try:
        yield
    finally:
        pretrained_sae_loaders.get_safetensors_tensor_shapes = original


def _cached_safetensors_shapes(repo_id: str, filename: str) -> dict[str, list[int]]:
    """Tensor name -> shape from the header of a cached safetensors file (what SAELens reads over HTTP)."""
    from huggingface_hub import hf_hub_download

    with open(hf_hub_download(repo_id, filename, local_files_only=True), "rb") as handle:
        (header_size,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(header_size))
    return {name: info["shape"] for name, info in header.items() if name != "__metadata__"}
