"""The tensor shapes of sas_lens's public API, in one jaxtyping vocabulary.

Dimension names: ``batch`` (sequences), ``pos`` (token positions), ``rows``
(flattened tokens), ``d_model`` (residual width), ``d_sae`` (SAE latents),
``nnz`` (selected entries). Under pytest, jaxtyping + beartype check every
annotated function at run time (see ``pyproject.toml``).
"""

from jaxtyping import Bool, Float, Int
from torch import Tensor

Tokens = Int[Tensor, "batch pos"]
Activations = Float[Tensor, "rows d_model"]
Latents = Float[Tensor, "rows d_sae"]
Indices = Int[Tensor, " nnz"]

__all__ = ["Tokens", "Activations", "Latents", "Indices", "Bool", "Float", "Int", "Tensor"]
