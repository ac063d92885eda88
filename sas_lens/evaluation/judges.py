"""Judges no one here wrote: they score steered text without looking at the vectors that steered it.

- :func:`sentiment_scores`: VADER's compound score (PyPI ``vaderSentiment``, a lexicon and rules
  scorer), in [−1, 1] per text;
- :func:`similarity_scores`: cosine of each text's all-MiniLM-L6-v2 embedding to the mean
  embedding of reference texts (a topic's articles, a behaviour's examples).

Both are offline. Judging a vector with the project's own latents or vectors would grade it
by the thing under test.

Example:
    >>> sentiment_scores(["What a wonderful day.", "This is awful."])   # VADER's compound score
    [0.5719, -0.4588]
"""

from __future__ import annotations

import functools

from sas_lens.errors import SASLensError
from sas_lens.topic.evaluation import topic_similarity


@functools.lru_cache(maxsize=1)
def _vader():
    try:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
    except ImportError as err:
        raise SASLensError("The sentiment judge needs VADER: pip install vaderSentiment") from err
    return SentimentIntensityAnalyzer()


def sentiment_scores(texts: list[str]) -> list[float]:
    """VADER's compound sentiment of each text: −1 (most negative) to +1 (most positive).

    Args:
        texts: the texts to score.

    Example:
        >>> [round(s, 2) for s in sentiment_scores(["I love it.", "I hate it.", "It is a chair."])]
        [0.64, -0.57, 0.0]
    """
    analyzer = _vader()
    return [float(analyzer.polarity_scores(text)["compound"]) for text in texts]


def similarity_scores(texts: list[str], reference: list[str]) -> list[float]:
    """Cosine of each text's sentence embedding to the normalised mean embedding of ``reference``.

    Args:
        texts: the texts to score.
        reference: texts that show the target (a topic's articles); at least one.

    Example:
        >>> near, far = similarity_scores(["The striker scored twice.", "The patient recovered."],
        ...                               ["A football match report."])
        >>> near > far
        True
    """
    if not reference:
        raise ValueError("Give at least one reference text to compare against.")
    return topic_similarity(list(texts), list(reference)).tolist()
