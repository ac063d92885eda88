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

from sas_lens.loading.activations import activations_at
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
    """Activations of one hook, ``[n_rows, d_model]`` float32, memory-mapped from disk."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        meta = json.loads((self.folder / _META_FILE).read_text())
        self.spec = CacheSpec(**{**meta["spec"], "sources": tuple(meta["spec"]["sources"])})
        self.n_rows: int = meta["n_rows"]
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
    from sas_lens.loading.saes import check_hook_exists

    check_hook_exists(model, hook_name)
    files = resolve_text_files(sources)
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
    if n_rows >= n_tokens:
        return ActivationCache(folder)

    row_bytes = spec.d_model * 4
    sequences = iter_token_sequences(model.tokenizer, iter_documents(files), context_size, batch_size)
    done_sequences = skip_sequences + n_sequences
    with open(folder / _DATA_FILE, "r+b" if n_rows else "wb") as data, tqdm(
        total=n_tokens, initial=n_rows, unit="tok", desc=f"caching {hook_name}"
    ) as progress:
        data.truncate(n_rows * row_bytes)  # drop a batch that was cut off mid-write
        data.seek(n_rows * row_bytes)
        seen = 0
        for tokens in sequences:
            seen += tokens.shape[0]
            if seen <= done_sequences:
                continue
            acts = activations_at(model, hook_name, tokens)[:, 1:, :].reshape(-1, spec.d_model).float().cpu().numpy()
            data.write(acts.tobytes())
            data.flush()
            os.fsync(data.fileno())
            n_rows += acts.shape[0]
            n_sequences += tokens.shape[0]
            _write_meta(folder, spec, n_rows, n_sequences)
            progress.update(acts.shape[0])
            if n_rows >= n_tokens:
                break
    if n_rows < n_tokens:
        print(f"sas_lens: the text ran out after {n_rows:,} tokens (asked for {n_tokens:,}).")
    return ActivationCache(folder)


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
    tmp = folder / (_META_FILE + ".tmp")
    tmp.write_text(json.dumps({"spec": asdict(spec), "n_rows": n_rows, "n_sequences": n_sequences}, indent=1))
    tmp.replace(folder / _META_FILE)
