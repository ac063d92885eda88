"""Topic alignment: score every SAE latent against example texts of a topic, then steer toward it.

Scoring (DESIGN §4, after "Enabling Sparse Autoencoders for Topic Alignment"):

1. run a fixed reference prompt set R through the model and SAE; ``w[r, c]`` summarises
   latent c's activation over prompt r's tokens (BOS excluded). ``summary="avg"`` (the
   original's default): the latent's activation sum divided by the prompt's total activation
   over all latents; ``"max"``: its largest activation; ``"counts"``: the tokens it fires on;
   ``"token_mean"``: its mean over the tokens;
2. ``d²(r) = 2 − 2·max_a cos(e(r), e(a))``: squared distance between the sentence
   embedding of r and of its nearest alignment text (all-MiniLM-L6-v2, normalised);
3. ``score(c) = Σ_r w[r, c]·d²(r) / Σ_r w[r, c]``, min–max normalised over the latents
   that fire on R and flipped, so 1 is most aligned; latents that never fire score 0
   (the original code's NaN from 0/0 spoiled the min and max, hence every score).

Steering, through the same ``steer``/``generate`` as behaviour vectors:

- ``alignment.vector(n_latents, min_prompts=5)``: "amplify" (ours) — an SAS vector that
  adds ``score(c)·m(c)`` to the top aligned latents (``m(c)``: their mean activation where
  active on R), applied with the Δ correction, so strength 0 is the unsteered model;
  it composes with behaviour vectors and runs with the KV cache. It only picks latents
  that fire on at least ``min_prompts`` reference prompts: a latent firing on a single
  prompt near the topic gets the top score (1.0) from that one prompt, and such latents
  fill the original's top list (on the shipped 16k SAE, the medicine set: 60 of the top
  64 fire on one or two of the 150 prompts, with no topical logit-lens tokens).
- ``alignment.swap(k)``, ``alignment.clamp()``, ``alignment.weight()`` (:mod:`sas_lens.topic.swap`): the
  original's reconstructions, the SAE's error dropped; strength λ ∈ [0, 1] blends
  ``(1 − λ)·a + λ·reconstruction(a)``.

Example:
    >>> weights = torch.tensor([[1.0, 0.0, 2.0], [3.0, 0.0, 2.0]])   # 2 reference prompts × 3 latents
    >>> latent_scores(weights, torch.tensor([0.0, 2.0]))             # latent 1 never fires: 0
    tensor([0., 0., 1.])
    >>> topic = topic_scores(model, sae, ["The patient was given antibiotics.", "The nurse took his pulse."],
    ...                      reference_prompts()[:24])
    >>> len(sl.generate(model, ["Tell me about"], steering={topic.vector(4): 4.0}, sae=sae, max_new_tokens=4))
    1
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from sas_lens.errors import DataError
from sas_lens.loading.activations import sae_codes
from sas_lens.loading.prompts import reference_prompts
from sas_lens.loading.saes import (
    check_sae_fits,
    hook_layer,
    sae_fingerprint,
    sae_hook_name,
)
from sas_lens.steering.provenance import SAEIdentity
from sas_lens.steering.vectors import SASVector, read_with_header, save_with_header
from sas_lens.typing import Float, Tensor

if TYPE_CHECKING:  # topic.swap imports this module
    from sas_lens.topic.swap import TopicSwap

_FORMAT = "sas_lens.topic/1"


def demo_topics() -> list[str]:
    """Names of the topic text sets shipped for the demo (``demo_topic_texts(name)``).

    Example:
        >>> demo_topics()
        ['business', 'medicine', 'sports']
    """
    folder = resources.files("sas_lens") / "data" / "topics"
    return sorted(p.name[: -len(".txt")] for p in folder.iterdir() if p.name.endswith(".txt"))


def demo_topic_texts(name: str) -> list[str]:
    """A shipped topic text set (15 sentences written for sas_lens).

    Args:
        name: one of :func:`demo_topics` (``"medicine"``, ``"sports"``, ``"business"``).

    Example:
        >>> len(demo_topic_texts("medicine"))
        15
    """
    from sas_lens.errors import suggest

    if name not in demo_topics():
        raise DataError(f"No demo topic {name!r}.{suggest(name, demo_topics())} Available: {demo_topics()}.")
    text = (resources.files("sas_lens") / "data" / "topics" / f"{name}.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def latent_scores(
    weights: Float[Tensor, "n_ref d_sae"], sq_distances: Float[Tensor, " n_ref"]
) -> Float[Tensor, " d_sae"]:
    """Step 3: activation-weighted mean of ``d²`` per latent, min–max normalised and flipped; 0 if never active.

    Args:
        weights: each reference prompt's activation of each latent.
        sq_distances: each reference prompt's ``d²`` to the topic.

    Example:
        >>> latent_scores(torch.tensor([[1.0, 0.0, 2.0], [3.0, 0.0, 2.0]]), torch.tensor([0.0, 2.0]))
        tensor([0., 0., 1.])
    """
    weights = weights.double().clamp_min(0)
    total = weights.sum(0)
    fired = total > 0
    scores = torch.zeros(weights.shape[1], dtype=torch.float64)
    if not fired.any():
        return scores.float()
    mean_distance = (weights[:, fired] * sq_distances.double()[:, None]).sum(0) / total[fired]
    low, high = mean_distance.min(), mean_distance.max()
    scores[fired] = (high - mean_distance) / (high - low) if high > low else 1.0
    return scores.float()


def squared_distances(
    reference: Float[Tensor, "n_ref dim"], alignment: Float[Tensor, "n_align dim"]
) -> Float[Tensor, " n_ref"]:
    """Step 2: ``2 − 2·max_a cos`` between normalised embeddings.

    Args:
        reference: normalised embeddings of the reference prompts.
        alignment: normalised embeddings of the topic's texts.

    Example:
        >>> squared_distances(torch.eye(2), torch.tensor([[1.0, 0.0]]))
        tensor([0., 2.])
    """
    return 2 - 2 * (reference @ alignment.T).max(dim=1).values


SUMMARIES = ("avg", "max", "counts", "token_mean")


def summarise_prompt(codes: Float[Tensor, "pos d_sae"]) -> dict[str, Tensor]:
    """Every per-prompt summary of one prompt's codes (its tokens after BOS, no padding): ``{summary: [d_sae]}``.

    Args:
        codes: the SAE's codes of the prompt's tokens.

    Example:
        >>> out = summarise_prompt(torch.tensor([[1.0, 0.0], [3.0, 4.0]]))
        >>> out["avg"], out["max"], out["counts"], out["token_mean"]
        (tensor([0.5000, 0.5000]), tensor([3., 4.]), tensor([2., 1.]), tensor([2., 2.]))
    """
    codes = codes.float()
    total = codes.sum(0)
    return {
        "avg": total / total.sum().clamp_min(1e-12),
        "max": codes.max(0).values if len(codes) else total,
        "counts": (codes > 0).sum(0).float(),
        "token_mean": total / max(len(codes), 1),
    }


@torch.no_grad()
def reference_activations(
    model, sae, prompts: list[str], batch_size: int = 8, summary: str = "token_mean"
) -> Float[Tensor, "n_ref d_sae"]:
    """Step 1: each prompt's SAE codes over its tokens (BOS and padding excluded), summarised per latent.

    Args:
        model: the HookedTransformer ``sae`` reads.
        sae: the SAE.
        prompts: the reference prompts.
        batch_size: prompts per forward pass.
        summary: one of :data:`SUMMARIES` (see the module docstring).

    Example:
        >>> weights = reference_activations(model, sae, reference_prompts()[:8], summary="avg")
        >>> tuple(weights.shape) == (8, sae.cfg.d_sae)   # a row per reference prompt
        True
    """
    return _all_summaries(model, sae, prompts, batch_size)[_check_summary(summary)]


def _check_summary(summary: str) -> str:
    if summary not in SUMMARIES:
        raise ValueError(f"summary must be one of {SUMMARIES}, got {summary!r}.")
    return summary


@torch.no_grad()
def _all_summaries(model, sae, prompts: list[str], batch_size: int = 8) -> dict[str, Tensor]:
    from sas_lens.loading.prompts import tokenize_with_spans

    out = {name: torch.empty(len(prompts), sae.cfg.d_sae) for name in SUMMARIES}
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start : start + batch_size]
        tokens, attention, spans = tokenize_with_spans(model.tokenizer, batch, [(0, len(p)) for p in batch])
        codes = sae_codes(model, sae, tokens, attention)
        for i in range(len(batch)):
            for name, row in summarise_prompt(codes[i][spans[i].bool()]).items():
                out[name][start + i] = row
    return out


def _cached_reference_activations(model, sae, prompts: list[str]) -> tuple[dict[str, Tensor], bool]:
    """Every summary of the reference activations, cached on disk per (model, SAE, reference set), and whether
    they were cached."""
    from safetensors.torch import load_file, save_file

    from sas_lens.loading.models import cache_dir, model_fingerprint

    key = hashlib.sha256(
        json.dumps([model.cfg.model_name, model_fingerprint(model), sae_fingerprint(sae), prompts, SUMMARIES]).encode()
    )
    path = cache_dir() / "topic_references" / f"{key.hexdigest()[:16]}.safetensors"
    if path.exists():
        return load_file(path), True
    summaries = _all_summaries(model, sae, prompts)
    from sas_lens.loading.files import atomic_file

    with atomic_file(path) as staging:
        save_file({name: tensor.contiguous() for name, tensor in summaries.items()}, staging)
    return summaries, False


@dataclass(frozen=True, eq=False)
class TopicAlignment:
    """Per-latent alignment scores for one topic on one SAE, with provenance (like a vector)."""

    scores: Float[Tensor, " d_sae"]
    mean_activation: Float[Tensor, " d_sae"]  # where active on the reference set (for "amplify")
    metadata: dict[str, Any] = field(default_factory=dict)
    n_firing: Tensor | None = None  # how many reference prompts each latent fires on

    @property
    def name(self) -> str:
        return self.metadata.get("name", "topic")

    @property
    def d_sae(self) -> int:
        return int(self.scores.shape[0])

    def top(self, k: int = 10, min_prompts: int = 1) -> list[tuple[int, float]]:
        """The ``k`` most aligned latents and their scores, among those firing on ``min_prompts`` reference prompts."""
        scores = self.scores
        if min_prompts > 1 and self.n_firing is not None:
            scores = torch.where(self.n_firing >= min_prompts, scores, torch.tensor(-1.0))
        values, indices = scores.topk(min(k, self.d_sae))
        return [(latent, score) for latent, score in zip(indices.tolist(), values.tolist()) if score >= 0]

    def vector(self, n_latents: int = 64, name: str | None = None, *, min_prompts: int = 5) -> SASVector:
        """ "Amplify": an SAS vector adding ``score·mean activation`` to the ``n_latents`` most aligned latents.

        Only latents firing on at least ``min_prompts`` reference prompts are picked (see the module
        docstring); ``min_prompts=1`` picks by score alone, as the original does.
        """
        if n_latents < 1:
            raise ValueError(f"n_latents must be at least 1, got {n_latents}.")
        dense = torch.zeros(self.d_sae)
        for latent, score in self.top(n_latents, min_prompts=min_prompts):
            dense[latent] = score * float(self.mean_activation[latent])
        meta = {k: v for k, v in self.metadata.items() if k not in ("name", "alignment_texts")}
        return SASVector.from_dense(
            dense,
            {
                **meta,
                "name": name or self.name,
                "topic": {"mode": "amplify", "n_latents": n_latents, "min_prompts": min_prompts},
            },
        )

    @property
    def sae_identity(self) -> SAEIdentity:
        """The SAE these scores were computed on."""
        return SAEIdentity(self.d_sae, fingerprint=self.metadata.get("sae_fingerprint"))

    def swap(self, k: int = 32) -> "TopicSwap":
        """ "Swap" (the original method): per token, the pre-activations of the ``k`` latents of largest positive
        pre-activation × score, decoded (see :func:`~sas_lens.topic.swap.swap_reconstruction`)."""
        from sas_lens.topic.swap import TopicSwap

        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}.")
        return TopicSwap(self, "swap", k)

    def clamp(self, n_latents: int = 5, value: float = 10.0) -> "TopicSwap":
        """ "Clamp" (the original's baseline): the ``n_latents`` most aligned latents' codes raised by ``value``,
        decoded, error dropped."""
        from sas_lens.topic.swap import TopicSwap

        if n_latents < 1:
            raise ValueError(f"n_latents must be at least 1, got {n_latents}.")
        return TopicSwap(self, "clamp", n_latents, value)

    def weight(self) -> "TopicSwap":
        """ "Weight" (the original's baseline): the SAE's activation of pre-activation × score, decoded."""
        from sas_lens.topic.swap import TopicSwap

        return TopicSwap(self, "weight", 0)

    def save(self, path: str | Path) -> Path:
        """Write the scores and their provenance to one ``.safetensors`` file (like a vector)."""
        tensors = {"scores": self.scores, "mean_activation": self.mean_activation}
        if self.n_firing is not None:
            tensors["n_firing"] = self.n_firing
        return save_with_header(path, tensors, self.metadata, _FORMAT)

    @classmethod
    def load(cls, path: str | Path, *, sae=None) -> "TopicAlignment":
        """Read a file written by :meth:`save`; with ``sae``, refuse one scored on another SAE."""
        tensors, header = read_with_header(path, _FORMAT, "topic alignment")
        alignment = cls(tensors["scores"], tensors["mean_activation"], header, tensors.get("n_firing"))
        if sae is not None:
            alignment.sae_identity.check(
                sae, f"The topic alignment {alignment.name!r} (score it again with topic_scores(model, sae, texts))"
            )
        return alignment

    def __repr__(self) -> str:
        return f"TopicAlignment({self.name!r}, d_sae={self.d_sae}, top={self.top(3)})"

    def _repr_html_(self) -> str:
        import html

        counts = self.n_firing
        rows = "".join(
            f"<tr><td>{latent}</td><td>{score:.3f}</td><td>{int(counts[latent]) if counts is not None else '–'}</td>"
            f"<td>{float(self.mean_activation[latent]):.2f}</td></tr>"
            for latent, score in self.top(10)
        )
        coverage = self.metadata.get("coverage")
        about = (
            f"{self.metadata.get('n_alignment_texts', '?')} alignment texts, "
            f"{self.metadata.get('n_reference_prompts', '?')} reference prompts, summary "
            f"{self.metadata.get('summary', 'token_mean')!r}"
            + (f", coverage {coverage:.1%}" if coverage is not None else "")
        )
        return (
            f"<b>Topic {html.escape(self.name)!s}</b> ({html.escape(about)}; {self.d_sae} latents)"
            "<table><tr><th>latent</th><th>score</th><th>reference prompts firing</th>"
            f"<th>mean activation</th></tr>{rows}</table>"
        )


def topic_scores(
    model,
    sae,
    alignment_texts: list[str],
    reference: list[str] | None = None,
    *,
    name: str = "topic",
    embed_fn=None,
    summary: str = "avg",
) -> TopicAlignment:
    """Score every latent of ``sae`` for closeness to the topic of ``alignment_texts``.

    Args:
        model: the HookedTransformer ``sae`` reads.
        sae: the SAE whose latents are scored.
        alignment_texts: example texts of the topic.
        reference: the reference prompt set (default: :func:`reference_prompts`).
        name: the topic's name (recorded, and the default name of its vectors).
        embed_fn: texts → normalised embeddings (default: all-MiniLM-L6-v2).
        summary: how each reference prompt's activations are summarised per latent: ``"avg"`` (the
            original's: activation sum over the prompt's total activation), ``"max"``, ``"counts"``,
            ``"token_mean"`` (see the module docstring).

    Example:
        >>> topic = sl.topic_scores(model, sae, sl.demo_topic_texts("medicine"), reference_prompts()[:24],
        ...                         name="medicine")
        >>> topic.scores.shape[0] == sae.cfg.d_sae
        True
        >>> answer = sl.generate(model, ["Tell me about"], steering={topic.vector(4): 12.0}, sae=sae, max_new_tokens=4)
    """
    from sas_lens.loading.embeddings import embed

    alignment_texts = [t for t in alignment_texts if t and t.strip()]
    if not alignment_texts:
        raise DataError("topic_scores needs at least one non-empty alignment text.")
    check_sae_fits(sae, model)
    reference = reference or reference_prompts()
    embed_fn = embed_fn or embed
    started = time.perf_counter()
    summaries, reference_cached = _cached_reference_activations(model, sae, reference)
    distances = squared_distances(embed_fn(reference), embed_fn(alignment_texts))
    scores = latent_scores(summaries[_check_summary(summary)], distances)
    token_means = summaries["token_mean"]  # amplify's values are in code units whatever ranks the latents
    active = token_means > 0
    mean_activation = token_means.sum(0) / active.sum(0).clamp_min(1)
    hook = sae_hook_name(sae)
    metadata = {
        "name": name,
        "model_name": model.cfg.model_name,
        "hook_name": hook,
        "layer": hook_layer(hook),
        "sae_fingerprint": sae_fingerprint(sae),
        "d_sae": sae.cfg.d_sae,
        "n_alignment_texts": len(alignment_texts),
        "n_reference_prompts": len(reference),
        "alignment_texts": alignment_texts[:20],
        "scoring_s": round(time.perf_counter() - started, 3),
        "reference_cached": reference_cached,
        "summary": summary,
        "coverage": float(active.any(0).float().mean()),  # share of latents firing on the reference set
    }
    return TopicAlignment(scores, mean_activation.float(), metadata, active.sum(0))
