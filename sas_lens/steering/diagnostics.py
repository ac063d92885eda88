"""Why Algorithm 1 kept or dropped each latent: frequencies and means per side, and a sentence on the outcome.

Every latent active on at least one side gets a row: its firing frequency and mean code on
the positive and the negative side, and its fate — ``kept +`` / ``kept −`` (reached τ on one
side only), ``common`` (reached τ on both sides: step 5 removes it), or ``below τ`` (on both
sides). A vector that comes out empty or tiny gets a sentence saying which of these emptied it.

Example:
    >>> pos = torch.tensor([[1.0, 2.0, 0.0], [1.0, 0.0, 0.0]])
    >>> neg = torch.tensor([[1.0, 0.0, 3.0], [0.0, 0.0, 0.0]])
    >>> d = diagnose_codes(pos, neg, tau=0.5)
    >>> d.table["status"].tolist()
    ['common', 'kept +', 'kept −']
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

import torch

from sas_lens.steering.selection import combine_sides, side_statistics
from sas_lens.typing import Float, Tensor

SMALL_VECTOR = 8  # fewer kept latents than this gets a sentence on why, and what to try


@dataclass(frozen=True, eq=False)
class SelectionDiagnostics:
    """Per-latent record of Algorithm 1 on one pair set (see the module docstring).

    Attributes:
        table: one row per latent active on either side, indexed by latent: ``freq_pos, freq_neg,
            mean_pos, mean_neg, status, value`` (the vector's value; 0 unless kept).
        tau: the frequency filter used.
        n_rows: examples (rows) on the positive and on the negative side.
        rule: the selection rule that made the vector (``"paper"``: Algorithm 1 as written).
    """

    table: Any  # pandas.DataFrame
    tau: float
    n_rows: tuple[int, int]
    rule: str = "paper"

    @property
    def n_kept(self) -> int:
        return int(self.table["status"].str.startswith("kept").sum())

    def summary(self) -> str:
        """One sentence: how many latents were kept, and, for an empty or tiny vector, why and what to try."""
        counts = self.table["status"].value_counts()
        paper = self.table.get("paper_status", self.table["status"])
        reached_pos = int(paper.isin(["kept +", "common"]).sum())
        reached_neg = int(paper.isin(["kept −", "common"]).sum())
        common = int((paper == "common").sum())
        gap = float((self.table["freq_pos"] - self.table["freq_neg"]).abs().max()) if len(self.table) else 0.0
        rule = "" if self.rule == "paper" else f" chosen by the {self.rule} rule"
        sentence = (
            f"{self.n_kept} latents ({int(counts.get('kept +', 0))} +, {int(counts.get('kept −', 0))} −)"
            f"{rule} from {self.n_rows[0]} + {self.n_rows[1]} rows; at τ = {self.tau:g}, "
            f"{reached_pos} latents reached τ on the positive side and {reached_neg} on the negative "
            f"side, {common} of them on both (removed as common); the largest frequency difference "
            f"between the sides is {gap:.2f}."
        )
        if self.n_kept < SMALL_VECTOR and self.rule == "paper":
            sentence += (
                " Few latents fire on one side only: try a lower τ, or more varied examples; "
                "the paper's rule drops every latent that reaches τ on both sides, however unequally."
            )
        elif self.n_kept < SMALL_VECTOR:
            sentence += (
                f" Only {len(self.table)} latents fire on either side at all: the SAE encodes few latents "
                "of these rows (a mean over a long completion lies below most JumpReLU thresholds); "
                "try read='token_mean', which encodes every token first."
            )
        return sentence

    def figure(self):
        """Frequency on the positive side against the negative side, the τ lines drawn, coloured by status."""
        import plotly.graph_objects as go

        fig = go.Figure()
        for status, group in self.table.groupby("status", sort=True):
            fig.add_trace(
                go.Scattergl(
                    x=group["freq_pos"],
                    y=group["freq_neg"],
                    mode="markers",
                    name=f"{status} ({len(group)})",
                    text=[f"latent {latent}, value {value:+.3g}" for latent, value in zip(group.index, group["value"])],
                    hoverinfo="text+x+y",
                    marker=dict(size=6, opacity=0.7),
                )
            )
        for line in (dict(x0=self.tau, x1=self.tau, y0=0, y1=1), dict(x0=0, x1=1, y0=self.tau, y1=self.tau)):
            fig.add_shape(type="line", line=dict(dash="dash", color="grey"), **line)
        fig.update_layout(
            title=f"Algorithm 1's frequency filter (τ = {self.tau:g})",
            xaxis_title="firing frequency, positive side",
            yaxis_title="firing frequency, negative side",
            xaxis_range=[-0.02, 1.02],
            yaxis_range=[-0.02, 1.02],
            template="plotly_white",
        )
        return fig

    def _repr_html_(self) -> str:
        return f"<p>{html.escape(self.summary())}</p>"

    def __repr__(self) -> str:
        return f"SelectionDiagnostics({self.summary()!r})"


def diagnose_codes(
    positive: Float[Tensor, "n_pos d_sae"],
    negative: Float[Tensor, "n_neg d_sae"],
    *,
    tau: float = 0.7,
    mean_over: str = "all",
    strict: bool = False,
    chosen: Float[Tensor, " d_sae"] | None = None,
    rule: str = "paper",
) -> SelectionDiagnostics:
    """The :class:`SelectionDiagnostics` of Algorithm 1 on these codes, with the same settings as the vector.

    Args:
        positive, negative: SAE codes of each side's examples.
        tau, mean_over, strict: as for :func:`~sas_lens.steering.build_vectors.sas_from_codes`.
        chosen: the vector another selection rule made from these codes (``None``: the paper's rule);
            its latents are ``kept``, the others ``not chosen``, and the paper's verdict is in ``paper_status``.
        rule: the name of that rule, for the summary.

    Example:
        >>> d = diagnose_codes(torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0]]), tau=0.5)
        >>> d.n_kept, d.table["status"].tolist()
        (0, ['common'])
    """
    import pandas as pd

    freq_pos, kept_pos, mean_pos = side_statistics(positive.float(), tau, mean_over=mean_over, strict=strict)
    freq_neg, kept_neg, mean_neg = side_statistics(negative.float(), tau, mean_over=mean_over, strict=strict)
    # Every latent that fires, and every latent a rule chose (decompose may choose latents that never fire here).
    listed = (freq_pos > 0) | (freq_neg > 0)
    seen = torch.nonzero(listed if chosen is None else listed | (chosen != 0)).squeeze(-1)
    common = kept_pos & kept_neg
    value = combine_sides(kept_pos, mean_pos, kept_neg, mean_neg)
    paper = [
        ("common" if c else "kept +" if p else "kept −" if n else "below τ")
        for p, n, c in zip(kept_pos[seen].tolist(), kept_neg[seen].tolist(), common[seen].tolist())
    ]
    columns = {
        "freq_pos": freq_pos[seen].tolist(),
        "freq_neg": freq_neg[seen].tolist(),
        "mean_pos": mean_pos[seen].tolist(),
        "mean_neg": mean_neg[seen].tolist(),
    }
    if chosen is None:
        columns.update(status=paper, value=value[seen].tolist())
    else:
        picked = chosen[seen]
        columns.update(
            status=["kept +" if v > 0 else "kept −" if v < 0 else "not chosen" for v in picked.tolist()],
            value=picked.tolist(),
            paper_status=paper,
        )
    table = pd.DataFrame(columns, index=pd.Index(seen.tolist(), name="latent"))
    return SelectionDiagnostics(table, tau, (positive.shape[0], negative.shape[0]), rule)


@torch.no_grad()
def gated_share(model, sae, vector, lams, texts: list[str], *, by: str = "count") -> dict[float, float]:
    """How much of a vector's edit σ turns into nothing, on ``texts``, at each λ.

    Algorithm 2 passes ``f(a) + λv`` through the SAE's own σ: with JumpReLU, a latent that is
    off switches on only where ``λ·v`` exceeds its threshold θ, and lowering a latent that is
    off changes nothing. ``by="count"``: the share of (token, support latent) edits that are
    exactly 0; ``by="norm"``: ``1 − ‖δ‖ / ‖λ·v·W_dec‖`` averaged over tokens, the share of the
    vector's decoded size that does not reach the residual. A vector applied with ``gate="none"``
    bypasses σ: nothing of it is gated off.

    Args:
        model: the HookedTransformer ``sae`` reads.
        sae: the SAE the vector was built on.
        vector: an SAS vector.
        lams: the strengths to measure.
        texts: the texts whose tokens are steered (BOS and padding left out).
        by: ``"count"`` or ``"norm"`` (see above).

    Returns:
        ``{λ: share gated off}``.

    Example:
        >>> shares = gated_share(model, sae, vec, [1.0, 4.0], ["the movie was"])
        >>> sorted(shares) == [1.0, 4.0] and all(0 <= s <= 1 for s in shares.values())
        True
    """
    from sas_lens.loading.activations import sae_codes
    from sas_lens.loading.prompts import tokenize_with_spans

    tokens, attention, spans = tokenize_with_spans(model.tokenizer, texts, [(0, len(t)) for t in texts])
    codes = sae_codes(model, sae, tokens, attention)[spans][:, vector.indices]
    threshold = sae.threshold.detach().float().cpu()[vector.indices] if sae.cfg.architecture() == "jumprelu" else 0.0
    if by not in ("count", "norm"):
        raise ValueError(f"by must be 'count' or 'norm', got {by!r}.")
    if getattr(vector, "gate", "sae") == "none":
        return {float(lam): 0.0 for lam in lams}
    decoder = sae.W_dec.detach().float().cpu()[vector.indices]
    shares = {}
    for lam in lams:
        shifted = codes + lam * vector.values
        change = shifted.relu() * (shifted > threshold) - codes
        if by == "count":
            shares[float(lam)] = float((change == 0).float().mean())
        else:
            intended = float((lam * vector.values @ decoder).norm())
            reached = (change @ decoder).norm(dim=-1).mean()
            shares[float(lam)] = float(1 - reached / intended) if intended else 0.0
    return shares
