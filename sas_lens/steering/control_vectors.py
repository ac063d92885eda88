"""Steering as llama.cpp control vectors: export a steering to a GGUF file, and read one back.

llama.cpp (``--control-vector FILE``, ``--control-vector-scaled FILE S``) reads a GGUF file of F32
tensors ``direction.N`` of length ``d_model`` and adds ``direction.N`` to the output of block N — after
the block's last residual add, at every position, prompt included — which is TransformerLens's
``blocks.N.hook_resid_post`` with ``positions="all"``. N = 0 is refused by its loader, so block 0
cannot be steered that way. Several files, or several tensors for one N, are summed. Its loader
reads no metadata; the files carry ``controlvector.model_hint`` and ``controlvector.layer_count``
(the number of directions, as repeng writes it) for people.

A steering exports exactly when its edit is the same residual vector at every token:

- a dense vector: ``λ·v``;
- an SAS vector with ``gate="none"`` and Δ kept: ``λ·v·W_dec`` (decoder rows divided by their norms
  for SAEs that rescale by them), for an SAE that does not normalise each token at run time.

An SAS vector steered through the SAE's σ (``gate="sae"``, the paper's Algorithm 2) adds a different
vector at every token, since which latents clear their thresholds depends on the token; so does one
with Δ dropped, or through a normalising SAE. Those are refused unless ``exact=False`` asks for the
linearisation: the mean edit over the tokens of some prompts, with its error (the share of the edit's
energy the mean leaves out) measured and reported.

Example:
    >>> path = export_control_vector("sentiment.gguf", model, {vec.with_gate("none"): 4.0}, sae=sae)
    >>> steering = read_control_vector(path, model=model)
    >>> [v.hook_name for v in steering]
    ['blocks.1.hook_resid_post']
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from sas_lens.errors import IncompatibleSAEError, SASLensError
from sas_lens.loading.files import atomic_file
from sas_lens.loading.saes import hook_layer, resolved_hook_name
from sas_lens.steering.edits import (
    PER_TOKEN_NORMALISATIONS,
    DenseEdit,
    SAESet,
    SparseEdit,
    decoder_directions,
    merge_edits,
)
from sas_lens.steering.vectors import DenseVector
from sas_lens.typing import Float, Tensor

ARCHITECTURE = "controlvector"


class NotAConstantVectorError(SASLensError, ValueError):
    """A steering whose edit depends on the token, asked to be exported as one fixed vector."""


class LinearisationWarning(UserWarning):
    """A steering exported as its mean edit (``exact=False``): the warning states the error."""


@dataclass(frozen=True)
class ControlVector:
    """What a control-vector file holds: the vector added at the output of each block, and how exact it is.

    Attributes:
        directions: ``{N: vector}``, the vector added to ``blocks.N.hook_resid_post`` (N ≥ 1).
        model_hint: the model it was made for (metadata only; llama.cpp does not read it).
        errors: for each N, the share of the steering's edit (its energy, over the probe tokens) that the
            fixed vector leaves out: 0.0 where the export is exact.
    """

    directions: dict[int, Float[Tensor, " d_model"]]
    model_hint: str
    errors: dict[int, float]


def control_vector(
    model, steering: Mapping, *, sae=None, exact: bool = True, prompts: Sequence[str] | None = None
) -> ControlVector:
    """The fixed residual vector per block that ``steering`` adds, as llama.cpp would apply it.

    Args:
        model: the HookedTransformer the steering is for.
        steering: ``{vector: λ}`` (several vectors are summed per block, as ``sl.steer`` does).
        sae: the SAE(s) of SAS vectors.
        exact: refuse a steering whose edit depends on the token (``True``), or replace it by its mean
            edit over the tokens of ``prompts`` and report the error (``False``).
        prompts: the texts a linearisation averages over (default: 32 of the reference prompts).

    Raises:
        NotAConstantVectorError: with ``exact=True``, an SAS vector with ``gate="sae"``, with Δ dropped, or
            through an SAE that normalises each token; the message says how to export it anyway.
        IncompatibleSAEError: a vector at a hook other than ``blocks.N.hook_resid_post``, or at block 0.

    Example:
        >>> cv = control_vector(model, {dense: 2.0})
        >>> torch.allclose(cv.directions[1], 2.0 * dense.vector), cv.errors
        (True, {1: 0.0})
    """
    edits = []
    for key, lam in steering.items():
        if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not math.isfinite(lam):
            raise ValueError(f"The strength λ for {getattr(key, 'name', key)!r} must be a finite number, got {lam!r}.")
        edits.append(key.edit(model, float(lam), SAESet(sae)))
    if not edits:
        raise ValueError("Nothing to export: the steering is empty.")
    grouped = {_block_of(hook): group for hook, group in sorted(merge_edits(edits).items())}  # checked first
    varying = [edit for group in grouped.values() for edit in group if _constant_part(edit) is None]
    if varying and exact:
        raise NotAConstantVectorError(_why_not_constant(varying[0]))
    directions, errors = {}, {}
    for layer, group in grouped.items():
        direction, error = torch.zeros(model.cfg.d_model), 0.0
        for edit in group:
            part = _constant_part(edit)
            if part is not None:
                direction += part.cpu()
        token_dependent = [edit for edit in group if _constant_part(edit) is None]
        if token_dependent:
            mean, error = _linearise(model, token_dependent, prompts)
            direction += mean
            warnings.warn(
                f"Block {layer}: the steering's edit depends on the token; exported as its mean edit over "
                f"the probe prompts, which leaves out {error:.1%} of the edit's energy there.",
                LinearisationWarning,
                stacklevel=2,
            )
        directions[layer], errors[layer] = direction, error
    return ControlVector(directions, str(model.cfg.model_name), errors)


def write_control_vector(path: str | Path, cv: ControlVector) -> Path:
    """Write ``cv`` as a llama.cpp control-vector GGUF file (atomically).

    Args:
        path: the ``.gguf`` file to write.
        cv: from :func:`control_vector`.

    Example:
        >>> write_control_vector("dense.gguf", control_vector(model, {dense: 2.0})).name
        'dense.gguf'
    """
    import gguf

    if any(layer < 1 for layer in cv.directions):
        raise IncompatibleSAEError("llama.cpp cannot steer block 0: its loader refuses direction.0.")
    path = Path(path)
    with atomic_file(path) as staging:
        writer = gguf.GGUFWriter(str(staging), ARCHITECTURE)
        writer.add_string(f"{ARCHITECTURE}.model_hint", cv.model_hint)
        writer.add_uint32(f"{ARCHITECTURE}.layer_count", len(cv.directions))
        for layer, direction in sorted(cv.directions.items()):
            writer.add_tensor(f"direction.{layer}", direction.detach().float().cpu().numpy())
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return path


def export_control_vector(
    path: str | Path,
    model,
    steering: Mapping,
    *,
    sae=None,
    exact: bool = True,
    prompts: Sequence[str] | None = None,
) -> Path:
    """:func:`control_vector` written to ``path`` by :func:`write_control_vector`; see them for the arguments.

    Args:
        path: the ``.gguf`` file to write.
        model: the HookedTransformer the steering is for.
        steering: ``{vector: λ}``.
        sae: the SAE(s) of SAS vectors.
        exact: see :func:`control_vector`.
        prompts: see :func:`control_vector`.

    Example:
        >>> export_control_vector("dense.gguf", model, {dense: 2.0}).exists()
        True
    """
    return write_control_vector(path, control_vector(model, steering, sae=sae, exact=exact, prompts=prompts))


def read_control_vector(path: str | Path, *, model=None) -> dict[DenseVector, float]:
    """A llama.cpp / repeng control-vector file as a steering: ``{DenseVector: 1.0}``, one vector per block.

    Read as llama.cpp's loader reads it: tensors ``direction.N`` (N ≥ 1), F32, 1-D, one length; several
    tensors for one N are summed. λ = 1 is what ``--control-vector`` applies; scale it as
    ``--control-vector-scaled`` would.

    Args:
        path: the ``.gguf`` file.
        model: if given, refuse a file for another ``d_model`` or with a block the model lacks.

    Raises:
        IncompatibleSAEError: a file that does not fit ``model``.
        ValueError: not a control-vector file (a tensor of another name, type or shape, or none at all).

    Example:
        >>> steering = read_control_vector(export_control_vector("d.gguf", model, {dense: 2.0}), model=model)
        >>> torch.allclose(next(iter(steering)).vector, 2.0 * dense.vector)
        True
    """
    import gguf
    import numpy as np

    path = Path(path)
    reader = gguf.GGUFReader(str(path))
    hint_field = reader.get_field(f"{ARCHITECTURE}.model_hint")
    hint = bytes(hint_field.parts[-1]).decode("utf-8") if hint_field is not None else None
    directions: dict[int, np.ndarray] = {}
    for tensor in reader.tensors:
        prefix, _, index = tensor.name.partition(".")
        if prefix != "direction" or not index.isdigit():
            raise ValueError(f"{path}: tensor {tensor.name!r} is not a control vector's direction.N.")
        if int(index) == 0:
            raise ValueError(f"{path}: direction.0 - llama.cpp refuses a direction for block 0.")
        if tensor.tensor_type != gguf.GGMLQuantizationType.F32 or len(tensor.shape) != 1:
            raise ValueError(f"{path}: {tensor.name} must be a 1-D F32 tensor, as llama.cpp requires.")
        data = np.array(tensor.data, dtype=np.float32)
        directions[int(index)] = directions.get(int(index), 0) + data
    if not directions:
        raise ValueError(f"{path} holds no direction tensors; it is not a control-vector file.")
    if len({len(d) for d in directions.values()}) > 1:
        raise ValueError(f"{path}: its direction tensors differ in length.")
    d_model = len(next(iter(directions.values())))
    if model is not None:
        if d_model != model.cfg.d_model:
            raise IncompatibleSAEError(
                f"{path} was made for d_model={d_model}; this model ({model.cfg.model_name}) has "
                f"d_model={model.cfg.d_model}."
            )
        beyond = [n for n in directions if n >= model.cfg.n_layers]
        if beyond:
            raise IncompatibleSAEError(
                f"{path} steers block(s) {beyond}; this model ({model.cfg.model_name}) has blocks "
                f"0..{model.cfg.n_layers - 1}."
            )
    steering = {}
    for layer, data in sorted(directions.items()):
        provenance = {
            "name": f"{path.stem}.{layer}",
            "hook_name": f"blocks.{layer}.hook_resid_post",
            "layer": layer,
            "source": str(path),
        }
        if model is not None:
            provenance["model_name"] = model.cfg.model_name
        elif hint:
            provenance["model_hint"] = hint
        steering[DenseVector(torch.from_numpy(data.copy()), provenance)] = 1.0
    return steering


def _block_of(hook: str) -> int:
    layer = hook_layer(hook)
    if layer is None or hook != f"blocks.{layer}.hook_resid_post":
        raise IncompatibleSAEError(
            f"llama.cpp adds control vectors to each block's output (blocks.N.hook_resid_post); a vector at "
            f"{hook} cannot be exported."
        )
    if layer == 0:
        raise IncompatibleSAEError(
            "llama.cpp cannot steer block 0 (its loader refuses direction.0); build the vector at a later layer."
        )
    return layer


def _constant_part(edit) -> Tensor | None:
    """The edit's fixed residual vector, or ``None`` if it depends on the token."""
    if isinstance(edit, DenseEdit):
        return edit.added.float()
    if (
        isinstance(edit, SparseEdit)
        and edit.gate == "none"
        and edit.keep_delta
        and edit.sae.cfg.normalize_activations not in PER_TOKEN_NORMALISATIONS
    ):
        support = torch.nonzero(edit.shift).squeeze(-1)
        rows = decoder_directions(edit.sae, support.cpu(), device=edit.shift.device)
        return edit.shift[support].float() @ rows
    return None


def _why_not_constant(edit) -> str:
    if not isinstance(edit, SparseEdit):
        return f"{type(edit).__name__} edits have no fixed residual vector; llama.cpp cannot apply them."
    if edit.gate == "sae":
        reason = (
            "it steers through the SAE's σ (gate='sae', Algorithm 2): which latents clear their thresholds, "
            "and so the vector added, depends on each token"
        )
    elif not edit.keep_delta:
        reason = "it drops the SAE's reconstruction error Δ, which differs at every token"
    else:
        reason = f"its SAE normalises each token ({edit.sae.cfg.normalize_activations}), so the edit scales per token"
    return (
        f"This SAS vector is not one fixed vector: {reason}. Export its decoded form exactly with "
        "vector.with_gate('none') (δ = λ·v·W_dec; steer with that too, to see what you export), or pass "
        "exact=False to export the mean edit over probe prompts, with its error reported."
    )


def _linearise(model, edits: list, prompts: Sequence[str] | None) -> tuple[Tensor, float]:
    """The mean of the edits' ``δ(a)`` over the probe tokens (BOS left out) and the share of energy it misses."""
    from sas_lens.loading.prompts import reference_prompts

    prompts = list(prompts) if prompts is not None else reference_prompts()[:32]
    if not prompts:
        raise ValueError("A linearisation needs at least one probe prompt.")
    hook = resolved_hook_name(model, edits[0].hook_name)  # a bridge caches under the canonical name
    residuals = []
    with torch.no_grad():
        for prompt in prompts:  # one at a time: no padding to leave out
            _, cache = model.run_with_cache(model.to_tokens(prompt), names_filter=hook)
            residuals.append(cache[hook][0, 1:].float())  # BOS left out: an outlier the SAE was not trained on
    a = torch.cat(residuals)
    delta = sum(edit.delta(a) for edit in edits)
    mean = delta.mean(0)
    missed = float(((delta - mean) ** 2).sum() / (delta**2).sum().clamp_min(1e-30))
    return mean.cpu(), missed
