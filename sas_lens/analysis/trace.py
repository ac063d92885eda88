"""Token-by-token tracing: what each vector reads in a text, and what a steering changes, readable at a glance.

``sl.trace(model, sae, text, vectors=[...], steering=None)`` returns a :class:`Trace`. In a notebook it
shows one row per vector with the text's tokens coloured by how strongly that vector's latents fire
there (for an SAS vector: ``Σᵢ codeᵢ·|vᵢ|`` over its latents; for a dense vector: the residual's
projection on its direction), and a hover per token listing the top latents (id, activation, the
vector's value). With a steering, one more row: each token coloured by the KL divergence between the
unsteered and steered next-token distributions there, the hover naming the top next token before and
after. The HTML is self-contained (inline CSS, no script, no CDN), so it works offline, in JupyterLab and
classic notebooks, and in the HTML report; ``.to_html(path)`` writes it as a page and ``.figure()`` gives
a plotly heatmap.

Example:
    >>> t = sl.trace(model, sae, "the movie was good", vectors=[vec, dense], steering={vec: 8.0})
    >>> len(t.vectors), len(t.kl) == len(t.tokens)   # a row per vector, and the steering's KL per token
    (2, True)
    >>> t.to_html("trace.html").name   # in a notebook, ``t`` alone shows the coloured tokens
    'trace.html'
"""

from __future__ import annotations

import html
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from sas_lens.loading.activations import activations_at
from sas_lens.loading.saes import check_sae_fits, sae_hook_name
from sas_lens.steering.vectors import SASVector

_IDS = itertools.count()
_STYLE = """
.{id} {{ font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 13px; line-height: 2.1; }}
.{id} .row {{ margin: 2px 0; }}
.{id} .label {{ display: inline-block; min-width: 11em; color: #444; font-family: sans-serif; }}
.{id} .tok {{ position: relative; padding: 1px 1px; border-radius: 3px; white-space: pre; cursor: default; }}
.{id} .tip {{ display: none; position: absolute; left: 0; top: 1.9em; z-index: 10; background: #fff;
  border: 1px solid #999; padding: 4px 6px; white-space: pre; font-size: 12px; line-height: 1.4;
  color: #111; box-shadow: 0 2px 6px rgba(0,0,0,.2); }}
.{id} .tok:hover .tip {{ display: block; }}
"""


@dataclass
class VectorTrace:
    """One vector's reading of the text: per-token intensity, and per token its top latents."""

    name: str
    intensity: torch.Tensor  # [n_tokens]
    top: list[list[tuple[int, float, float]]] = field(default_factory=list)  # per token: (latent, activation, value)


@dataclass
class Trace:
    """What vectors read in a text, token by token, and what a steering changes (see the module docstring).

    Attributes:
        text: the traced text.
        tokens: its tokens as strings (BOS left out).
        vectors: one :class:`VectorTrace` per vector.
        steering: a label of the steering, or ``None``.
        before, after: the top next token at each position, unsteered and steered.
        kl: the KL divergence (nats) of the steered next-token distribution from the unsteered one.
    """

    text: str
    tokens: list[str]
    vectors: list[VectorTrace]
    steering: str | None = None
    before: list[str] = field(default_factory=list)
    after: list[str] = field(default_factory=list)
    kl: list[float] = field(default_factory=list)

    def _rows(self) -> list[str]:
        rows = []
        for vec in self.vectors:
            scale = float(vec.intensity.abs().max()) or 1.0
            cells = []
            for token, value, top in zip(self.tokens, vec.intensity.tolist(), vec.top):
                tip = "\n".join(f"latent {latent}: activation {act:.2f}, value {val:+.3f}" for latent, act, val in top)
                tip = tip or "no latent of this vector fires here"
                cells.append(_token(token, value / scale, f"{vec.name}: {value:.3g}\n{tip}"))
            rows.append(f'<div class="row"><span class="label">{html.escape(vec.name)}</span>{"".join(cells)}</div>')
        if self.steering is not None:
            top_kl = max(self.kl, default=0.0) or 1.0
            cells = [
                _token(token, kl / top_kl, f"next token: {before!r} → {after!r}\nKL {kl:.4f} nats", hue="kl")
                for token, before, after, kl in zip(self.tokens, self.before, self.after, self.kl)
            ]
            label = f"steering: KL per token ({html.escape(self.steering)})"
            rows.append(f'<div class="row"><span class="label">{label}</span>{"".join(cells)}</div>')
        return rows

    def _repr_html_(self) -> str:
        scope = f"sas-trace-{next(_IDS)}"
        return (
            f'<style>{_STYLE.format(id=scope)}</style><div class="{scope} sas-trace">'
            + "".join(self._rows())
            + "</div>"
        )

    def to_html(self, path: str | Path) -> Path:
        """Write the trace as a standalone HTML page (no scripts, no network).

        Args:
            path: the file to write.

        Example:
            >>> t = sl.trace(model, sae, "the movie was good", vectors=[vec])
            >>> "<script" in t.to_html("trace.html").read_text()
            False
        """
        path = Path(path)
        path.write_text(
            f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>sas_lens trace</title></head>'
            f"<body><p>{html.escape(self.text)}</p>{self._repr_html_()}</body></html>",
            encoding="utf-8",
        )
        return path

    def figure(self):
        """A plotly heatmap of the intensities (vectors × tokens; with a steering, its KL as a last row).

        Example:
            >>> t = sl.trace(model, sae, "the movie was good", vectors=[vec], steering={vec: 8.0})
            >>> len(t.figure().data[0].z) == len(t.vectors) + 1   # a row per vector, then the KL
            True
        """
        import plotly.graph_objects as go

        from sas_lens.analysis.figures import _LAYOUT

        rows = [
            (vec.name, [v / (float(vec.intensity.abs().max()) or 1.0) for v in vec.intensity.tolist()])
            for vec in self.vectors
        ]
        if self.steering is not None:
            top = max(self.kl, default=0.0) or 1.0
            rows.append(("steering KL", [k / top for k in self.kl]))
        x = [f"{i}:{t}" for i, t in enumerate(self.tokens)]
        fig = go.Figure(
            go.Heatmap(z=[r for _, r in rows], x=x, y=[n for n, _ in rows], colorscale="RdBu", zmid=0, zmin=-1, zmax=1)
        )
        fig.update_layout(title="Trace (each row scaled to its largest value)", **_LAYOUT)
        return fig


def _token(token: str, level: float, tip: str, hue: str = "vector") -> str:
    level = max(-1.0, min(1.0, level))
    if hue == "kl":
        colour = f"rgba(230, 120, 0, {abs(level) * 0.8:.3f})"
    elif level >= 0:
        colour = f"rgba(220, 40, 40, {level * 0.8:.3f})"
    else:
        colour = f"rgba(40, 90, 220, {-level * 0.8:.3f})"
    shown = html.escape(token.replace("\n", "⏎"))
    return f'<span class="tok" style="background:{colour}">{shown}<span class="tip">{html.escape(tip)}</span></span>'


@torch.no_grad()
def trace(model, sae, text: str, vectors: Sequence = (), steering: Mapping | None = None, *, top: int = 5) -> Trace:
    """Trace ``text``: how strongly each vector's latents fire on each token, and what ``steering`` changes.

    Args:
        model: the HookedTransformer ``sae`` reads.
        sae: the SAE of the SAS vectors (its hook is where they are read).
        text: the text to trace.
        vectors: SAS vectors (read through ``sae``) and dense vectors (the residual's projection on them).
        steering: ``{vector: λ}`` to compare against the unsteered model, token by token.
        top: latents listed per token in the hover.

    Example:
        >>> t = sl.trace(model, sae, "the movie was good", vectors=[vec], steering={vec: 8.0})
        >>> max(t.kl) > 0   # the steering changes the next-token distribution somewhere
        True
    """
    from sas_lens.steering.engine import steer

    check_sae_fits(sae, model)
    tokens = model.to_tokens(text)
    strings = model.to_str_tokens(tokens[0])[1:]
    residual = activations_at(model, sae_hook_name(sae), tokens)[0].float()
    codes = sae.encode(residual.to(sae.device, sae.dtype)).float().cpu()[1:]
    traced = []
    for vector in vectors:
        if isinstance(vector, SASVector):
            vector.sae_identity.check(sae, f"The vector {vector.name!r}")
            acts = codes[:, vector.indices]
            intensity = (acts * vector.values.abs()).sum(-1)
            tops = []
            for row in acts:
                order = row.argsort(descending=True)[:top]
                tops.append(
                    [(int(vector.indices[i]), float(row[i]), float(vector.values[i])) for i in order if row[i] > 0]
                )
            traced.append(VectorTrace(vector.name, intensity, tops))
        else:
            layer_residual = activations_at(model, vector.hook_name, tokens)[0, 1:].float().cpu()
            direction = vector.vector.float().cpu()
            traced.append(
                VectorTrace(
                    vector.name, layer_residual @ (direction / direction.norm().clamp_min(1e-12)), [[] for _ in strings]
                )
            )
    out = Trace(text, list(strings), traced)
    if steering:
        before = model(tokens)[0, 1:].float().log_softmax(-1)
        with steer(model, steering, sae=sae):
            after = model(tokens)[0, 1:].float().log_softmax(-1)
        out.steering = ", ".join(f"{getattr(k, 'name', k)} × {lam:g}" for k, lam in steering.items())
        out.before = model.to_str_tokens(before.argmax(-1))
        out.after = model.to_str_tokens(after.argmax(-1))
        out.kl = (before.exp() * (before - after)).sum(-1).clamp_min(0).tolist()
    return out
