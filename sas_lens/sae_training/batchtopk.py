"""SAELens's BatchTopK training SAE, made affordable on a CPU. Same maths, sparse kernels.

SAELens's ``BatchTopK`` takes the top ``k * batch`` of a flattened
``[4096, 16384]`` matrix with one ``torch.topk`` (67M elements, the slowest part
of a CPU step), decodes the result as a dense matrix and backpropagates
through two dense ``[batch, d_sae] x [d_sae, d_in]`` products. This module
selects the same latents from a few candidates per row and does the decode and
the encoder's backward with sparse kernels (only k latents per row, plus the
auxiliary loss's dead ones, carry gradient). The trainer (SAELens's
``SAETrainer``), the losses, the checkpoints and the saved JumpReLU inference
form are all SAELens's own; ``tests/unit/test_fast_batchtopk.py`` checks that a
step gives SAELens's losses and gradients.
"""

from __future__ import annotations

import torch
from sae_lens import BatchTopKTrainingSAE
from torch import nn
from torch.nn import functional as F

from sas_lens.typing import Float, Indices, Latents, Tensor


def batch_topk_indices(acts: Latents, k: int | float, candidates_per_row: int | None = None) -> tuple[Indices, Indices]:
    """Row and column indices of the ``k * n_rows`` largest positive entries of a matrix.

    Selects what ``torch.topk(acts.relu().flatten(), k * n_rows)`` selects (up to
    ties), less the zeros, which add nothing to a decode. It reads only the
    ``candidates_per_row`` largest entries of each row; if some row could hide more
    winners than that, it falls back to the flat top-k, so the result is exact.

    Args:
        acts: ``[n_rows, d_sae]`` pre-activations.
        k: mean active latents per row.
        candidates_per_row: how many of each row's largest entries to consider (default: ``4k``).

    Example:
        >>> rows, cols = batch_topk_indices(torch.tensor([[3.0, 1.0], [2.0, -1.0]]), 1)
        >>> sorted(zip(rows.tolist(), cols.tolist()))
        [(0, 0), (1, 0)]
    """
    n_rows, width = acts.shape
    total = int(k * n_rows)
    per_row = min(width, candidates_per_row or max(4 * int(k), 1))
    with torch.no_grad():
        candidates = acts.topk(per_row, dim=-1, sorted=True)
        threshold = acts.new_tensor(0.0)
        if total < candidates.values.numel():
            threshold = candidates.values.flatten().topk(total, sorted=False).values.min().clamp_min(0.0)
        row_minimum = candidates.values[:, -1]
        if per_row < width and bool(((row_minimum >= threshold) & (row_minimum > 0)).any()):
            flat = acts.relu().flatten().topk(total, sorted=False)
            keep = flat.values > 0
            return flat.indices[keep] // width, flat.indices[keep] % width
        keep = (candidates.values >= threshold) & (candidates.values > 0)
        rows = torch.arange(n_rows, device=acts.device)[:, None].expand_as(keep)[keep]
        return rows, candidates.indices[keep]


class FastBatchTopK(nn.Module):
    """BatchTopK activation: the same dense output as SAELens's, selected without a flat top-k."""

    def __init__(self, k: int | float):
        super().__init__()
        self.k = k

    def forward(self, hidden_pre: torch.Tensor) -> torch.Tensor:
        # Selected entries are positive, so gathering them from hidden_pre equals
        # gathering from its ReLU, without a dense ReLU and its backward.
        flat = hidden_pre.reshape(-1, hidden_pre.shape[-1])
        rows, cols = batch_topk_indices(flat, self.k)
        out = torch.zeros_like(flat).index_put((rows, cols), flat[rows, cols])
        return out.reshape(hidden_pre.shape)


def sparse_decode(
    rows: Indices, cols: Indices, values: Float[Tensor, " nnz"], W_dec: Float[Tensor, "n_in d_out"], n_rows: int
) -> Float[Tensor, "n_rows d_out"]:
    """``dense_acts @ W_dec`` for a matrix given by its nonzeros, sorted by row.

    ``embedding_bag`` sums ``values * W_dec[cols]`` per row without building the
    ``[nnz, d_in]`` product, and its backward gives both gradients.

    Args:
        rows, cols: the nonzeros' positions, sorted by row.
        values: their values.
        W_dec: the decoder.
        n_rows: rows of the dense matrix.

    Example:
        >>> W = torch.eye(2)
        >>> sparse_decode(torch.tensor([0, 1]), torch.tensor([1, 0]), torch.tensor([2.0, 3.0]), W, 2)
        tensor([[0., 2.],
                [3., 0.]])
    """
    counts = torch.bincount(rows, minlength=n_rows)
    offsets = torch.cumsum(counts, 0) - counts
    return F.embedding_bag(cols, W_dec, offsets, mode="sum", per_sample_weights=values)


class _EncoderAffine(torch.autograd.Function):
    """``x @ W + b`` whose backward exploits a sparse output gradient.

    Only the selected latents (k per row) and the auxiliary loss's dead latents
    receive gradient, so the backward touches those entries alone instead of two
    dense ``[batch, d_sae] x [d_sae, d_in]`` products.
    """

    @staticmethod
    def forward(ctx, x, W, b):
        ctx.save_for_backward(x, W)
        return torch.addmm(b, x, W)

    @staticmethod
    def backward(ctx, grad):
        x, W = ctx.saved_tensors
        rows, cols = torch.nonzero(grad, as_tuple=True)  # sorted by row
        values = grad[rows, cols]
        grad_x = grad_W = None
        if ctx.needs_input_grad[0]:
            grad_x = sparse_decode(rows, cols, values, W.T.contiguous(), x.shape[0])
        if ctx.needs_input_grad[1]:
            by_col = torch.argsort(cols, stable=True)
            grad_W = sparse_decode(cols[by_col], rows[by_col], values[by_col], x, W.shape[1]).T
        return grad_x, grad_W, grad.sum(0) if ctx.needs_input_grad[2] else None


class FastBatchTopKTrainingSAE(BatchTopKTrainingSAE):
    """``BatchTopKTrainingSAE`` with sparse selection and decoding (same config, same save format)."""

    def get_activation_fn(self):
        return FastBatchTopK(self.cfg.k)

    def encode_with_hidden_pre(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        sae_in = self.process_sae_in(x)
        if sae_in.ndim != 2:
            return super().encode_with_hidden_pre(x)
        hidden_pre = self.hook_sae_acts_pre(_EncoderAffine.apply(sae_in, self.W_enc, self.b_enc))
        if self.cfg.rescale_acts_by_decoder_norm:
            hidden_pre = hidden_pre * self.W_dec.norm(dim=-1)
        return self.hook_sae_acts_post(self.activation_fn(hidden_pre)), hidden_pre

    def _decode_nonzeros(self, rows, cols, values, n_rows):
        if self.cfg.rescale_acts_by_decoder_norm:
            values = values / self.W_dec.norm(dim=-1)[cols]
        return sparse_decode(rows, cols, values, self.W_dec, n_rows)

    def decode(self, feature_acts: torch.Tensor) -> torch.Tensor:
        if feature_acts.ndim != 2:
            return super().decode(feature_acts)
        rows, cols = torch.nonzero(feature_acts, as_tuple=True)
        sae_out_pre = self._decode_nonzeros(rows, cols, feature_acts[rows, cols], feature_acts.shape[0])
        sae_out_pre = self.hook_sae_recons(sae_out_pre + self.b_dec)
        sae_out_pre = self.run_time_activation_norm_fn_out(sae_out_pre)
        return self.reshape_fn_out(sae_out_pre, self.d_head)

    def calculate_topk_aux_loss(self, sae_in, sae_out, hidden_pre, dead_neuron_mask):
        """SAELens's auxiliary dead-latent loss (the top ``d_in/2`` dead latents of each
        row reconstruct the residual of the live ones), decoded sparsely."""
        if dead_neuron_mask is None or (num_dead := int(dead_neuron_mask.sum())) == 0:
            return sae_out.new_tensor(0.0)
        residual = (sae_in - sae_out).detach()
        k_aux = sae_in.shape[-1] // 2
        scale = min(num_dead / k_aux, 1.0)
        k_aux = min(k_aux, num_dead)
        top = hidden_pre[:, dead_neuron_mask].topk(k_aux, dim=-1, sorted=False)  # dead columns only
        cols = torch.nonzero(dead_neuron_mask).squeeze(-1)[top.indices].flatten()
        rows = torch.arange(hidden_pre.shape[0], device=hidden_pre.device).repeat_interleave(k_aux)
        recons = self._decode_nonzeros(rows, cols, top.values.flatten(), hidden_pre.shape[0])
        aux_loss = (recons - residual).pow(2).sum(dim=-1).mean()
        return self.cfg.aux_loss_coefficient * scale * aux_loss
