"""Measuring topic steering: does generation move toward the topic, at what fluency and time cost.

- :func:`topic_similarity`: cosine between each generation's sentence embedding and the
  centroid of the alignment texts' embeddings (:func:`topic_centroid`; all-MiniLM-L6-v2, normalised);
- :func:`generation_scores`: that similarity, perplexity under the unsteered model, distinct-2;
- :func:`finetune_on_texts`: the baseline the topic-alignment paper compares against — the
  model itself fine-tuned (causal LM loss) on the same texts; its wall time is the cost
  that scoring latents replaces.

Example:
    >>> tuned, seconds = finetune_on_texts(model, sl.demo_topic_texts("medicine"), steps=3)
    >>> centroid = topic_centroid(sl.demo_topic_texts("medicine"))
    >>> scores = generation_scores(model, prompts, sl.generate(tuned, prompts, max_new_tokens=4), centroid)
    >>> sorted(scores)
    ['distinct_2', 'perplexity', 'topic_similarity']
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import torch

from sas_lens.errors import DataError
from sas_lens.typing import Float, Tensor

# Topic-neutral openings the generations are continued from (written for sas_lens).
NEUTRAL_PROMPTS = (
    "Yesterday I heard that",
    "The most interesting thing about this week is",
    "Let me tell you about",
    "Here is what happened:",
    "In the news today,",
    "My friend asked me about",
    "It all started when",
    "Everyone is talking about",
    "The report says that",
    "I have been thinking about",
    "Last year,",
    "According to experts,",
)


def load_topic_texts(source: str | Path) -> list[str]:
    """Alignment texts: ``"demo:<topic>"`` (shipped) or a UTF-8 file with one text per line.

    Args:
        source: see above.

    Example:
        >>> len(load_topic_texts("demo:sports"))
        15
    """
    from sas_lens.topic.alignment import demo_topic_texts

    if str(source).startswith("demo:"):
        return demo_topic_texts(str(source)[len("demo:") :])
    path = Path(source)
    if not path.is_file():
        raise DataError(f"No topic text file {path}; give a file with one text per line, or demo:<topic>.")
    texts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not texts:
        raise DataError(f"{path} holds no texts (one non-empty line per text).")
    return texts


def topic_centroid(alignment_texts: list[str]) -> Float[Tensor, " dim"]:
    """The normalised mean of the alignment texts' embeddings.

    Args:
        alignment_texts: the topic's texts.

    Example:
        >>> centroid = topic_centroid(sl.demo_topic_texts("medicine"))
        >>> round(float(centroid.norm()), 4)   # normalised
        1.0
    """
    from sas_lens.loading.embeddings import embed

    return torch.nn.functional.normalize(embed(alignment_texts).mean(0), dim=0)


def topic_similarity(texts: list[str], alignment_texts: list[str]) -> Float[Tensor, " n"]:
    """Cosine of each text's embedding to the centroid of the alignment texts' embeddings.

    Args:
        texts: the texts scored.
        alignment_texts: the topic's texts.

    Example:
        >>> near, far = topic_similarity(["The patient recovered.", "The striker scored twice."],
        ...                              sl.demo_topic_texts("medicine")).tolist()
        >>> near > far
        True
    """
    return _similarity(texts, topic_centroid(alignment_texts))


def _similarity(texts: list[str], centroid: Float[Tensor, " dim"]) -> Float[Tensor, " n"]:
    from sas_lens.loading.embeddings import embed

    return embed(texts) @ centroid


def generation_scores(model, prompts: list[str], texts: list[str], centroid: Float[Tensor, " dim"]) -> dict:
    """Topic similarity to ``centroid`` (from :func:`topic_centroid`; mean over texts), fluency (median
    perplexity under ``model``, unsteered), repetition (distinct-2).

    Args:
        model: the unsteered HookedTransformer (for perplexity).
        prompts: the prompts.
        texts: their continuations.
        centroid: from :func:`topic_centroid`.

    Example:
        >>> answers = sl.generate(model, prompts, max_new_tokens=4)
        >>> scores = generation_scores(model, prompts, answers, topic_centroid(sl.demo_topic_texts("medicine")))
        >>> -1.0 <= scores["topic_similarity"] <= 1.0
        True
    """
    from sas_lens.steering.fluency import fluency

    return {"topic_similarity": float(_similarity(texts, centroid).mean()), **fluency(model, prompts, texts)}


def finetune_on_texts(
    model,
    texts: list[str],
    *,
    steps: int = 30,
    lr: float = 1e-4,
    batch_size: int = 4,
    max_length: int = 96,
    seed: int = 0,
):
    """A copy of ``model`` fine-tuned on ``texts`` (next-token loss); returns it and the training seconds.

    Every transformer block is trained; the embedding and unembedding stay frozen (for Gemma
    they are two thirds of the parameters, and a topic needs no new vocabulary). ``model``
    itself is not touched.

    Args:
        model: the model to copy and tune.
        texts: the topic's texts.
        steps: optimiser steps.
        lr: AdamW's learning rate.
        batch_size: texts per step.
        max_length: tokens per text.
        seed: batch order seed.

    Example:
        >>> tuned, seconds = finetune_on_texts(model, sl.demo_topic_texts("medicine"), steps=3)
        >>> tuned is not model   # a fine-tuned copy; the model itself is left as it was
        True
    """
    if not texts:
        raise DataError("finetune_on_texts needs at least one text.")
    twin = getattr(model, "_sas_lens_hf_model", None)
    tuned = copy.deepcopy(model, memo={id(twin): None} if twin is not None else {})
    # The copy must not pass for the original: no transformers twin with the old weights.
    tuned.cfg.model_name = f"{model.cfg.model_name}-finetuned"
    for name, parameter in tuned.named_parameters():
        parameter.requires_grad_(name.startswith("blocks."))
    optimiser = torch.optim.AdamW([p for p in tuned.parameters() if p.requires_grad], lr=lr)
    generator = torch.Generator().manual_seed(seed)
    started = time.perf_counter()
    with torch.enable_grad():
        tuned.train()
        for _ in range(steps):
            batch = [texts[i] for i in torch.randint(len(texts), (batch_size,), generator=generator)]
            tokens = tuned.to_tokens(batch, padding_side="right")[:, :max_length]
            attention = _attention_after_bos(tuned, tokens)
            loss = tuned(tokens, attention_mask=attention, return_type="loss")
            loss.backward()
            optimiser.step()
            optimiser.zero_grad(set_to_none=True)
    tuned.eval()
    for parameter in tuned.parameters():
        parameter.requires_grad_(False)
    return tuned, time.perf_counter() - started


def _attention_after_bos(model, tokens: Tensor) -> Tensor:
    """Real tokens of right-padded rows (the BOS and the text), so padding carries no loss."""
    pad = model.tokenizer.pad_token_id
    attention = torch.ones_like(tokens, dtype=torch.long) if pad is None else (tokens != pad).long()
    attention[:, 0] = 1  # the BOS, even where it shares the pad id
    return attention
