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

from sas_lens.typing import Float, Tensor

SMALL_VECTOR = 8  # fewer kept latents than this gets a sentence on why, and what to try


def side_statistics(codes: Float[Tensor, "n d_sae"], tau: float, *, mean_over: str = "all",
                    strict: bool = False) -> tuple[Tensor, Tensor, Tensor]:
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


@dataclass(frozen=True, eq=False)
class SelectionDiagnostics:
    """Per-latent record of Algorithm 1 on one pair set (see the module docstring).

    Attributes:
        table: one row per latent active on either side, indexed by latent: ``freq_pos, freq_neg,
            mean_pos, mean_neg, status, value`` (the vector's value; 0 unless kept).
        tau: the frequency filter used.
        n_rows: examples on the positive and on the negative side.
    """

    table: Any  # pandas.DataFrame
    tau: float
    n_rows: tuple[int, int]

    @property
    def n_kept(self) -> int:
        return int(self.table["status"].str.startswith("kept").sum())

    def summary(self) -> str:
        """One sentence: how many latents were kept, and, for an empty or tiny vector, why and what to try."""
        counts = self.table["status"].value_counts()
        reached_pos = int(self.table["status"].isin(["kept +", "common"]).sum())
        reached_neg = int(self.table["status"].isin(["kept −", "common"]).sum())
        common = int(counts.get("common", 0))
        gap = float((self.table["freq_pos"] - self.table["freq_neg"]).abs().max()) if len(self.table) else 0.0
        sentence = (f"{self.n_kept} latents ({int(counts.get('kept +', 0))} +, {int(counts.get('kept −', 0))} −) "
                    f"from {self.n_rows[0]} + {self.n_rows[1]} examples at τ = {self.tau:g}: "
                    f"{reached_pos} latents reached τ on the positive side and {reached_neg} on the negative "
                    f"side, {common} of them on both (removed as common); the largest frequency difference "
                    f"between the sides is {gap:.2f}.")
        if self.n_kept < SMALL_VECTOR:
            sentence += (" Few latents fire on one side only: try a lower τ, or more varied examples; "
                         "the paper's rule drops every latent that reaches τ on both sides, however unequally.")
        return sentence

    def figure(self):
        """Frequency on the positive side against the negative side, the τ lines drawn, coloured by status."""
        import plotly.graph_objects as go

        fig = go.Figure()
        for status, group in self.table.groupby("status", sort=True):
            fig.add_trace(go.Scattergl(
                x=group["freq_pos"], y=group["freq_neg"], mode="markers", name=f"{status} ({len(group)})",
                text=[f"latent {latent}, value {value:+.3g}" for latent, value in zip(group.index, group["value"])],
                hoverinfo="text+x+y", marker=dict(size=6, opacity=0.7)))
        for line in (dict(x0=self.tau, x1=self.tau, y0=0, y1=1), dict(x0=0, x1=1, y0=self.tau, y1=self.tau)):
            fig.add_shape(type="line", line=dict(dash="dash", color="grey"), **line)
        fig.update_layout(title=f"Algorithm 1's frequency filter (τ = {self.tau:g})",
                          xaxis_title="firing frequency, positive side", yaxis_title="firing frequency, negative side",
                          xaxis_range=[-0.02, 1.02], yaxis_range=[-0.02, 1.02], template="plotly_white")
        return fig

    def _repr_html_(self) -> str:
        return f"<p>{html.escape(self.summary())}</p>"

    def __repr__(self) -> str:
        return f"SelectionDiagnostics({self.summary()!r})"


def diagnose_codes(positive: Float[Tensor, "n_pos d_sae"], negative: Float[Tensor, "n_neg d_sae"], *,
                   tau: float = 0.7, mean_over: str = "all", strict: bool = False) -> SelectionDiagnostics:
    """The :class:`SelectionDiagnostics` of Algorithm 1 on these codes, with the same settings as the vector.

    Args:
        positive, negative: SAE codes of each side's examples.
        tau, mean_over, strict: as for :func:`~sas_lens.steering.build_vectors.sas_from_codes`.

    Example:
        >>> d = diagnose_codes(torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0]]), tau=0.5)
        >>> d.n_kept, d.table["status"].tolist()
        (0, ['common'])
    """
    import pandas as pd

    freq_pos, kept_pos, mean_pos = side_statistics(positive.float(), tau, mean_over=mean_over, strict=strict)
    freq_neg, kept_neg, mean_neg = side_statistics(negative.float(), tau, mean_over=mean_over, strict=strict)
    seen = torch.nonzero((freq_pos > 0) | (freq_neg > 0)).squeeze(-1)
    common = kept_pos & kept_neg
    value = combine_sides(kept_pos, mean_pos, kept_neg, mean_neg)
    status = [("common" if c else "kept +" if p else "kept −" if n else "below τ")
              for p, n, c in zip(kept_pos[seen].tolist(), kept_neg[seen].tolist(), common[seen].tolist())]
    table = pd.DataFrame({"freq_pos": freq_pos[seen].tolist(), "freq_neg": freq_neg[seen].tolist(),
                          "mean_pos": mean_pos[seen].tolist(), "mean_neg": mean_neg[seen].tolist(),
                          "status": status, "value": value[seen].tolist()},
                         index=pd.Index(seen.tolist(), name="latent"))
    return SelectionDiagnostics(table, tau, (positive.shape[0], negative.shape[0]))
