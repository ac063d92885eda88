"""The CPU-friendly BatchTopK SAE computes what SAELens's BatchTopK computes."""

import pytest
import torch
from sae_lens import BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig
from sae_lens.saes.sae import TrainStepInput

from sas_lens.sae_training.batchtopk import FastBatchTopKTrainingSAE, batch_topk_indices


@pytest.mark.parametrize("candidates", [None, 1])  # 1 candidate per row forces the exact fallback
def test_batch_topk_indices_match_flat_topk(candidates):
    acts = torch.randn(32, 200)
    acts[3] += 5.0  # one row holds far more than its share of the winners
    rows, cols = batch_topk_indices(acts, k=4, candidates_per_row=candidates)
    flat = acts.relu().flatten().topk(4 * 32).indices
    assert set(zip(rows.tolist(), cols.tolist())) == {(i // 200, i % 200) for i in flat.tolist()}


def test_fast_training_step_equals_saelens():
    torch.manual_seed(0)
    cfg = BatchTopKTrainingSAEConfig(d_in=16, d_sae=64, k=4, device="cpu")
    reference = BatchTopKTrainingSAE(cfg)
    fast = FastBatchTopKTrainingSAE(cfg)
    fast.load_state_dict(reference.state_dict())
    x = torch.randn(128, 16)
    dead = torch.zeros(64, dtype=torch.bool)
    dead[::3] = True
    outputs = []
    for sae in (reference, fast):
        out = sae.training_forward_pass(
            TrainStepInput(sae_in=x, coefficients={}, dead_neuron_mask=dead, n_training_steps=0, is_logging_step=False)
        )
        out.loss.backward()
        outputs.append((out, {n: p.grad.clone() for n, p in sae.named_parameters()}))
    (ref_out, ref_grads), (fast_out, fast_grads) = outputs
    for name in ("mse_loss", "auxiliary_reconstruction_loss"):
        torch.testing.assert_close(fast_out.losses[name], ref_out.losses[name])
    torch.testing.assert_close(fast_out.feature_acts, ref_out.feature_acts)
    for name, grad in ref_grads.items():
        torch.testing.assert_close(fast_grads[name], grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(fast.topk_threshold, reference.topk_threshold)
