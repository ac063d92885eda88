"""sas_lens: sparse activation steering for TransformerLens and SAELens.

Behaviour vectors are built in a sparse autoencoder's feature space and added to
the SAE code of the residual stream, with the SAE's reconstruction error kept so
that strength 0 is exactly the unsteered model.

The names below are what a notebook calls; everything else lives in the
subpackages, one layer each: ``loading`` ← ``steering`` ← ``analysis``, ``topic``,
``evaluation``, ``sae_training``. Errors are in :mod:`sas_lens.errors`.

Example:
    >>> import sas_lens as sl
    >>> model = sl.load_model()               # doctest: +SKIP
    >>> sae = sl.load_sae(model=model)        # doctest: +SKIP

Importing the package is cheap: each name is imported from its module on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from sas_lens._version import __version__

_EXPORTS = {
    "load_model": "sas_lens.loading.models",
    "load_sae": "sas_lens.loading.saes",
    "shipped_saes": "sas_lens.loading.saes",
    "load_pairs": "sas_lens.loading.pairs",
    "demo_sets": "sas_lens.loading.pairs",
    "PairSet": "sas_lens.loading.pairs",
    "sas_vector": "sas_lens.steering.build_vectors",
    "dense_vector": "sas_lens.steering.build_vectors",
    "PreferenceFit": "sas_lens.steering.fitting",
    "SASVector": "sas_lens.steering.vectors",
    "DenseVector": "sas_lens.steering.vectors",
    "load_vector": "sas_lens.steering.vectors",
    "steer": "sas_lens.steering.engine",
    "steering_hooks": "sas_lens.steering.engine",
    "generate": "sas_lens.steering.generation",
    "ab_probabilities": "sas_lens.steering.scoring",
    "strength_for_kl": "sas_lens.steering.strength",
    "Condition": "sas_lens.steering.conditions",
    "top_latents": "sas_lens.analysis.attribution",
    "trace_latents": "sas_lens.analysis.attribution",
    "latent_index": "sas_lens.analysis.latent_index",
    "output_scores": "sas_lens.steering.output_scores",
    "monosemanticity": "sas_lens.analysis.monosemanticity",
    "width_comparison": "sas_lens.analysis.monosemanticity",
    "overlap_matrix": "sas_lens.analysis.overlap",
    "composition_grid": "sas_lens.analysis.composition",
    "trace": "sas_lens.analysis.trace",
    "write_report": "sas_lens.analysis.report",
    "topic_scores": "sas_lens.topic.alignment",
    "demo_topic_texts": "sas_lens.topic.alignment",
    "run_evaluation": "sas_lens.evaluation.runner",
    "load_config": "sas_lens.evaluation.config",
    "SASLensError": "sas_lens.errors",
}

# Submodules reachable as attributes without an import (``sl.errors.DataError``).
_SUBMODULES = ("errors", "loading", "steering", "analysis", "topic", "evaluation", "sae_training", "testing")

__all__ = sorted(_EXPORTS) + ["__version__"]

if TYPE_CHECKING:
    from sas_lens.analysis.attribution import top_latents, trace_latents
    from sas_lens.analysis.composition import composition_grid
    from sas_lens.analysis.latent_index import latent_index
    from sas_lens.analysis.monosemanticity import monosemanticity, width_comparison
    from sas_lens.analysis.overlap import overlap_matrix
    from sas_lens.analysis.report import write_report
    from sas_lens.analysis.trace import trace
    from sas_lens.errors import SASLensError
    from sas_lens.evaluation.config import load_config
    from sas_lens.evaluation.runner import run_evaluation
    from sas_lens.loading.models import load_model
    from sas_lens.loading.pairs import PairSet, demo_sets, load_pairs
    from sas_lens.loading.saes import load_sae, shipped_saes
    from sas_lens.steering.build_vectors import dense_vector, sas_vector
    from sas_lens.steering.conditions import Condition
    from sas_lens.steering.engine import steer, steering_hooks
    from sas_lens.steering.fitting import PreferenceFit
    from sas_lens.steering.generation import generate
    from sas_lens.steering.output_scores import output_scores
    from sas_lens.steering.scoring import ab_probabilities
    from sas_lens.steering.strength import strength_for_kl
    from sas_lens.steering.vectors import DenseVector, SASVector, load_vector
    from sas_lens.topic.alignment import demo_topic_texts, topic_scores


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"sas_lens.{name}")
    raise AttributeError(f"module 'sas_lens' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__ + list(_SUBMODULES)
