"""How good is an SAE on held-out text: reconstruction, downstream loss, sparsity, dead and dense latents.

Figures (all on text the SAE never saw; the BOS position is left out everywhere,
as in training, because its residual is an outlier the SAE is not meant to fit):

- ``explained_variance``: ``1 - sum|a - â|² / sum|a - mean(a)|²`` over tokens;
- ``ce_loss_recovered``: ``(L_zero - L_sae) / (L_zero - L_clean)``, the next-token
  loss with the SAE's reconstruction spliced into the hook, against the clean
  loss and the loss with the hook's activation zeroed;
- ``mean_l0``: active latents per token;
- ``dead_fraction``: latents never active on the held-out tokens (100k by default);
- ``dense_fraction``: latents active on more than 10% of them.

Example:
    >>> from sas_lens.sae_training.evaluate import evaluate_sae
    >>> report = evaluate_sae(model, sae, ["held_out.txt"], out_json="sae/eval.json")  # doctest: +SKIP
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from sas_lens.loading.saes import check_sae_fits, sae_hook_name
from sas_lens.loading.text_data import (
    iter_documents,
    iter_token_sequences,
    resolve_text_files,
)
from sas_lens.sae_training.activation_cache import (
    ActivationCache,
    build_activation_cache,
)

DENSE_FREQUENCY = 0.1


@torch.no_grad()
def evaluate_sae(
    model,
    sae,
    texts,
    *,
    n_tokens: int = 100_000,
    n_loss_sequences: int = 64,
    context_size: int = 128,
    batch_size: int = 16,
    cache_dir: str | Path | None = None,
    out_json: str | Path | None = None,
) -> dict:
    """Evaluate ``sae`` on ``model`` over held-out ``texts``; optionally write the figures as JSON.

    Args:
        model: the HookedTransformer the SAE reads.
        sae: an SAELens SAE (checked to fit ``model`` first).
        texts: held-out text files or folders (tokens never used in training).
        n_tokens: tokens for explained variance, L0, dead and dense latents.
        n_loss_sequences: sequences of ``context_size`` tokens for the loss figures.
        cache_dir: where to keep the held-out activations (reused across SAEs of one hook).
        out_json: where to write the figures.

    Example:
        >>> figures = evaluate_sae(model, sl.load_sae("16k"), "heldout/", n_tokens=50_000)  # doctest: +SKIP
    """
    check_sae_fits(sae, model)
    hook_name = sae_hook_name(sae)
    files = resolve_text_files(texts)
    if cache_dir is None:
        import tempfile

        cache_dir = Path(tempfile.mkdtemp(prefix="sas_lens_eval_"))
    cache = build_activation_cache(
        model, hook_name, files, cache_dir, n_tokens, context_size=context_size, batch_size=batch_size
    )
    figures = _reconstruction_figures(sae, cache, n_tokens)
    figures.update(_loss_figures(model, sae, hook_name, files, n_loss_sequences, context_size, batch_size))
    figures.update(
        hook_name=hook_name,
        d_sae=sae.cfg.d_sae,
        held_out_sources=[str(f) for f in files],
        loss_tokens=n_loss_sequences * (context_size - 1),
    )
    if out_json is not None:
        from sas_lens.loading.files import atomic_write_text

        atomic_write_text(out_json, json.dumps(figures, indent=2))
    return figures


def _reconstruction_figures(sae, cache: ActivationCache, n_tokens: int, chunk: int = 4096) -> dict:
    n = min(n_tokens, len(cache))
    fired = torch.zeros(sae.cfg.d_sae, dtype=torch.long)
    sum_sq_err = 0.0
    total_l0 = 0
    sums = torch.zeros(cache.spec.d_model, dtype=torch.float64)
    sum_sq = torch.zeros((), dtype=torch.float64)
    for start in tqdm(range(0, n, chunk), desc="SAE reconstruction", leave=False):
        acts = cache.batch(np.arange(start, min(start + chunk, n))).to(sae.device)
        latents = sae.encode(acts.to(sae.dtype))
        recon = sae.decode(latents).float()
        active = latents > 0
        fired += active.sum(0).cpu()
        total_l0 += int(active.sum())
        sum_sq_err += float((acts - recon).double().pow(2).sum())
        sums += acts.double().sum(0).cpu()
        sum_sq += acts.double().pow(2).sum().cpu()
    total_variance = float(sum_sq - sums.pow(2).sum() / n)
    frequency = fired.double() / n
    return {
        "explained_variance": 1 - sum_sq_err / total_variance,
        "mean_l0": total_l0 / n,
        "dead_fraction": float((fired == 0).double().mean()),
        "dense_fraction": float((frequency > DENSE_FREQUENCY).double().mean()),
        "tokens": n,
    }


def _loss_figures(model, sae, hook_name, files, n_sequences, context_size, batch_size) -> dict:
    losses = {"clean": [], "sae": [], "zero": []}

    def splice(replacement):
        def hook(acts, hook):  # BOS keeps its activation, as in training
            out = acts.clone()
            out[:, 1:] = replacement(acts[:, 1:])
            return out

        return hook

    reconstruct = splice(lambda a: sae.decode(sae.encode(a.to(sae.dtype))).to(a.dtype))
    zero = splice(torch.zeros_like)
    sequences = iter_token_sequences(model.tokenizer, iter_documents(files), context_size, batch_size)
    done = 0
    with tqdm(total=n_sequences, desc="loss with SAE spliced", leave=False) as progress:
        for tokens in sequences:
            tokens = tokens[: n_sequences - done].to(model.cfg.device)
            losses["clean"].append(model(tokens, return_type="loss", loss_per_token=True))
            for name, hook in (("sae", reconstruct), ("zero", zero)):
                losses[name].append(
                    model.run_with_hooks(tokens, return_type="loss", loss_per_token=True, fwd_hooks=[(hook_name, hook)])
                )
            done += tokens.shape[0]
            progress.update(tokens.shape[0])
            if done >= n_sequences:
                break
    # Loss on predicting position t+1 from t; position 0 (BOS) is unaffected by the splice.
    mean = {name: float(torch.cat(values)[:, 1:].mean()) for name, values in losses.items()}
    return {
        "ce_loss_clean": mean["clean"],
        "ce_loss_with_sae": mean["sae"],
        "ce_loss_zero_ablation": mean["zero"],
        "ce_loss_recovered": (mean["zero"] - mean["sae"]) / (mean["zero"] - mean["clean"]),
    }
