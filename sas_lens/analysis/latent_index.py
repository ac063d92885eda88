"""Top-activating contexts and firing frequencies of every SAE latent over a corpus sample.

Built once per (model, SAE, corpus sample) and cached on disk
(``$SAS_LENS_CACHE/indexes/<key>``), since it runs the model over a few hundred
thousand tokens. For each latent it keeps the ``n_top`` largest activations and
where they occurred, so a context is the tokens around that position; the BOS
position of each sequence is left out, as in SAE training.

Example:
    >>> index = latent_index(model, sae, "corpus/", n_tokens=200, progress=False)
    >>> len(index.top_contexts(3, model.tokenizer, n=3)) <= 3
    True
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
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

    def common_tokens(self, min_count: int = 3) -> Int[Tensor, " n_common"]:
        """Ids of the tokens that occur at least ``min_count`` times in the indexed text (BOS excluded).

        The vocabulary a corpus-restricted logit lens ranks among: Gemma's 262k tokens
        are mostly rare multilingual pieces that the text a researcher reads never holds.
        """
        if min_count < 1:
            raise ValueError(f"min_count must be at least 1, got {min_count}.")
        counts = torch.bincount(self.tokens[:, 1:].reshape(-1))
        return (counts >= min_count).nonzero().flatten()

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
            out.append(
                {
                    "before": tokenizer.decode(sequence[max(1, pos - before) : pos]),
                    "token": tokenizer.decode(sequence[pos : pos + 1]),
                    "after": tokenizer.decode(sequence[pos + 1 : pos + 1 + after]),
                    "activation": value,
                }
            )
        return out

    def save(self, folder: str | Path) -> Path:
        """Write the index to ``folder`` (a safetensors file and a JSON header), atomically."""
        from safetensors.torch import save_file

        from sas_lens.loading.files import atomic_folder

        folder = Path(folder)
        with atomic_folder(folder) as staging:
            self._write(staging, save_file)
        return folder

    def _write(self, staging: Path, save_file) -> None:
        save_file(
            {
                "values": self.values.contiguous(),
                "positions": self.positions.contiguous(),
                "tokens": self.tokens.contiguous(),
                "fire_counts": self.fire_counts.contiguous(),
            },
            staging / "index.safetensors",
        )
        (staging / "index.json").write_text(
            json.dumps({"format": _FORMAT, "n_tokens": self.n_tokens, "metadata": self.metadata}, indent=2)
        )

    @classmethod
    def load(cls, folder: str | Path) -> "LatentIndex":
        from safetensors.torch import load_file

        folder = Path(folder)
        header = json.loads((folder / "index.json").read_text())
        if header.get("format") != _FORMAT:
            raise ValueError(f"{folder} is not a sas_lens latent index (format {header.get('format')!r}).")
        tensors = load_file(folder / "index.safetensors")
        return cls(
            tensors["values"],
            tensors["positions"],
            tensors["tokens"],
            tensors["fire_counts"],
            header["n_tokens"],
            header["metadata"],
        )


@dataclass
class _PartialIndex:
    """The index of a run of consecutive batches: what shards return and what :func:`_merge` combines."""

    values: Float[Tensor, "n_top d_sae"]
    positions: Int[Tensor, "n_top d_sae"]
    fire_counts: Int[Tensor, " d_sae"]
    n_tokens: int


def _top(values: Tensor, positions: Tensor, n_top: int) -> tuple[Tensor, Tensor]:
    """Per latent (column), the ``n_top`` largest values, equal values ordered by position.

    Ordering ties by position makes the result a function of the candidates alone, whatever order batches and
    shards are merged in: the top ``n_top`` of a union is the top of the union of each part's top.
    """
    by_position = positions.argsort(dim=0, stable=True)
    values, positions = values.gather(0, by_position), positions.gather(0, by_position)
    best = values.sort(dim=0, descending=True, stable=True).indices[:n_top]
    return values.gather(0, best), positions.gather(0, best)


def _merge(parts: list[_PartialIndex], n_top: int) -> _PartialIndex:
    values, positions = _top(torch.cat([p.values for p in parts]), torch.cat([p.positions for p in parts]), n_top)
    return _PartialIndex(values, positions, sum(p.fire_counts for p in parts), sum(p.n_tokens for p in parts))


@torch.no_grad()
def _index_batches(model, sae, batches: Iterable[Tensor], first_row: int, n_top: int) -> _PartialIndex:
    """Index consecutive token batches whose first sequence is row ``first_row`` of the whole index."""
    d_sae = sae.cfg.d_sae
    part = _PartialIndex(
        torch.zeros(n_top, d_sae),
        torch.full((n_top, d_sae), -1, dtype=torch.long),
        torch.zeros(d_sae, dtype=torch.long),
        0,
    )
    for tokens in batches:
        context_size = tokens.shape[1]
        codes = sae_codes(model, sae, tokens)
        codes[:, 0] = 0.0  # BOS
        flat = codes.reshape(-1, d_sae)
        batch_top = flat.topk(min(n_top, flat.shape[0]), dim=0)  # the merge runs on the CPU, where the index lives
        batch = _PartialIndex(
            batch_top.values.float().cpu(),
            batch_top.indices.cpu() + first_row * context_size,
            (flat > 0).sum(0).cpu(),
            tokens.shape[0] * (context_size - 1),
        )
        part = _merge([part, batch], n_top)
        first_row += tokens.shape[0]
    return part


def _token_batches(model, texts, n_tokens: int, context_size: int, batch_size: int) -> list[Tensor]:
    """The batches an index of ``n_tokens`` tokens runs: whole batches until the count is reached."""
    batches, counted = [], 0
    for tokens in iter_token_sequences(
        model.tokenizer, iter_documents(resolve_text_files(texts)), context_size, batch_size
    ):
        if counted >= n_tokens:
            break
        batches.append(tokens)
        counted += tokens.shape[0] * (context_size - 1)
    if not batches:
        from sas_lens.errors import DataError

        raise DataError(f"{texts} holds fewer than {context_size} tokens of text; nothing to index.")
    return batches


def _model_fingerprint(model) -> tuple[str, float]:
    return model.cfg.model_name, float(model.W_E[:64].double().sum())


class IndexWorker:
    """A Ray actor's body: one model and the SAE, indexing the shards it is handed.

    Args:
        model_factory: makes the model; ``None`` loads the embedded default.
        sae: the SAE being indexed.
    """

    def __init__(self, model_factory, sae):
        from sas_lens.loading.models import load_model

        self.model = model_factory() if model_factory else load_model()
        self.sae = sae.to(self.model.cfg.device)

    def index(self, batches: list[Tensor], first_row: int, n_top: int) -> tuple[tuple[str, float], _PartialIndex]:
        return _model_fingerprint(self.model), _index_batches(self.model, self.sae, batches, first_row, n_top)


def _index_on_ray(executor, model, sae, batches: list[Tensor], n_top: int, progress: bool) -> _PartialIndex:
    """One contiguous shard of batches per actor; each shard's top contexts, merged here."""
    from sas_lens.errors import SASLensError

    ray = executor.connect()
    n_shards, _ = executor.pool_size(len(batches))
    bounds = [round(i * len(batches) / n_shards) for i in range(n_shards + 1)]
    first_rows = [sum(len(b) for b in batches[:start]) for start in bounds[:-1]]
    tasks = [(ray.put(batches[a:b]), row, n_top) for a, b, row in zip(bounds, bounds[1:], first_rows)]
    results: dict[int, tuple] = {}
    executor.map(
        IndexWorker,
        (executor.model_factory, ray.put(sae)),
        "index",
        tasks,
        results.__setitem__,
        names=[f"shard {i} (batches {a}-{b - 1})" for i, (a, b) in enumerate(zip(bounds, bounds[1:]))],
        desc="latent index shards",
        progress=progress,
    )
    if executor.report["failed"]:
        lines = "; ".join(f"{name}: {why}" for name, why in executor.report["failed"])
        raise SASLensError(f"The latent index could not be built on Ray: {lines}")
    theirs = {fingerprint for fingerprint, _ in results.values()}
    if theirs != {_model_fingerprint(model)}:
        raise ValueError(
            f"The Ray actors loaded another model ({sorted(theirs)[0][0]}) than the one given "
            f"({model.cfg.model_name}); give RayExecutor(model_factory=...) a function that makes it."
        )
    return _merge([results[i][1] for i in range(len(tasks))], n_top)


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
    executor=None,
) -> LatentIndex:
    """Run ``n_tokens`` tokens of ``texts`` through ``model`` and ``sae`` and index every latent.

    Args:
        texts: text files, folders or ``hf:`` ids (see :mod:`sas_lens.loading.text_data`).
        n_tokens: tokens to index (BOS excluded); the corpus may run out first.
        context_size: tokens per sequence, BOS included.
        n_top: contexts kept per latent.
        executor: ``None`` (here), or a :class:`~sas_lens.distributed.RayExecutor`: the batches are split into one
            contiguous shard per actor and the shards' top contexts merged; the index is the same.

    Example:
        >>> index = build_latent_index(model, sae, "corpus/", n_tokens=200, progress=False)   # sl.latent_index caches
    """
    check_sae_fits(sae, model)
    files = resolve_text_files(texts)
    batches = _token_batches(model, files, n_tokens, context_size, batch_size)
    if executor is None:
        bar = tqdm(batches, unit="batch", desc=f"indexing {sae.cfg.d_sae} latents", disable=not progress)
        part = _index_batches(model, sae, bar, 0, n_top)
    else:
        part = _index_on_ray(executor, model, sae, batches, n_top, progress)
    top_values, top_positions = part.values, part.positions.clone()
    top_positions[top_values <= 0] = -1
    metadata = _index_key_fields(model, sae, files, n_tokens, context_size, n_top, batch_size)
    return LatentIndex(
        top_values.T.contiguous(),
        top_positions.T.contiguous(),
        torch.cat(batches),
        part.fire_counts,
        part.n_tokens,
        metadata,
    )


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
        >>> index = sl.latent_index(model, sae, "corpus/", n_tokens=200, progress=False)
        >>> table = sl.top_latents(vec, sae, model, index=index)
    """
    from sas_lens.loading.models import cache_dir

    defaults = {"n_tokens": 300_000, "context_size": 64, "n_top": 20, "batch_size": 16}  # build_latent_index's
    fields = _index_key_fields(
        model, sae, resolve_text_files(texts), **{k: settings.get(k, v) for k, v in defaults.items()}
    )
    key = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]
    folder = cache_dir() / "indexes" / key
    if not rebuild and (folder / "index.json").exists():
        index = LatentIndex.load(folder)
    else:
        index = build_latent_index(model, sae, texts, **settings)
        index.save(folder)
    index.metadata["cached_at"] = str(folder)
    return index


def _index_key_fields(
    model, sae, files, n_tokens: int, context_size: int, n_top: int, batch_size: int
) -> dict[str, Any]:
    """What the index depends on; the batch size too, since whole batches are indexed until ``n_tokens``."""
    from sas_lens.loading.models import model_fingerprint

    sources = []
    for f in files:
        path = Path(f)
        stat = path.stat() if path.exists() else None
        sources.append(
            {"path": str(f), "size": stat.st_size if stat else None, "mtime": int(stat.st_mtime) if stat else None}
        )
    return {
        "model_name": model.cfg.model_name,
        "model_fingerprint": model_fingerprint(model),
        "hook_name": sae_hook_name(sae),
        "sae_fingerprint": sae_fingerprint(sae),
        "d_sae": sae.cfg.d_sae,
        "sources": sources,
        "n_tokens": n_tokens,
        "context_size": context_size,
        "n_top": n_top,
        "batch_size": batch_size,
    }
