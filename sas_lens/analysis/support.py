"""How many latents a behaviour needs: a vector cut to its top k latents, steered at matched cost, judged.

For each support size k the vector keeps its k largest latents (by ``|value| · ‖W_dec row‖``,
the size of what each adds to the residual), is steered at the ±λ where the mean next-token
KL from the unsteered model on the prompts reaches ``target_kl``, and its continuations are
scored by ``judge`` (any ``texts → float``: a sentiment scorer, a topic similarity) and by
their perplexity under the unsteered model. The curve says how much of the effect the top
latents carry — the honest monosemanticity figure, since a vector can be short and carry
nothing.

Example:
    >>> table = support_curve(model, vec, vader_mean, prompts, sae=sae, sizes=(2, 4), max_new_tokens=3)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from sas_lens.errors import StrengthNotReachedError
from sas_lens.steering.fluency import fluency
from sas_lens.steering.generation import generate
from sas_lens.steering.strength import strength_for_kl
from sas_lens.steering.vectors import SASVector


def top_k_latents(vector: SASVector, sae, k: int) -> SASVector:
    """``vector`` cut to its ``k`` latents of largest ``|value| · ‖W_dec row‖``.

    Args:
        vector: an SAS vector.
        sae: its SAE (for the decoder norms).
        k: latents kept (all of them if the vector has fewer).

    Example:
        >>> len(top_k_latents(vec, sae, 2).indices)
        2
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}.")
    vector.sae_identity.check(sae, f"The vector {vector.name!r}")
    size = vector.values.abs() * sae.W_dec.detach().float().cpu()[vector.indices].norm(dim=-1)
    keep = size.topk(min(k, len(vector))).indices.sort().values
    provenance = vector.provenance.replace(name=f"{vector.name} (top {len(keep)})")
    return replace(
        vector, indices=vector.indices[keep], values=vector.values[keep], provenance=provenance, diagnostics=None
    )


def support_curve(
    model,
    vector: SASVector,
    judge: Callable[[list[str]], float],
    prompts: Sequence[str],
    *,
    sae,
    sizes: Sequence[int] = (4, 8, 16, 32, 64, 128, 256, 512),
    target_kl: float = 0.1,
    max_new_tokens: int = 24,
    high: float = 256.0,
    backend: str = "tl",
):
    """The judge's score and the fluency cost, at matched KL, for the vector cut to each support size.

    Args:
        model: the HookedTransformer ``sae`` reads.
        vector: an SAS vector built on ``sae``.
        judge: scores a list of continuations (higher: more of the behaviour).
        prompts: the prompts steered (also the texts the KL is measured on).
        sae: the SAE.
        sizes: support sizes to try (sizes above the vector's length are tried once, as the whole vector).
        target_kl: the mean next-token KL at which every cut vector is steered, both ways.
        max_new_tokens: tokens per continuation.
        high: the largest ``|λ|`` the KL search tries.
        backend: generation backend (``"hf"`` is faster on the embedded model).

    Returns:
        A DataFrame: ``k, sign, lam, judge, perplexity, distinct_2`` (``lam`` NaN where the KL was not
        reached), with an unsteered row (``k = 0``).

    Example:
        >>> table = support_curve(model, vec, vader_mean, prompts, sae=sae, sizes=(2, 4), max_new_tokens=3)
        >>> sorted(set(table["k"]))   # both signs of each size, and the unsteered row
        [0, 2, 4]
    """
    import pandas as pd

    prompts = list(prompts)

    def row(k, sign, lam, steering):
        texts = generate(
            model,
            prompts,
            steering=steering,
            sae=sae,
            max_new_tokens=max_new_tokens,
            backend=backend,
            batch_size=len(prompts),
        )
        return {"k": k, "sign": sign, "lam": lam, "judge": float(judge(texts)), **fluency(model, prompts, texts)}

    rows = [row(0, 0.0, 0.0, {})]
    for k in sorted({min(k, len(vector)) for k in sizes}):
        cut = top_k_latents(vector, sae, k)
        for sign in (-1.0, 1.0):
            try:
                lam = strength_for_kl(model, cut, target_kl, prompts, sae=sae, sign=sign, high=high)
            except StrengthNotReachedError:  # this support cannot move the model that far: no row to compare
                rows.append(
                    {
                        "k": k,
                        "sign": sign,
                        "lam": float("nan"),
                        "judge": float("nan"),
                        "perplexity": None,
                        "distinct_2": None,
                    }
                )
                continue
            rows.append(row(k, sign, lam, {cut: lam}))
    return pd.DataFrame(rows)


def support_curve_figure(table, title: str = "Effect against support size, at matched KL"):
    """The judge's score against support size, one line per direction, the unsteered score dashed.

    Args:
        table: from :func:`support_curve`.
        title: the figure's title.

    Example:
        >>> figure = support_curve_figure(support_curve(model, vec, vader_mean, prompts, sae=sae, sizes=(2,), max_new_tokens=3))
    """
    import plotly.graph_objects as go

    fig = go.Figure()
    unsteered = float(table.loc[table["k"] == 0, "judge"].iloc[0])
    for sign, name in ((1.0, "+λ"), (-1.0, "−λ")):
        part = table[table["sign"] == sign]
        fig.add_trace(
            go.Scatter(
                x=part["k"],
                y=part["judge"],
                mode="lines+markers",
                name=name,
                text=[f"λ = {lam:.3g}, perplexity {ppl}" for lam, ppl in zip(part["lam"], part["perplexity"])],
            )
        )
    fig.add_hline(y=unsteered, line_dash="dash", annotation_text="unsteered")
    fig.update_layout(
        title=title,
        xaxis_type="log",
        xaxis_title="latents kept (top by decoded size)",
        yaxis_title="judge",
        template="plotly_white",
    )
    return fig
