"""Top-activating contexts and firing frequencies of every SAE latent over a corpus sample.

Built once per (model, SAE, corpus sample) and cached on disk
(``$SAS_LENS_CACHE/indexes/<key>``), since it runs the model over a few hundred
thousand tokens. For each latent it keeps the ``n_top`` largest activations and
where they occurred, so a context is the tokens around that position; the BOS
position of each sequence is left out, as in SAE training.

Example:
    >>> index = latent_index(model, sae, "corpus/", n_tokens=300_000)   # doctest: +SKIP
    >>> index.top_contexts(1234, n=3)                                   # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from sas_lens.loading.activations import sae_codes
from sas_lens.loading.saes import check_sae_fits, sae_fingerprint, sae_hook_name
from sas_lens.loading.text_data import (
    iter_documents,
    iter_token_sequences,
    resolve_text_files,
)
from sas_lens.typing import Float, Int, Tensor

_FORMAT = "sas_lens.analysis.latent_index/1"


@dataclass(frozen=True, eq=False)
class LatentIndex:
    """Per latent: its ``n_top`` largest activations, where they occurred, and how often it fired.

    Attributes:
        values: ``[d_sae, n_top]`` activations, descending per latent (0 where fewer fired).
        positions: ``[d_sae, n_top]`` flat positions ``sequence * context_size + pos`` (−1: none).
        tokens: ``[n_sequences, context_size]`` the token ids that were run.
        fire_counts: ``[d_sae]`` how many tokens each latent was active on.
        n_tokens: tokens counted (BOS excluded).
        metadata: model, hook, SAE fingerprint, sources, settings.
    """

    values: Float[Tensor, "d_sae n_top"]
    positions: Int[Tensor, "d_sae n_top"]
    tokens: Int[Tensor, "n_seq ctx"]
    fire_counts: Int[Tensor, " d_sae"]
    n_tokens: int
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def frequencies(self) -> Float[Tensor, " d_sae"]:
        """The fraction of tokens each latent fired on."""
        return self.fire_counts.double().div(max(self.n_tokens, 1)).float()

    def top_contexts(self, latent: int, tokenizer, n: int = 5, before: int = 12, after: int = 4) -> list[dict]:
        """The ``n`` strongest contexts of ``latent``: text before, the peak token, text after, activation."""
        if not 0 <= latent < self.values.shape[0]:
            raise IndexError(f"latent {latent} is out of range for an index of {self.values.shape[0]} latents.")
        context_size = self.tokens.shape[1]
        out = []
        for value, flat in zip(self.values[latent, :n].tolist(), self.positions[latent, :n].tolist()):
            if flat < 0:
                break
            row, pos = divmod(flat, context_size)
            sequence = self.tokens[row].tolist()
            out.append({
                "before": tokenizer.decode(sequence[max(1, pos - before) : pos]),
                "token": tokenizer.decode(sequence[pos : pos + 1]),
                "after": tokenizer.decode(sequence[pos + 1 : pos + 1 + after]),
                "activation": value,
            })
        return out

    def save(self, folder: str | Path) -> Path:
        """Write the index to ``folder`` (a safetensors file and a JSON header), atomically."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = folder.with_name(folder.name + ".partial")
        staging.mkdir(exist_ok=True)
        save_file({"values": self.values.contiguous(), "positions": self.positions.contiguous(),
                   "tokens": self.tokens.contiguous(), "fire_counts": self.fire_counts.contiguous()},
                  staging / "index.safetensors")
        (staging / "index.json").write_text(json.dumps(
            {"format": _FORMAT, "n_tokens": self.n_tokens, "metadata": self.metadata}, indent=2))
        if folder.exists():
            import shutil

            shutil.rmtree(folder)
        staging.rename(folder)
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> "LatentIndex":
        from safetensors.torch import load_file

        folder = Path(folder)
        header = json.loads((folder / "index.json").read_text())
        if header.get("format") != _FORMAT:
            raise ValueError(f"{folder} is not a sas_lens latent index (format {header.get('format')!r}).")
        tensors = load_file(folder / "index.safetensors")
        return cls(tensors["values"], tensors["positions"], tensors["tokens"], tensors["fire_counts"],
                   header["n_tokens"], header["metadata"])


@torch.no_grad()
def build_latent_index(
    model,
    sae,
    texts,
    *,
    n_tokens: int = 300_000,
    context_size: int = 64,
    n_top: int = 20,
    batch_size: int = 16,
    progress: bool = True,
) -> LatentIndex:
    """Run ``n_tokens`` tokens of ``texts`` through ``model`` and ``sae`` and index every latent.

    Args:
        texts: text files, folders or ``hf:`` ids (see :mod:`sas_lens.loading.text_data`).
        n_tokens: tokens to index (BOS excluded); the corpus may run out first.
        context_size: tokens per sequence, BOS included.
        n_top: contexts kept per latent.

    Example:
        >>> index = build_latent_index(model, sae, "corpus/", n_tokens=50_000)   # uncached; sl.latent_index caches  # doctest: +SKIP
    """
    check_sae_fits(sae, model)
    files = resolve_text_files(texts)
    d_sae = sae.cfg.d_sae
    top_values = torch.zeros(n_top, d_sae)
    top_positions = torch.full((n_top, d_sae), -1, dtype=torch.long)
    fire_counts = torch.zeros(d_sae, dtype=torch.long)
    kept: list[torch.Tensor] = []
    counted = 0
    bar = tqdm(total=n_tokens, unit="tok", desc=f"indexing {d_sae} latents", disable=not progress)
    for tokens in iter_token_sequences(model.tokenizer, iter_documents(files), context_size, batch_size):
        if counted >= n_tokens:
            break
        first_row = sum(len(t) for t in kept)
        codes = sae_codes(model, sae, tokens)
        codes[:, 0] = 0.0  # BOS
        flat = codes.reshape(-1, d_sae)
        fire_counts += (flat > 0).sum(0)
        # Merge this batch's best rows per latent into the running top n_top.
        batch_top = flat.topk(min(n_top, flat.shape[0]), dim=0)
        positions = batch_top.indices + first_row * context_size
        merged_values = torch.cat([top_values, batch_top.values])
        merged_positions = torch.cat([top_positions, positions])
        best = merged_values.topk(n_top, dim=0)
        top_values = best.values
        top_positions = merged_positions.gather(0, best.indices)
        kept.append(tokens)
        counted += tokens.shape[0] * (context_size - 1)
        bar.update(tokens.shape[0] * (context_size - 1))
    bar.close()
    if not kept:
        from sas_lens.errors import DataError

        raise DataError(f"{texts} holds fewer than {context_size} tokens of text; nothing to index.")
    top_positions[top_values <= 0] = -1
    metadata = _index_key_fields(model, sae, files, n_tokens, context_size, n_top)
    return LatentIndex(top_values.T.contiguous(), top_positions.T.contiguous(), torch.cat(kept), fire_counts,
                       counted, metadata)


def latent_index(model, sae, texts, *, rebuild: bool = False, **settings: Any) -> LatentIndex:
    """The index of ``sae`` over ``texts``: loaded from the on-disk cache, or built and cached.

    The cache key covers the model, the SAE's weights, the text files (path, size,
    modification time) and the settings of :func:`build_latent_index`.

    Args:
        model: the HookedTransformer ``sae`` reads.
        sae: the SAE whose latents are indexed.
        texts: text files or folders.
        rebuild: build even if a cached index exists.
        **settings: for :func:`build_latent_index` (``n_tokens``, ``context_size``, ``n_top``, ...).

    Example:
        >>> index = sl.latent_index(model, sae, "corpus/", n_tokens=100_000)   # doctest: +SKIP
        >>> sl.top_latents(vec, sae, model, index=index)                      # doctest: +SKIP
    """
    from sas_lens.loading.models import cache_dir

    defaults = {"n_tokens": 300_000, "context_size": 64, "n_top": 20}
    fields = _index_key_fields(model, sae, resolve_text_files(texts),
                               **{k: settings.get(k, v) for k, v in defaults.items()})
    key = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]
    folder = cache_dir() / "indexes" / key
    if not rebuild and (folder / "index.json").exists():
        index = LatentIndex.load(folder)
    else:
        index = build_latent_index(model, sae, texts, **settings)
        index.save(folder)
    index.metadata["cached_at"] = str(folder)
    return index


def _index_key_fields(model, sae, files, n_tokens: int, context_size: int, n_top: int) -> dict[str, Any]:
    sources = []
    for f in files:
        path = Path(f)
        stat = path.stat() if path.exists() else None
        sources.append({"path": str(f), "size": stat.st_size if stat else None,
                        "mtime": int(stat.st_mtime) if stat else None})
    return {
        "model_name": model.cfg.model_name,
        "hook_name": sae_hook_name(sae),
        "sae_fingerprint": sae_fingerprint(sae),
        "d_sae": sae.cfg.d_sae,
        "sources": sources,
        "n_tokens": n_tokens,
        "context_size": context_size,
        "n_top": n_top,
    }
