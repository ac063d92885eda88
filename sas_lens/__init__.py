"""sas_lens: sparse activation steering for TransformerLens and SAELens.

Behaviour vectors are built in a sparse autoencoder's feature space and added to
the SAE code of the residual stream, with the SAE's reconstruction error kept so
that strength 0 is exactly the unsteered model.

Example:
    >>> import sas_lens as sl
    >>> model = sl.load_model()               # doctest: +SKIP
    >>> sae = sl.load_sae(model=model)        # doctest: +SKIP

Importing the package is cheap: each name is imported from its module on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_EXPORTS = {
    "load_model": "sas_lens.models",
    "DEFAULT_MODEL": "sas_lens.models",
    "cache_dir": "sas_lens.models",
    "load_sae": "sas_lens.saes",
    "check_sae_fits": "sas_lens.saes",
    "shipped_saes": "sas_lens.saes",
    "load_pairs": "sas_lens.pairs",
    "demo_sets": "sas_lens.pairs",
    "ABItem": "sas_lens.pairs",
    "CompletionPair": "sas_lens.pairs",
    "PairSet": "sas_lens.pairs",
    "sas_vector": "sas_lens.build_vectors",
    "dense_vector": "sas_lens.build_vectors",
    "dense_vectors": "sas_lens.build_vectors",
    "sas_vectors": "sas_lens.build_vectors",
    "SASVector": "sas_lens.vectors",
    "DenseVector": "sas_lens.vectors",
    "load_vector": "sas_lens.vectors",
    "PromptStyle": "sas_lens.prompts",
    "steer": "sas_lens.steering",
    "ab_probabilities": "sas_lens.scoring",
    "generate": "sas_lens.steering",
    "top_latents": "sas_lens.attribution",
    "trace_latents": "sas_lens.attribution",
    "latent_index": "sas_lens.latent_index",
    "monosemanticity": "sas_lens.monosemanticity",
    "width_comparison": "sas_lens.monosemanticity",
    "overlap_matrix": "sas_lens.overlap",
    "shared_latents": "sas_lens.overlap",
    "write_report": "sas_lens.report",
    "topic_scores": "sas_lens.topic_alignment",
    "TopicAlignment": "sas_lens.topic_alignment",
    "demo_topic_texts": "sas_lens.topic_alignment",
    "run_evaluation": "sas_lens.evaluation",
    "load_config": "sas_lens.evaluation",
    "SASLensError": "sas_lens.errors",
    "HookNotFoundError": "sas_lens.errors",
    "IncompatibleSAEError": "sas_lens.errors",
    "LayerOutOfRangeError": "sas_lens.errors",
    "NoDefaultSAEError": "sas_lens.errors",
    "DataError": "sas_lens.errors",
}

__all__ = sorted(_EXPORTS) + ["__version__"]

if TYPE_CHECKING:
    from sas_lens.errors import (
        DataError,
        HookNotFoundError,
        IncompatibleSAEError,
        LayerOutOfRangeError,
        NoDefaultSAEError,
        SASLensError,
    )
    from sas_lens.models import DEFAULT_MODEL, cache_dir, load_model
    from sas_lens.build_vectors import dense_vector, dense_vectors, sas_vector, sas_vectors
    from sas_lens.pairs import ABItem, CompletionPair, PairSet, demo_sets, load_pairs
    from sas_lens.prompts import PromptStyle
    from sas_lens.scoring import ab_probabilities
    from sas_lens.steering import generate, steer
    from sas_lens.vectors import DenseVector, SASVector, load_vector
    from sas_lens.saes import check_sae_fits, load_sae, shipped_saes
    from sas_lens.attribution import top_latents, trace_latents
    from sas_lens.evaluation import load_config, run_evaluation
    from sas_lens.latent_index import latent_index
    from sas_lens.monosemanticity import monosemanticity, width_comparison
    from sas_lens.overlap import overlap_matrix, shared_latents
    from sas_lens.report import write_report
    from sas_lens.topic_alignment import TopicAlignment, demo_topic_texts, topic_scores


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sas_lens' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
