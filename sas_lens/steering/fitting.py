"""Fitting a steering vector to the pairs: the preference objective of BiPO (arXiv 2406.00045), both signs.

A mean difference says where the two sides' residuals differ, not which edit makes the model *write*
the positive side. Fitting asks the second question directly (BiPO; RePS, arXiv 2505.20809, triples
DiffMean's AxBench score with a variant of it; YaPO, arXiv 2601.08441, fits an SAE-space vector this
way). With the edit ``δ`` at every position of ``blocks.L.hook_resid_post`` and the preference margin
``m`` of :mod:`sas_lens.steering.preference`, the loss over the pairs is

    L(δ) = −mean[ log σ(β·m(+δ)) + log σ(−β·m(−δ)) ]:

adding ``δ`` should favour ``y⁺``, subtracting it ``y⁻``. The edit's norm is held at ``norm`` (by default
the mean-difference vector's, the scale CAA steers at with λ = 1), so the fit chooses a direction, not
a size; strengths are matched afterwards as for any vector. A sparse vector keeps its support (the
latents its selection rule chose) and fits their values: ``δ = norm · scale(a) · (c·W_dec[S]) / ‖c·W_dec[S]‖``,
decoded as ``gate="none"`` steering decodes it. A dense vector fits ``δ = norm · v / ‖v‖``. A share of the
pairs is held out; batches are formed once (the blocks below ``L`` run once) and visited in a
new order each epoch; the values with the lowest held-out loss are kept (early stopping).

Example:
    >>> values, report = fit_values(model, pairs, 1, torch.eye(16)[:3], torch.ones(3),
    ...                             PreferenceFit(epochs=1, batch_size=2), progress=False)
    >>> values.shape, report["epochs_run"]
    (torch.Size([3]), 1)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from sas_lens.loading.models import check_starts_at_block
from sas_lens.loading.pairs import PairSet
from sas_lens.loading.prompts import PromptStyle
from sas_lens.steering.preference import PairBatch, _frozen, margins, prepare_pairs
from sas_lens.typing import Float, Tensor

FITS = ("preference",)


@dataclass(frozen=True)
class PreferenceFit:
    """Settings of the preference fit (recorded in the vector's provenance).

    Args:
        beta: sharpness of the logistic loss on the margin (nats).
        norm: the edit's residual norm during the fit; ``None``: the mean-difference vector's.
        epochs: at most this many passes over the training pairs.
        patience: stop after this many epochs without a better held-out loss.
        lr: Adam's step size, relative to the values' own scale (their root mean square at the start).
        held_out: share of the pairs held out for early stopping (at least one pair).
        batch_size: pairs per step (each step runs ``4 × batch_size`` texts: both sides, both signs).
        seed: the held-out split and the order of the pairs.
    """

    beta: float = 1.0
    norm: float | None = None
    epochs: int = 8
    patience: int = 2
    lr: float = 0.05
    held_out: float = 0.2
    batch_size: int = 8
    seed: int = 0

    def __post_init__(self):
        if not (self.beta > 0 and self.lr > 0 and 0 < self.held_out < 1 and self.epochs >= 1 and self.batch_size >= 1):
            raise ValueError(f"PreferenceFit needs beta, lr > 0, 0 < held_out < 1, epochs, batch_size ≥ 1: {self}.")
        if self.norm is not None and not (math.isfinite(self.norm) and self.norm > 0):
            raise ValueError(f"PreferenceFit.norm must be a positive finite number or None, got {self.norm}.")

    def settings(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def fit_values(
    model,
    pairs: PairSet,
    layer: int,
    directions: Float[Tensor, "k d_model"],
    initial: Float[Tensor, " k"],
    fit: PreferenceFit,
    *,
    scale=None,
    style: PromptStyle = PromptStyle(),
    progress: bool = True,
) -> tuple[Float[Tensor, " k"], dict[str, Any]]:
    """Fit the coefficients of ``directions`` (decoder rows, or the identity for a dense vector) to the pairs.

    Args:
        model: a HookedTransformer.
        pairs: at least two pairs (one is held out).
        layer: the block whose ``hook_resid_post`` is edited.
        directions: the residual direction of each coefficient.
        initial: the coefficients to start from (a selection rule's values, or the mean difference).
        fit: the settings.
        scale: per-token factor of the edit (an SAE's ``output_scale``); 1 if ``None``.
        style: base-model text or the chat template.
        progress: a progress bar over epochs.

    Returns:
        The fitted coefficients, rescaled so that ``‖values · directions‖ = norm``, and a report:
        held-out loss before and after, epochs run, the norm.

    Example:
        >>> values, report = fit_values(model, pairs, 1, torch.eye(16), torch.ones(16),
        ...                             PreferenceFit(epochs=1, norm=2.0), progress=False)
        >>> round(float(values.norm()), 4), report["held_out_pairs"]
        (2.0, 1)
    """
    check_starts_at_block(model, 'fit="preference"')
    if len(pairs) < 2:
        raise ValueError(f"A preference fit needs at least 2 pairs (one is held out), got {len(pairs)}.")
    device = model.cfg.device
    directions = directions.to(device, torch.float32)
    if not bool(torch.isfinite(initial).all()) or float((initial @ directions.cpu()).norm()) == 0:
        raise ValueError("The vector to start the fit from is zero or not finite: nothing to fit.")
    norm = fit.norm if fit.norm is not None else float((initial.to(device) @ directions).norm())
    generator = torch.Generator().manual_seed(fit.seed)
    order = torch.randperm(len(pairs), generator=generator).tolist()
    n_held = max(1, round(fit.held_out * len(pairs)))
    held = prepare_pairs(model, pairs, layer, style=style, batch_size=fit.batch_size, subset=sorted(order[:n_held]))
    train = prepare_pairs(model, pairs, layer, style=style, batch_size=fit.batch_size, subset=order[n_held:])

    values = (initial.to(device, torch.float32) / initial.float().pow(2).mean().sqrt()).clone().requires_grad_(True)
    optimiser = torch.optim.Adam([values], lr=fit.lr)

    def edit(batch: PairBatch, coefficients: Tensor) -> Tensor:
        direction = coefficients @ directions
        added = norm * direction / direction.norm().clamp_min(1e-12)
        return added if scale is None else added * scale(batch.residual)

    def loss(batch: PairBatch, coefficients: Tensor) -> Tensor:
        added = edit(batch, coefficients)
        plus = margins(model, batch, layer, batch.residual + added)
        minus = margins(model, batch, layer, batch.residual - added)
        return -(torch.nn.functional.logsigmoid(fit.beta * plus) + torch.nn.functional.logsigmoid(-fit.beta * minus))

    def held_out_loss(coefficients: Tensor) -> float:
        with torch.no_grad():
            return float(torch.cat([loss(batch, coefficients) for batch in held]).mean())

    best_values, best_loss = values.detach().clone(), held_out_loss(values.detach())
    start_loss, epochs_run, stale = best_loss, 0, 0
    with _frozen(model), torch.enable_grad():  # callers may run under no_grad (sas_vector does)
        bar = tqdm(range(fit.epochs), desc="preference fit", disable=not progress, leave=False)
        for epoch in bar:
            for i in torch.randperm(len(train), generator=generator).tolist():  # batches, in a new order
                batch = train[i]
                optimiser.zero_grad()
                loss(batch, values).mean().backward()
                optimiser.step()
            epochs_run = epoch + 1
            current = held_out_loss(values.detach())
            bar.set_postfix(held_out=f"{current:.4f}", best=f"{min(best_loss, current):.4f}")
            if current < best_loss:
                best_values, best_loss, stale = values.detach().clone(), current, 0
            else:
                stale += 1
                if stale >= fit.patience:
                    break
    decoded_norm = float((best_values @ directions).norm())
    fitted = (best_values * norm / max(decoded_norm, 1e-12)).cpu()
    report = {
        **fit.settings(),
        "norm": norm,
        "held_out_pairs": n_held,
        "held_out_loss_before": start_loss,
        "held_out_loss_after": best_loss,
        "epochs_run": epochs_run,
    }
    return fitted, report
