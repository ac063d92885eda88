"""Which latents a sparse vector keeps: the paper's rule (Algorithm 1, steps 3–6) and a contrastive one.

``"paper"``: per side, keep a latent active in at least a fraction τ of the rows; take
each kept latent's mean; zero the latents kept on both sides; subtract. A latent that
fires on both sides is dropped however unequally it fires.

``"contrast"``: keep the ``top_k`` latents whose statistic differs most between the sides —
the mean code (``rank_by="mean"``) or the firing frequency (``rank_by="frequency"``) — with
value ``mean⁺ − mean⁻``; nothing is dropped for firing on both sides.

``"decompose"``: the ``top_k`` latents whose decoder rows best rebuild the dense (CAA) difference
of the residuals, ``mean(A⁺) − mean(A⁻)``, chosen greedily and valued by least squares
(orthogonal matching pursuit): the CAA vector written in the SAE's dictionary.

``"attribution"``: an output-side rule. The ``top_k`` latents whose decoder row, added at every
position, most raises the positive completions' log-probability against the negatives' to first
order (the gradient of the preference margin of :mod:`sas_lens.steering.preference` through the row,
``s_i = ∂m/∂δ · W_dec[i]``), valued ``s_i``: which latents *write* the behaviour, where the other
rules ask which ones *fire* on it (Arad et al., arXiv 2505.20063, find these mostly differ).

Every rule can be restricted to ``allowed`` latents (``sas_vector``'s output-score, density and BOS
filters).

Example:
    >>> pos = torch.tensor([[1.0, 2.0, 0.0], [1.0, 0.0, 0.0]])
    >>> neg = torch.tensor([[1.0, 0.0, 3.0], [0.0, 0.0, 0.0]])
    >>> contrast_from_codes(pos, neg, top_k=2)   # latents 2 and 1 differ most
    tensor([ 0.0000,  1.0000, -1.5000])
"""

from __future__ import annotations

import torch

from sas_lens.typing import Float, Tensor

SELECTIONS = ("paper", "contrast", "decompose", "attribution")
RANK_BY = ("mean", "frequency")


def side_statistics(
    codes: Float[Tensor, "n d_sae"], tau: float, *, mean_over: str = "all", strict: bool = False
) -> tuple[Tensor, Tensor, Tensor]:
    """Algorithm 1, step 3 and 4 on one side: each latent's firing frequency, whether it is kept, its mean.

    τ = 0 keeps the latents active at all ("≥ 0" would keep every latent on both sides, and
    step 5 would then remove them all).

    Args:
        codes: SAE codes of one side's examples, one row each.
        tau: the frequency filter.
        mean_over: a latent's mean over ``"all"`` rows or its ``"active"`` rows.
        strict: ``>`` τ instead of ``≥`` τ.

    Example:
        >>> freq, kept, mean = side_statistics(torch.tensor([[2.0, 0.0], [0.0, 0.0]]), tau=0.5)
        >>> freq.tolist(), kept.tolist(), mean.tolist()
        ([0.5, 0.0], [True, False], [1.0, 0.0])
    """
    active = codes > 0
    frequency = active.float().mean(0)
    kept = frequency > tau if strict or tau == 0 else frequency >= tau
    if mean_over == "all":
        mean = codes.mean(0)
    else:
        mean = codes.sum(0) / active.sum(0).clamp_min(1)
    return frequency, kept, mean


def combine_sides(kept_pos: Tensor, mean_pos: Tensor, kept_neg: Tensor, mean_neg: Tensor) -> Tensor:
    """Algorithm 1, steps 5 and 6: ``v = v⁺ − v⁻`` over the kept latents, zero where both sides kept one.

    Args:
        kept_pos, mean_pos, kept_neg, mean_neg: :func:`side_statistics` of each side.

    Example:
        >>> combine_sides(torch.tensor([True, True]), torch.tensor([1.0, 2.0]),
        ...               torch.tensor([True, False]), torch.tensor([3.0, 0.0]))
        tensor([0., 2.])
    """
    v_pos = torch.where(kept_pos, mean_pos, torch.zeros_like(mean_pos))
    v_neg = torch.where(kept_neg, mean_neg, torch.zeros_like(mean_neg))
    return torch.where(kept_pos & kept_neg, 0.0, v_pos - v_neg)


def contrast_from_codes(
    positive: Float[Tensor, "n_pos d_sae"],
    negative: Float[Tensor, "n_neg d_sae"],
    *,
    top_k: int = 64,
    rank_by: str = "mean",
    mean_over: str = "all",
    allowed: Tensor | None = None,
) -> Float[Tensor, " d_sae"]:
    """The contrastive rule: the ``top_k`` latents that differ most between the sides, valued ``mean⁺ − mean⁻``.

    Args:
        positive, negative: SAE codes of each side's examples, one row each.
        top_k: how many latents to keep (fewer if fewer differ at all).
        rank_by: ``"mean"`` (|mean⁺ − mean⁻|) or ``"frequency"`` (|freq⁺ − freq⁻|, ties broken by the means).
        mean_over: each side's mean over ``"all"`` rows or its ``"active"`` rows.
        allowed: ``[d_sae]`` bool, the latents that may be chosen (all if ``None``).

    Example:
        >>> contrast_from_codes(torch.tensor([[4.0, 1.0]]), torch.tensor([[0.0, 1.0]]), top_k=1)
        tensor([4., 0.])
    """
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}.")
    if rank_by not in RANK_BY:
        raise ValueError(f"rank_by must be one of {RANK_BY}, got {rank_by!r}.")
    freq_pos, _, mean_pos = side_statistics(positive.float(), 0.0, mean_over=mean_over)
    freq_neg, _, mean_neg = side_statistics(negative.float(), 0.0, mean_over=mean_over)
    difference = mean_pos - mean_neg
    score = difference.abs() if rank_by == "mean" else (freq_pos - freq_neg).abs() + 1e-6 * difference.abs()
    score = torch.where(difference != 0, score, torch.zeros_like(score))
    return top_k_by_score(difference, score, top_k, allowed)


def top_k_by_score(
    values: Float[Tensor, " d_sae"], score: Float[Tensor, " d_sae"], top_k: int, allowed: Tensor | None = None
) -> Float[Tensor, " d_sae"]:
    """``values`` on the ``top_k`` latents of highest positive ``score`` among the ``allowed`` ones, zero elsewhere.

    Args:
        values: what a kept latent is valued.
        score: the ranking; latents scored 0 or less are never kept.
        top_k: at most this many latents.
        allowed: ``[d_sae]`` bool (all latents if ``None``).

    Example:
        >>> top_k_by_score(torch.tensor([1.0, -2.0, 3.0]), torch.tensor([1.0, 2.0, 3.0]), 2,
        ...                torch.tensor([True, True, False]))
        tensor([ 1., -2.,  0.])
    """
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}.")
    if allowed is not None:
        score = torch.where(allowed.to(score.device), score, torch.zeros_like(score))
    keep = score.topk(min(top_k, int((score > 0).sum()))).indices
    return torch.zeros_like(values).index_copy_(0, keep, values[keep])


def decompose_direction(
    target: Float[Tensor, " d_model"],
    decoder: Float[Tensor, "d_sae d_model"],
    *,
    top_k: int = 64,
    allowed: Tensor | None = None,
) -> Float[Tensor, " d_sae"]:
    """``target`` as a combination of ``top_k`` decoder rows, by orthogonal matching pursuit.

    Each step adds the row most aligned with what is left of ``target`` (``|⟨r, d_i⟩| / ‖d_i‖``) and
    refits the values of all rows chosen so far by least squares.

    Args:
        target: the direction to rebuild, e.g. the mean residual difference of the pairs.
        decoder: the SAE's ``W_dec``.
        top_k: how many latents to use.
        allowed: ``[d_sae]`` bool, the rows that may be used (all if ``None``).

    Example:
        >>> decompose_direction(torch.tensor([3.0, 1.0]), torch.tensor([[1.0, 0.0], [0.0, 2.0]]), top_k=1)
        tensor([3., 0.])
    """
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}.")
    target, decoder = target.float(), decoder.float()
    norms = decoder.norm(dim=-1).clamp_min(1e-12)
    barred = torch.zeros(decoder.shape[0], dtype=torch.bool) if allowed is None else ~allowed.cpu()
    chosen: list[int] = []
    left = target
    values = target.new_zeros(0)
    for _ in range(min(top_k, int((~barred).sum()), target.shape[0])):
        alignment = (decoder @ left).abs() / norms
        alignment[barred.to(alignment.device)] = -1.0
        alignment[chosen] = -1.0
        chosen.append(int(alignment.argmax()))
        basis = decoder[chosen].T  # [d_model, chosen]
        values = torch.linalg.lstsq(basis, target[:, None]).solution[:, 0]
        left = target - basis @ values
    out = torch.zeros(decoder.shape[0])
    out[chosen] = values
    return out
