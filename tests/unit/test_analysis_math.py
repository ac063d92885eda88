"""Monosemanticity and overlap figures on hand-built vectors, against values computed by hand."""

import math

import pytest
import torch

from sas_lens.analysis.monosemanticity import monosemanticity
from sas_lens.analysis.overlap import overlap_matrix, pair_overlap, shared_latents
from sas_lens.errors import IncompatibleSAEError
from sas_lens.steering.vectors import SASVector
from tests.helpers import random_sae


def vec(entries: dict[int, float], name: str, d_sae: int = 10, fingerprint: str = "same") -> SASVector:
    indices = torch.tensor(sorted(entries), dtype=torch.long)
    values = torch.tensor([entries[i] for i in sorted(entries)], dtype=torch.float32)
    return SASVector(indices, values, d_sae, {"name": name, "sae_fingerprint": fingerprint})


def test_monosemanticity_by_hand():
    # |v| = 4, 2, 1, 1 (sum 8): p = 1/2, 1/4, 1/8, 1/8
    figures = monosemanticity(vec({0: 4.0, 3: -2.0, 5: 1.0, 9: -1.0}, "v"))
    entropy = -(0.5 * math.log(0.5) + 0.25 * math.log(0.25) + 2 * 0.125 * math.log(0.125))
    assert figures["support"] == 4
    assert figures["effective_latents"] == pytest.approx(math.exp(entropy))  # 2^1.75 = 3.364
    assert figures["effective_latents"] == pytest.approx(2**1.75)
    assert figures["top1_share"] == pytest.approx(0.5)
    assert figures["top5_share"] == pytest.approx(1.0)


def test_monosemanticity_extremes():
    assert monosemanticity(vec({2: -7.0}, "one"))["effective_latents"] == pytest.approx(1.0)
    flat = monosemanticity(vec({i: 1.0 for i in range(8)}, "flat"))
    assert flat["effective_latents"] == pytest.approx(8.0)
    assert flat["top5_share"] == pytest.approx(5 / 8)
    empty = monosemanticity(vec({}, "empty"))
    assert empty["support"] == 0 and empty["effective_latents"] == 0.0


def test_overlap_by_hand():
    u = vec({0: 1.0, 1: 2.0, 2: -3.0}, "u")
    v = vec({1: 1.0, 2: -1.0, 3: 4.0}, "v")
    figures = pair_overlap(u, v)
    assert figures["jaccard"] == pytest.approx(2 / 4)  # {1, 2} of {0, 1, 2, 3}
    assert figures["jaccard_pos"] == pytest.approx(1 / 3)  # {1} of {0, 1, 3}
    assert figures["jaccard_neg"] == pytest.approx(1.0)  # {2} of {2}
    # Σmin = 0 + 1 + 1 + 0 = 2; Σmax = 1 + 2 + 3 + 4 = 10
    assert figures["weighted_jaccard"] == pytest.approx(0.2)
    # u·v = 2 + 3 = 5; |u| = √14, |v| = √18
    assert figures["cosine"] == pytest.approx(5 / math.sqrt(14 * 18))


def test_overlap_matrix_is_symmetric_with_ones_on_the_diagonal():
    u, v, w = vec({0: 1.0, 1: 2.0}, "u"), vec({1: 1.0}, "v"), vec({5: -1.0}, "w")
    matrix = overlap_matrix([u, v, w])
    assert matrix.jaccard.loc["u", "v"] == matrix.jaccard.loc["v", "u"] == pytest.approx(0.5)
    assert matrix.jaccard.loc["u", "w"] == 0.0
    assert all(matrix.jaccard.loc[n, n] == 1.0 for n in ("u", "v", "w"))
    assert matrix.jaccard_pos.loc["w", "w"] == 0.0  # w has no positive part: nothing shared, not NaN
    assert matrix.cosine_decoded is None


def test_decoded_cosine_uses_the_decoder():
    sae = random_sae("jumprelu", d_sae=10)
    u, v = vec({0: 1.0}, "u"), vec({1: 1.0}, "v")
    expected = torch.nn.functional.cosine_similarity(sae.W_dec[0].detach(), sae.W_dec[1].detach(), dim=0)
    assert pair_overlap(u, v, sae)["cosine_decoded"] == pytest.approx(float(expected), abs=1e-6)


def test_shared_latents_lists_values_of_both():
    table = shared_latents(vec({0: 1.0, 1: 2.0, 2: -3.0}, "u"), vec({1: 1.0, 2: -1.0, 3: 4.0}, "v"))
    assert table["latent"].tolist() == [2, 1]  # |−3|+|−1| = 4 before |2|+|1| = 3
    assert table["u"].tolist() == [-3.0, 2.0] and table["v"].tolist() == [-1.0, 1.0]


def test_vectors_of_different_saes_are_refused():
    with pytest.raises(IncompatibleSAEError, match="different SAEs"):
        overlap_matrix([vec({0: 1.0}, "u"), vec({0: 1.0}, "v", fingerprint="other")])
    with pytest.raises(IncompatibleSAEError, match="different SAEs"):
        overlap_matrix([vec({0: 1.0}, "u"), vec({0: 1.0}, "v", d_sae=20)])
    with pytest.raises(ValueError, match="unique"):
        overlap_matrix([vec({0: 1.0}, "u"), vec({1: 1.0}, "u")])


def test_the_signed_weighted_jaccard_tells_opposite_vectors_apart():
    from sas_lens.analysis.overlap import pair_overlap

    u = vec({0: 2.0, 3: -1.0}, "u")
    minus_u = vec({0: -2.0, 3: 1.0}, "minus u")
    overlap = pair_overlap(u, minus_u)
    assert overlap["weighted_jaccard"] == 1.0 and overlap["signed_weighted_jaccard"] == -1.0
    half = vec({0: 1.0, 3: 1.0}, "half")  # agrees on latent 0 (min 1), disagrees on 3 (min 1); maxes 2 + 1
    assert pair_overlap(u, half)["signed_weighted_jaccard"] == pytest.approx((1 - 1) / 3)
    assert pair_overlap(u, half)["weighted_jaccard"] == pytest.approx(2 / 3)
