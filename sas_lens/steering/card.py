"""A vector's card: what a reader needs to reuse it, as markdown beside its file and as rows of the HTML report.

Everything comes from the vector's provenance (model, hook, SAE with its fingerprint, the rule that chose
the latents with the settings that rule uses, the pairs, the gate and Δ); with a model, the card adds the
strength λ at which the vector costs a given next-token KL, and given a table of top latents
(``sl.top_latents(vec, sae, model)``, the logit lens through the final norm) it lists them;
measurements recorded in the provenance's ``evaluation`` field, if any, are listed too.

Example:
    >>> print(card_markdown(sentiment).splitlines()[0])
    # sentiment
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sas_lens.steering.vectors import SASVector


def describe_rule(vector) -> str:
    """How the vector was built, in words, with only the settings its rule uses.

    Args:
        vector: an SAS or dense vector.

    Example:
        >>> describe_rule(sentiment)
        'contrast: the top 6 latents by mean code difference'
    """
    extraction = vector.provenance.extraction
    fit = extraction.get("fit")
    fitted = f"; values fitted ({fit.get('objective', 'preference')})" if isinstance(fit, Mapping) else ""
    if not isinstance(vector, SASVector):
        return "dense: mean residual difference of the pairs (CAA)" + fitted
    if vector.provenance.topic:
        return f"topic alignment ({vector.provenance.topic.get('name', 'topic')})"
    selection = extraction.get("selection")
    top_k = extraction.get("top_k")
    rules = {
        "paper": lambda: (
            f"paper (Algorithm 1): τ {extraction.get('tau')}, mean over {extraction.get('mean_over')} "
            f"codes, kept where the mean code difference {extraction.get('comparison', '>=')} τ·max"
        ),
        "contrast": lambda: f"contrast: the top {top_k} latents by {extraction.get('rank_by', 'mean')} code difference",
        "decompose": lambda: f"decompose: the {top_k} decoder directions that best rebuild a dense vector",
        "attribution": lambda: f"attribution: the top {top_k} latents by first-order gain of the pairs' margin",
    }
    text = rules[selection]() if selection in rules else f"{selection or 'unrecorded rule'}"
    recorded = extraction.get("filters") or {}
    filters = [
        f"output score ≥ {recorded['min_output_score']} ({recorded['removed_by_output_score']} removed)"
        if "min_output_score" in recorded
        else "",
        f"density ≤ {recorded['max_density']} ({recorded['removed_by_density']} removed)"
        if "max_density" in recorded
        else "",
        f"no latent firing on BOS ({recorded['removed_by_bos']} removed)" if recorded.get("drop_bos") else "",
    ]
    filters = [f for f in filters if f]
    return text + (f" (candidates: {', '.join(filters)})" if filters else "") + fitted


def card_fields(vector) -> dict[str, str]:
    """The card's provenance rows, in reading order (fields the vector does not record are left out).

    Args:
        vector: an SAS or dense vector.

    Example:
        >>> card_fields(sentiment)["pairs"]
        'sentiment: 42 completion pairs (demo:sentiment)'
    """
    provenance = vector.provenance
    extraction = provenance.extraction
    pairs = extraction.get("pairs") or {}
    fields: dict[str, Any] = {
        "model": provenance.model_name,
        "hook": provenance.hook_name,
        "rule": describe_rule(vector),
        "pairs": (
            f"{pairs.get('name')}: {pairs.get('n')} {pairs.get('kind', '')} pairs ({pairs.get('source')})".replace(
                "  ", " "
            )
            if pairs
            else None
        ),
        "read": extraction.get("read"),
        "prompt style": extraction.get("prompt_style"),
    }
    if isinstance(vector, SASVector):
        sae = vector.sae_identity
        where = f"{sae.release}/{sae.id}" if sae.release else "unrecorded release"
        fields["SAE"] = f"{where}, {sae.d_sae} latents" + (f", {sae.architecture}" if sae.architecture else "")
        fields["SAE fingerprint"] = sae.fingerprint
        fields["latents"] = str(len(vector))
        fields["applied"] = (
            "through the SAE's σ (gate 'sae', Algorithm 2)" if vector.gate == "sae" else "decoded as is (gate 'none')"
        ) + (", SAE error Δ kept" if vector.delta else ", SAE error Δ dropped")
    else:
        fields["norm"] = f"{float(vector.vector.norm()):.4g}"
    fields["sas_lens"] = provenance.sas_lens_version
    return {key: str(value) for key, value in fields.items() if value is not None}


def card_markdown(
    vector,
    *,
    model=None,
    sae=None,
    matched_kl: float | None = 0.1,
    prompts: Sequence[str] | None = None,
    latents=None,
) -> str:
    """The card as markdown: provenance rows; with ``model``, λ at ``matched_kl``; with ``latents``, the top latents.

    Args:
        vector: an SAS or dense vector.
        model: the model it steers (for λ at matched KL).
        sae: the SAE of an SAS vector.
        matched_kl: the mean next-token KL whose λ is reported (``None``: skip the search).
        prompts: the prompts that KL is measured on (default: 16 of the reference prompts).
        latents: a :func:`~sas_lens.analysis.attribution.top_latents` table to list.

    Example:
        >>> text = card_markdown(sentiment, model=model, sae=sae, latents=sl.top_latents(sentiment, sae, model, k=3))
        >>> "| latent |" in text and "λ at next-token KL 0.1" in text
        True
    """
    lines = [f"# {vector.name}", "", "| field | value |", "| --- | --- |"]
    lines += [f"| {key} | {_cell(value)} |" for key, value in card_fields(vector).items()]
    if model is not None and matched_kl is not None:
        lines.append(
            f"| λ at next-token KL {matched_kl:g} | {_matched_lambda(model, vector, sae, matched_kl, prompts)} |"
        )
    for key, value in (vector.provenance.extra.get("evaluation") or {}).items():
        lines.append(f"| {_cell(key)} | {_cell(value)} |")
    if latents is not None:
        lines += ["", "Top latents (logit lens through the final norm):", ""]
        lines += ["| latent | value | promotes | suppresses |", "| --- | --- | --- | --- |"]
        for row in latents.itertuples():
            promotes, suppresses = (", ".join(map(repr, tokens)) for tokens in (row.promotes, row.suppresses))
            lines.append(f"| {row.latent} | {row.value:+.4g} | {_cell(promotes)} | {_cell(suppresses)} |")
    return "\n".join(lines) + "\n"


def _matched_lambda(model, vector, sae, kl: float, prompts) -> str:
    from sas_lens.errors import StrengthNotReachedError
    from sas_lens.loading.prompts import reference_prompts
    from sas_lens.steering.strength import strength_for_kl

    prompts = list(prompts) if prompts is not None else reference_prompts()[:16]
    try:
        plus, minus = (strength_for_kl(model, vector, kl, prompts, sae=sae, sign=s, high=4096.0) for s in (1.0, -1.0))
    except StrengthNotReachedError as err:
        return f"not reached ({err})"
    return f"+{plus:.4g} / {minus:.4g} (on {len(prompts)} prompts)"


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")
