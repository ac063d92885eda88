"""A resumable on-disk cache of residual activations, for training and evaluating SAEs.

On a CPU the model's forward pass costs more than an SAE training step, so
activations are computed once, stored as float32 rows (float16 cannot hold
Gemma's residual norms of up to ~9e4), and read back at random for training:
both shipped SAEs are trained from one cache. Rows are appended in whole
batches and the row count is written after the data, so an interrupted run
resumes where the last complete batch ended.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from sas_lens.loading.text_data import (
    iter_documents,
    iter_token_sequences,
    resolve_text_files,
)
from sas_lens.typing import Activations

_DATA_FILE = "activations.f32"
_META_FILE = "meta.json"


@dataclass(frozen=True)
class CacheSpec:
    """What a cache holds; a cache on disk is reused only when its spec is equal."""

    model_name: str
    hook_name: str
    d_model: int
    context_size: int
    sources: tuple[str, ...]
    skip_sequences: int = 0


class ActivationCache:
    """Activations of one hook, ``[n_rows, d_model]`` float32, memory-mapped from disk.

    Args:
        folder: the cache's folder.
        max_rows: read only the first ``max_rows`` rows (an SAE trained on 6.4M tokens
            from a 15M-token cache sees the same 6.4M tokens whatever the cache holds).
    """

    def __init__(self, folder: str | Path, max_rows: int | None = None):
        self.folder = Path(folder)
        meta = json.loads((self.folder / _META_FILE).read_text())
        self.spec = CacheSpec(**{**meta["spec"], "sources": tuple(meta["spec"]["sources"])})
        self.n_rows: int = meta["n_rows"] if max_rows is None else min(meta["n_rows"], max_rows)
        self.n_sequences: int = meta["n_sequences"]
        self.rows = np.memmap(
            self.folder / _DATA_FILE, dtype=np.float32, mode="r", shape=(self.n_rows, self.spec.d_model)
        )

    def __len__(self) -> int:
        return self.n_rows

    def batch(self, indices: np.ndarray) -> Activations:
        """The rows at ``indices`` as a float32 tensor (sorted reads are faster from disk)."""
        return torch.from_numpy(np.ascontiguousarray(self.rows[np.sort(indices)]))


def build_activation_cache(
    model,
    hook_name: str,
    sources,
    folder: str | Path,
    n_tokens: int,
    *,
    context_size: int = 128,
    batch_size: int = 16,
    skip_sequences: int = 0,
    model_name: str | None = None,
) -> ActivationCache:
    """Fill ``folder`` with the activations of ``n_tokens`` text tokens at ``hook_name``.

    The BOS position of each sequence is left out: its residual is an outlier
    (norm ~9e4 at Gemma 3 270M's layer 9) that SAEs are not trained on.

    Args:
        model: a HookedTransformer.
        hook_name: e.g. ``"blocks.9.hook_resid_post"``.
        sources: text files, folders or ``hf:`` ids (see :mod:`sas_lens.loading.text_data`).
        folder: where the cache lives; an existing cache with the same spec is
            resumed or reused.
        n_tokens: how many activation rows to hold.
        context_size: tokens per sequence, BOS included.
        batch_size: sequences per forward pass.
        skip_sequences: sequences of the token stream to skip first (to keep a
            held-out cache disjoint from the training one).
        model_name: recorded in the spec; defaults to ``model.cfg.model_name``.

    Example:
        >>> cache = build_activation_cache(model, "blocks.9.hook_resid_post", "corpus/", "acts", 400_000)  # doctest: +SKIP
    """
    return build_activation_caches(
        model,
        {hook_name: folder},
        sources,
        n_tokens,
        context_size=context_size,
        batch_size=batch_size,
        skip_sequences=skip_sequences,
        model_name=model_name,
    )[hook_name]


def build_activation_caches(
    model,
    folders: dict[str, str | Path],
    sources,
    n_tokens: int,
    *,
    context_size: int = 128,
    batch_size: int = 16,
    skip_sequences: int = 0,
    model_name: str | None = None,
) -> dict[str, ActivationCache]:
    """Caches at several hooks from one pass over the text: ``{hook_name: folder}`` → ``{hook_name: cache}``.

    The forward stops after the deepest hook's block, so caching layers 3 to 15 of an
    18-layer model costs one pass to layer 15, not four. Each folder is an ordinary
    one-hook cache (see :func:`build_activation_cache`) and resumes on its own: a
    folder that an interruption left a batch ahead of the others is not written twice.

    Args:
        model: a HookedTransformer.
        folders: where each hook's cache lives.
        sources, n_tokens, context_size, batch_size, skip_sequences, model_name:
            as in :func:`build_activation_cache`.

    Example:
        >>> caches = build_activation_caches(model, {"blocks.3.hook_resid_post": "acts/l3",
        ...                                          "blocks.12.hook_resid_post": "acts/l12"}, "corpus/", 400_000)  # doctest: +SKIP
    """
    from sas_lens.loading.saes import check_hook_exists

    if not folders:
        raise ValueError("build_activation_caches needs at least one hook.")
    for hook_name in folders:
        check_hook_exists(model, hook_name)
    files = resolve_text_files(sources)
    writers = {}
    for hook_name, folder in folders.items():
        spec = CacheSpec(
            model_name=model_name or model.cfg.model_name,
            hook_name=hook_name,
            d_model=model.cfg.d_model,
            context_size=context_size,
            sources=tuple(str(f) for f in files),
            skip_sequences=skip_sequences,
        )
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        n_rows, n_sequences = _resume_point(folder, spec)
        writers[hook_name] = _CacheWriter(folder, spec, n_rows, n_sequences)
    pending = {hook: w for hook, w in writers.items() if w.n_rows < n_tokens}
    if pending:
        _fill(model, pending, files, n_tokens, context_size, batch_size, skip_sequences)
    return {hook_name: ActivationCache(folder) for hook_name, folder in folders.items()}


class _CacheWriter:
    """One hook's cache being appended to: its data file, spec and counts."""

    def __init__(self, folder: Path, spec: CacheSpec, n_rows: int, n_sequences: int):
        self.folder, self.spec, self.n_rows, self.n_sequences = folder, spec, n_rows, n_sequences

    def open(self):
        handle = open(self.folder / _DATA_FILE, "r+b" if self.n_rows else "wb")
        row_bytes = self.spec.d_model * 4
        handle.truncate(self.n_rows * row_bytes)  # drop a batch that was cut off mid-write
        handle.seek(self.n_rows * row_bytes)
        return handle

    def append(self, handle, rows: np.ndarray, n_sequences: int) -> None:
        handle.write(rows.tobytes())
        handle.flush()
        os.fsync(handle.fileno())
        self.n_rows += rows.shape[0]
        self.n_sequences += n_sequences
        _write_meta(self.folder, self.spec, self.n_rows, self.n_sequences)  # after the data: see the module doc


def _fill(
    model,
    writers: dict[str, _CacheWriter],
    files,
    n_tokens: int,
    context_size: int,
    batch_size: int,
    skip_sequences: int,
) -> None:
    from contextlib import ExitStack

    from sas_lens.loading.saes import hook_layer

    layers = [hook_layer(hook) for hook in writers]
    stop_at_layer = None if None in layers else max(layers) + 1  # a hook outside the blocks needs the whole pass
    d_model = model.cfg.d_model
    sequences = iter_token_sequences(model.tokenizer, iter_documents(files), context_size, batch_size)
    start = min(w.n_sequences for w in writers.values())
    with ExitStack() as stack:
        handles = {hook: stack.enter_context(w.open()) for hook, w in writers.items()}
        progress = stack.enter_context(
            tqdm(
                total=n_tokens,
                initial=min(w.n_rows for w in writers.values()),
                unit="tok",
                desc=f"caching {len(writers)} hook(s)",
            )
        )
        seen = 0
        for tokens in sequences:
            seen += tokens.shape[0]
            if seen <= skip_sequences + start:
                continue
            todo = [h for h, w in writers.items() if w.n_rows < n_tokens and seen > skip_sequences + w.n_sequences]
            if not todo:
                if all(w.n_rows >= n_tokens for w in writers.values()):
                    break
                continue
            first_seen = seen - tokens.shape[0]
            with torch.inference_mode():
                _, cache = model.run_with_cache(
                    tokens.to(model.cfg.device), names_filter=todo, stop_at_layer=stop_at_layer
                )
            for hook in todo:
                # A run resumed with another batch size can straddle what a hook already holds.
                new = max(0, skip_sequences + writers[hook].n_sequences - first_seen)
                rows = cache[hook][new:, 1:, :].reshape(-1, d_model).float().cpu().numpy()
                writers[hook].append(handles[hook], rows, tokens.shape[0] - new)
            progress.update(min(w.n_rows for w in writers.values()) - progress.n)
    short = [h for h, w in writers.items() if w.n_rows < n_tokens]
    if short:
        print(
            f"sas_lens: the text ran out after {min(writers[h].n_rows for h in short):,} tokens "
            f"(asked for {n_tokens:,})."
        )


def _resume_point(folder: Path, spec: CacheSpec) -> tuple[int, int]:
    meta_path = folder / _META_FILE
    if not meta_path.exists():
        return 0, 0
    meta = json.loads(meta_path.read_text())
    if meta["spec"] != json.loads(json.dumps(asdict(spec))):
        raise ValueError(
            f"The activation cache in {folder} was built with other settings ({meta['spec']}); "
            f"asked for {asdict(spec)}. Use another folder or delete this one."
        )
    return meta["n_rows"], meta["n_sequences"]


def _write_meta(folder: Path, spec: CacheSpec, n_rows: int, n_sequences: int) -> None:
    from sas_lens.loading.files import atomic_write_text

    atomic_write_text(
        folder / _META_FILE, json.dumps({"spec": asdict(spec), "n_rows": n_rows, "n_sequences": n_sequences}, indent=1)
    )
