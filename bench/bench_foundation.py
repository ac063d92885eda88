"""Benchmarks of the foundation, reported as ratios measured in one run (not collected by pytest).

    python bench/bench_foundation.py                     # embedded Gemma 3 270M + a 16k SAE step

1. Forward pass of the embedded model with TransformerLens's stock weight layout
   against sas_lens's transposed storage (same outputs, bit for bit).
2. One training step of a 16k-latent BatchTopK SAE (d_in 640, batch 4096): SAELens's
   BatchTopKTrainingSAE against sas_lens's FastBatchTopKTrainingSAE (same step).
"""

from __future__ import annotations

import statistics
import time

import torch


def median_time(fn, repeats: int = 5) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_forward() -> None:
    import sas_lens as sl
    from sas_lens.loading import models

    fast = sl.load_model()
    tokens = fast.to_tokens("The capital of France is Paris, and the capital of Italy is")
    stock = sl.load_model()
    for _, param in stock.named_parameters():  # undo the re-layout: plain contiguous weights
        if param.ndim == 2 and not param.is_contiguous():
            param.data = param.data.contiguous()
    with torch.no_grad():
        assert torch.equal(stock(tokens), fast(tokens))
        t_stock = median_time(lambda: stock(tokens))
        t_fast = median_time(lambda: fast(tokens))
    print(
        f"forward, {tokens.shape[1]} tokens: stock layout {t_stock:.3f} s, sas_lens layout {t_fast:.3f} s, "
        f"speed-up x{t_stock / t_fast:.1f}"
    )
    del models


def bench_sae_step() -> None:
    from sae_lens import BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig
    from sae_lens.saes.sae import TrainStepInput

    from sas_lens.sae_training.batchtopk import FastBatchTopKTrainingSAE

    cfg = BatchTopKTrainingSAEConfig(d_in=640, d_sae=16384, k=64, device="cpu")
    x = torch.randn(4096, 640)
    dead = torch.zeros(16384, dtype=torch.bool)
    dead[:2000] = True  # the auxiliary loss is on, as in training
    results = {}
    for cls in (BatchTopKTrainingSAE, FastBatchTopKTrainingSAE):
        torch.manual_seed(0)
        sae = cls(cfg)
        optimizer = torch.optim.Adam(sae.parameters(), lr=1e-4)

        def step(sae=sae, optimizer=optimizer):
            out = sae.training_forward_pass(
                TrainStepInput(
                    sae_in=x, coefficients={}, dead_neuron_mask=dead, n_training_steps=0, is_logging_step=False
                )
            )
            out.loss.backward()
            optimizer.step()
            optimizer.zero_grad()

        results[cls.__name__] = median_time(step, repeats=3)
    ref, fast = results["BatchTopKTrainingSAE"], results["FastBatchTopKTrainingSAE"]
    print(
        f"16k BatchTopK SAE step (4096 x 640): SAELens {ref:.2f} s, sas_lens {fast:.2f} s, speed-up x{ref / fast:.1f}"
    )


if __name__ == "__main__":
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    bench_forward()
    bench_sae_step()
