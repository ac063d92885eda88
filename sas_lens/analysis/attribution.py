"""Reading a sparse steering vector: its strongest latents, what each one writes, where each one fires.

For each of a vector's top latents (by ``|value|``):

- the tokens its decoder direction promotes and suppresses through the model's
  final norm and unembedding (logit lens, :func:`logit_lens`), optionally among the
  tokens common in a corpus sample only;
- with a :class:`~sas_lens.analysis.latent_index.LatentIndex`: its firing frequency on the
  corpus sample and its top-activating contexts, the peak token marked «so»;
- a Neuronpedia link where the SAE's metadata names a Neuronpedia id.

:func:`trace_latents` follows chosen latents token by token through a text.

Example:
    >>> index = sl.latent_index(model, sae, "corpus/", n_tokens=200, progress=False)
    >>> table = top_latents(vec, sae, model, k=3, index=index)
    >>> len(table)
    3
"""

from __future__ import annotations

from typing import Any

import torch

from sas_lens.errors import IncompatibleSAEError
from sas_lens.loading.activations import sae_codes
from sas_lens.loading.saes import check_sae_fits, fingerprint_matches
from sas_lens.steering.output_scores import through_final_norm
from sas_lens.steering.vectors import SASVector, check_vector_fits

NEURONPEDIA = "https://www.neuronpedia.org"


def logit_lens(
    sae, model, latents: list[int], n_tokens: int = 5, vocabulary: torch.Tensor | None = None
) -> list[tuple[list[str], list[str]]]:
    """For each latent, the ``n_tokens`` tokens its decoder row promotes most and suppresses most.

    The logits are ``through_final_norm(W_dec[i]) · W_U``: the decoder row as the
    model's final norm passes it to the unembedding (see :func:`~sas_lens.steering.output_scores.through_final_norm`).

    Args:
        sae: the SAE whose decoder rows are read.
        model: the model whose final norm, unembedding and tokenizer are used.
        latents: latent ids.
        n_tokens: tokens per list.
        vocabulary: token ids to rank among (e.g. :meth:`LatentIndex.common_tokens`,
            so that a 262k vocabulary's rare pieces stop filling the lists); all tokens if ``None``.

    Example:
        >>> promotes, suppresses = logit_lens(sae, model, [7], 5)[0]
        >>> len(promotes), len(suppresses)
        (5, 5)
    """
    if not latents:
        return []
    directions = sae.W_dec.detach()[latents].to(model.W_U.device, model.W_U.dtype)
    logits = through_final_norm(model, directions) @ model.W_U.detach()
    token_ids = torch.arange(logits.shape[-1], device=logits.device)
    if vocabulary is not None:
        token_ids = vocabulary.to(logits.device)
        logits = logits[:, token_ids]
    n_tokens = min(n_tokens, logits.shape[-1])
    top = token_ids[logits.topk(n_tokens, dim=-1).indices].tolist()
    bottom = token_ids[(-logits).topk(n_tokens, dim=-1).indices].tolist()
    decode = model.tokenizer.convert_ids_to_tokens
    return [(decode(up), decode(down)) for up, down in zip(top, bottom)]


def neuronpedia_url(sae, latent: int) -> str | None:
    """The latent's Neuronpedia page, when the SAE's metadata names its Neuronpedia id.

    Args:
        sae: an SAE (Gemma Scope SAEs name their Neuronpedia id; shipped ones do not).
        latent: the latent id.

    Example:
        >>> neuronpedia_url(sae, 7) is None   # as for the shipped SAEs: no Neuronpedia id
        True
    """
    neuronpedia_id = getattr(sae.cfg.metadata, "neuronpedia_id", None)
    return f"{NEURONPEDIA}/{neuronpedia_id}/{latent}" if neuronpedia_id else None


def mark_context(context: dict[str, Any]) -> str:
    """One top-activating context as text, the peak token marked «so».

    Args:
        context: a context of a :class:`~sas_lens.analysis.latent_index.LatentIndex` (``before``, ``token``, ``after``).

    Example:
        >>> mark_context({"before": "I", "token": " love", "after": " it"})
        'I« love» it'
    """
    return f"{context['before']}«{context['token']}»{context['after']}".replace("\n", "⏎")


def top_latents(
    vector: SASVector,
    sae,
    model,
    *,
    k: int = 10,
    index=None,
    n_tokens: int = 5,
    n_contexts: int = 3,
    min_token_count: int | None = 3,
    scores=None,
):
    """The ``k`` latents of ``vector`` with the largest ``|value|``, as a DataFrame.

    Args:
        vector: an SAS vector built on ``sae``.
        sae: its SAE.
        model: the model ``sae`` reads (for the unembedding and the tokenizer).
        k: how many latents.
        index: a :class:`~sas_lens.analysis.latent_index.LatentIndex` of ``sae``; adds firing
            frequency and top contexts.
        n_tokens: promoted / suppressed tokens per latent.
        n_contexts: contexts per latent.
        min_token_count: with an index, the logit lens ranks only tokens that occur at
            least this often in the indexed text (:meth:`LatentIndex.common_tokens`);
            ``None``: the whole vocabulary. Without an index the whole vocabulary is used.
        scores: :func:`~sas_lens.steering.output_scores.output_scores` of ``sae``; adds each latent's
            ``output_score`` and ``kl_per_norm`` (what it writes, not where it fires).

    Returns:
        Columns ``latent, value, sign, promotes, suppresses`` (+ ``frequency, contexts``
        with an index, + ``neuronpedia`` where the SAE has a Neuronpedia id).

    Example:
        >>> largest = vec.indices[vec.values.abs().argsort(descending=True)][:5]
        >>> sl.top_latents(vec, sae, model, k=5)["latent"].tolist() == largest.tolist()
        True
    """
    import pandas as pd

    if not isinstance(vector, SASVector):
        raise TypeError(f"top_latents reads SAS vectors, got {type(vector).__name__}.")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}.")
    check_vector_fits(vector, sae=sae)
    check_sae_fits(sae, model)
    if index is not None and not fingerprint_matches(index.metadata.get("sae_fingerprint", ""), sae):
        raise IncompatibleSAEError(
            "The latent index was built for another SAE than this one; build one with latent_index(model, sae, texts)."
        )
    order = vector.values.abs().argsort(descending=True)[:k]
    latents = vector.indices[order].tolist()
    values = vector.values[order].tolist()
    vocabulary = index.common_tokens(min_token_count) if index is not None and min_token_count else None
    lens = logit_lens(sae, model, latents, n_tokens, vocabulary=vocabulary)
    rows = []
    for latent, value, (promotes, suppresses) in zip(latents, values, lens):
        row = {
            "latent": latent,
            "value": value,
            "sign": "+" if value > 0 else "−",
            "promotes": promotes,
            "suppresses": suppresses,
        }
        if scores is not None:
            row["output_score"] = float(scores.loc[latent, "output_score"])
            row["kl_per_norm"] = float(scores.loc[latent, "kl_per_norm"])
        if index is not None:
            row["frequency"] = float(index.frequencies[latent])
            row["contexts"] = [mark_context(c) for c in index.top_contexts(latent, model.tokenizer, n=n_contexts)]
        url = neuronpedia_url(sae, latent)
        if url:
            row["neuronpedia"] = url
        rows.append(row)
    return pd.DataFrame(rows)


@torch.no_grad()
def trace_latents(model, sae, text: str, latents: list[int]) -> tuple[list[str], torch.Tensor]:
    """Each token of ``text`` and the activations ``[n_tokens, len(latents)]`` of ``latents`` on it.

    The BOS token is left out (as in training, its residual is an outlier).

    Args:
        model: the HookedTransformer ``sae`` reads.
        sae: the SAE.
        text: the text to trace.
        latents: latent ids (e.g. ``vec.indices.tolist()``).

    Example:
        >>> tokens, acts = sl.trace_latents(model, sae, "what a good day", vec.indices.tolist())
        >>> acts.shape == (len(tokens), len(vec.indices))
        True
    """
    check_sae_fits(sae, model)
    tokens = model.to_tokens(text)
    codes = sae_codes(model, sae, tokens)[0, 1:]
    return model.tokenizer.convert_ids_to_tokens(tokens[0, 1:].tolist()), codes[:, latents]
