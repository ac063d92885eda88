"""A/B probabilities against a hand computation on unpadded prompts."""

import pytest
import torch

import sas_lens as sl
from sas_lens.steering.scoring import ab_probabilities, last_position_logits
from tests.helpers import random_sae
from tests.unit.test_steering import vector_for

ITEMS = sl.load_pairs(
    [
        {
            "question": "is the movie good ?\n(A) yes\n(B) no",
            "answer_matching_behavior": "(A)",
            "answer_not_matching_behavior": "(B)",
        },
        {
            "question": "was the ending of this long movie sad and dark ?\n(A) yes\n(B) no",
            "answer_matching_behavior": "(B)",
            "answer_not_matching_behavior": "(A)",
        },
        {
            "question": "i love it ?\n(A) no\n(B) yes",
            "answer_matching_behavior": "(B)",
            "answer_not_matching_behavior": "(A)",
        },
    ]
)


def by_hand(model, item):
    prompt = item.question + "\n\nAnswer: ("
    logits = model(model.to_tokens(prompt))[0, -1]
    letter = {c: model.tokenizer.convert_tokens_to_ids(c) for c in "AB"}
    both = logits[[letter[item.matching], letter[item.not_matching]]].softmax(-1)
    return float(both[0].detach())


def test_probabilities_match_hand_computation_under_left_padding(model):
    got = ab_probabilities(model, ITEMS, batch_size=3)
    expected = torch.tensor([by_hand(model, item) for item in ITEMS])
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
    assert ((got > 0) & (got < 1)).all()


def test_steered_probabilities_match_steering_by_hand(model):
    sae = random_sae("jumprelu")
    vec = vector_for(sae, nnz=10)
    got = ab_probabilities(model, ITEMS, steering={vec: 8.0}, sae=sae)
    with sl.steer(model, {vec: 8.0}, sae=sae):
        expected = torch.tensor([by_hand(model, item) for item in ITEMS])
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(got, ab_probabilities(model, ITEMS), atol=1e-4)


def test_completion_pairs_are_refused(model):
    with pytest.raises(ValueError, match="needs A/B items"):
        ab_probabilities(model, sl.load_pairs([{"prompt": "a", "positive": " b", "negative": " c"}]))


@pytest.mark.parametrize("soft_cap", [-1.0, 0.5])  # the tiny model's logits reach ~2
def test_last_position_logits_equal_the_full_forward(model, soft_cap, monkeypatch):
    monkeypatch.setattr(model.cfg, "output_logits_soft_cap", soft_cap)
    tokens = torch.tensor([[0, 0, 5, 9, 3], [4, 8, 1, 7, 2]])
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]], dtype=torch.bool)
    expected = model(tokens, attention_mask=mask)[:, -1]
    torch.testing.assert_close(last_position_logits(model, tokens, mask), expected)
    if soft_cap > 0:
        assert expected.abs().max() <= soft_cap
