"""What each latent *writes*: output scores (Arad, Mueller & Belinkov, arXiv 2505.20063) for every latent of an SAE.

Latents that fire on a concept and latents that write it are mostly different; the paper keeps latents
with a high output score and steers 2-3x better. For latent ``i``, as in its reference code
(technion-cs-nlp/saes-are-good-for-steering, ``src/output_score.py``):

1. its logit-lens tokens ``T_i``: the top ``lens_k`` (20) tokens of its decoder row through the final norm
   and unembedding (:func:`~sas_lens.analysis.attribution.logit_lens`);
2. amplify it on a neutral prompt (``"From my experience,"``), SAE error kept: at the prompt's last position
   its code gains ``amplification × (the largest code there)``, so the residual gains that times its
   decoder row (for normalising SAEs, times the token's scale);
3. ``output_score = (1 − min rank of T_i / vocab) × max probability of T_i`` in the next-token distribution.

Beside it, ``kl``: the next-token KL(unsteered ‖ amplified) the same edit causes, and ``kl_per_norm``: that
KL per unit of residual edit norm (how much a latent moves the output for what it costs).

Only the last position is edited, so the blocks after the SAE's layer run on ``[batch, prompt]`` residuals
whose earlier positions are the unsteered ones, and only the last position is unembedded: a 16k SAE is
one pass of 16k short sequences through the upper half of the model. Scores are cached on disk per (model
weights, SAE fingerprint, settings); shipped SAEs carry theirs.

Example:
    >>> table = sl.output_scores(model, sae)             # doctest: +SKIP
    >>> table.nlargest(5, "output_score")                # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from tqdm.auto import tqdm

from sas_lens.loading.models import check_starts_at_block
from sas_lens.loading.saes import check_sae_fits, hook_layer, resolved_hook_name, sae_fingerprint, sae_hook_name
from sas_lens.steering.edits import check_steerable, decoder_directions, output_scale

NEUTRAL_PROMPT = "From my experience,"  # the reference code's
COLUMNS = ("output_score", "min_rank", "max_probability", "kl", "edit_norm", "kl_per_norm")
_FORMAT = "sas_lens.output_scores/1"
SHIPPED_FILE = "output_scores.safetensors"  # beside a shipped SAE's weights


def output_scores(
    model,
    sae,
    *,
    prompt: str = NEUTRAL_PROMPT,
    amplification: float = 10.0,
    lens_k: int = 20,
    batch_size: int = 256,
    cache: bool = True,
    progress: bool = True,
):
    """Output score, KL and KL per unit edit norm of every latent of ``sae``, as a DataFrame indexed by latent.

    Args:
        model: the HookedTransformer ``sae`` reads.
        sae: a residual-stream SAE on ``blocks.L.hook_resid_post``.
        prompt: the neutral prompt amplified on.
        amplification: the code added is this times the largest code at the prompt's last position.
        lens_k: logit-lens tokens per latent.
        batch_size: latents per forward pass (the result does not depend on it, up to float32 rounding).
        cache: read and write the on-disk cache (``~/.cache/sas_lens/output_scores``; shipped SAEs' own file).
        progress: a progress bar.

    Returns:
        Columns ``output_score, min_rank, max_probability, kl, edit_norm, kl_per_norm``, one row per latent.

    Example:
        >>> table = output_scores(model, sae, batch_size=16, progress=False)
        >>> len(table) == sae.cfg.d_sae and bool((table["output_score"] >= 0).all())
        True
    """
    import pandas as pd

    check_sae_fits(sae, model)
    check_steerable(sae)
    if not amplification > 0 or lens_k < 1 or batch_size < 1:
        raise ValueError(
            f"amplification must be positive and lens_k, batch_size at least 1; got "
            f"{amplification}, {lens_k}, {batch_size}."
        )
    settings = {"prompt": prompt, "amplification": amplification, "lens_k": lens_k}
    key = _cache_key(model, sae, settings)
    for path in _cache_paths(sae, key) if cache else []:
        table = _read(path, key)
        if table is not None:
            return table
    check_starts_at_block(model, "Computing output scores")  # the cached and shipped ones read on any kind
    columns = _compute(model, sae, settings, batch_size, progress)
    if cache:
        _write(_cache_paths(sae, key)[-1], key, columns)
    return pd.DataFrame({name: columns[name].numpy() for name in COLUMNS}).rename_axis("latent")


@torch.no_grad()
def _compute(model, sae, settings: dict, batch_size: int, progress: bool) -> dict[str, torch.Tensor]:
    layer = hook_layer(sae_hook_name(sae))
    hook = resolved_hook_name(model, sae_hook_name(sae))  # a bridge caches under the canonical name
    tokens = model.to_tokens(settings["prompt"])
    clean_logits, run_cache = model.run_with_cache(tokens, names_filter=hook)
    residual = run_cache[hook].float()  # [1, pos, d_model]
    clean = clean_logits[0, -1].float().log_softmax(-1)

    # Every latent's edit at the last position: amplification x the largest code there, times its decoder row
    # (divided by its norm for TopK's rescale_acts_by_decoder_norm), times the token's scale for normalising SAEs
    directions = decoder_directions(sae, device=residual.device)  # [d_sae, d_model]
    last = residual[:, -1:]
    scale = float(sae.encode(last.to(sae.device, sae.dtype)).float().max()) * settings["amplification"]
    edits = scale * float(torch.as_tensor(output_scale(sae, last)).reshape(-1)[0]) * directions
    lens = (through_final_norm(model, directions) @ model.W_U.float()).topk(settings["lens_k"], dim=-1).indices

    out = {name: torch.empty(sae.cfg.d_sae) for name in COLUMNS}
    for start in tqdm(range(0, sae.cfg.d_sae, batch_size), desc="output scores", disable=not progress, unit="batch"):
        stop = min(start + batch_size, sae.cfg.d_sae)
        batch = residual.expand(stop - start, -1, -1).clone()
        batch[:, -1] += edits[start:stop]
        final = model(batch, start_at_layer=layer + 1, stop_at_layer=model.cfg.n_layers)[:, -1]
        logits = model.unembed(model.ln_final(final[:, None]))[:, 0].float()
        log_probs = logits.log_softmax(-1)
        probs = log_probs.exp()
        best = probs.gather(1, lens[start:stop]).max(dim=1).values
        # a token's rank is how many tokens are more probable (0: the top one, as argsort gives it), so the
        # lens token of least rank is the most probable one: one comparison with the vocabulary, not lens_k
        out["min_rank"][start:stop] = (probs > best[:, None]).sum(-1).float().cpu()
        out["max_probability"][start:stop] = best.cpu()
        out["kl"][start:stop] = (clean.exp() * (clean - log_probs)).sum(-1).cpu()
    vocab = model.cfg.d_vocab
    out["output_score"] = (1 - out["min_rank"] / vocab) * out["max_probability"]
    out["edit_norm"] = edits.norm(dim=-1).cpu()
    out["kl_per_norm"] = out["kl"] / out["edit_norm"].clamp_min(1e-12)
    return out


def _cache_key(model, sae, settings: dict) -> str:
    from sas_lens.loading.models import model_fingerprint

    fields = [_FORMAT, model_fingerprint(model), sae_fingerprint(sae), settings]
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def _cache_paths(sae, key: str) -> list[Path]:
    """Where the scores may be: the shipped SAE's own file first, then the user cache (written there)."""
    from sas_lens.loading.models import cache_dir
    from sas_lens.loading.saes import SHIPPED_RELEASE, shipped_saes

    paths = []
    if getattr(sae.cfg.metadata, "sae_lens_release", None) == SHIPPED_RELEASE:
        folders = {folder.name: folder for folder in shipped_saes().values()}
        folder = folders.get(getattr(sae.cfg.metadata, "sae_id", None))
        if folder is not None:
            paths.append(folder / SHIPPED_FILE)
    return paths + [cache_dir() / "output_scores" / f"{key}.safetensors"]


def _read(path: Path, key: str):
    import pandas as pd
    from safetensors import safe_open

    if not path.exists():
        return None
    with safe_open(str(path), framework="pt") as handle:
        if (handle.metadata() or {}).get("key") != key:
            return None  # scores of other settings, or of an SAE or model that changed since
        return pd.DataFrame({name: handle.get_tensor(name).numpy() for name in COLUMNS}).rename_axis("latent")


def _write(path: Path, key: str, columns: dict[str, torch.Tensor]) -> None:
    from safetensors.torch import save_file

    from sas_lens.loading.files import atomic_file

    with atomic_file(path) as staging:
        save_file(
            {name: columns[name].contiguous() for name in COLUMNS}, staging, metadata={"format": _FORMAT, "key": key}
        )


def ship_output_scores(model, sae) -> Path:
    """Compute ``sae``'s output scores and write them beside the shipped SAE's weights (maintainers' tool).

    Args:
        model: the embedded model.
        sae: a shipped SAE (``sl.load_sae("16k")``).

    Example:
        >>> ship_output_scores(sl.load_model(), sl.load_sae("16k"))   # doctest: +SKIP
    """
    settings = {"prompt": NEUTRAL_PROMPT, "amplification": 10.0, "lens_k": 20}
    key = _cache_key(model, sae, settings)
    paths = _cache_paths(sae, key)
    if len(paths) < 2:
        raise ValueError("ship_output_scores writes beside a shipped SAE; load one with sl.load_sae(name).")
    columns = _compute(model, sae, settings, batch_size=256, progress=True)
    _write(paths[0], key, columns)
    return paths[0]


def through_final_norm(model, directions: torch.Tensor) -> torch.Tensor:
    """What the model's final norm does to residual ``directions`` ``[n, d_model]``, up to a positive scale.

    A norm divides by the residual's own scale (unknown for a direction alone and
    the same for every token, so it cannot change a ranking), centres it (LayerNorm)
    and multiplies by its weight. ``load_model`` keeps that weight unfolded
    (``from_pretrained_no_processing``, the residuals SAEs are trained on), and on
    Gemma 3 270M it runs from 0.19 to 301 across dimensions: a lens that leaves it
    out ranks tokens by dimensions the model all but ignores. Models whose weights
    were folded into ``W_U`` (``LNPre``, ``RMSPre``) only centre (``LNPre``).

    Args:
        model: a HookedTransformer.
        directions: ``[n, d_model]`` residual directions (e.g. decoder rows).

    Example:
        >>> through_final_norm(model, sae.W_dec[:2]).shape   # doctest: +SKIP
        torch.Size([2, 640])
    """
    norm_type = model.cfg.normalization_type
    if norm_type in ("LN", "LNPre"):
        directions = directions - directions.mean(-1, keepdim=True)
    weight = getattr(model.ln_final, "w", None) if norm_type in ("LN", "RMS") else None
    return directions if weight is None else directions * weight.detach().to(directions)
