"""Sampled softmax: hand-computed values, agreement with the full softmax, and the logQ correction."""

from __future__ import annotations

import math

import torch

from negseq.models.losses import label_log_probs, next_item_loss, sampled_label_log_probs

ITEMS = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # ids 0 (padding) .. 3


def test_sampled_log_prob_by_hand_with_accidental_hit_removed():
    hidden = torch.tensor([[2.0, 1.0]])
    # candidates 1, 2, 2, 3: the label 3 drawn as a candidate is an accidental hit and left out
    value = sampled_label_log_probs(hidden, torch.tensor([3]), ITEMS, torch.tensor([1, 2, 2, 3]))
    expected = 3.0 - math.log(math.exp(3.0) + math.exp(2.0) + 2 * math.exp(1.0))
    assert math.isclose(value.item(), expected, rel_tol=1e-6)


def test_every_other_item_as_candidate_is_the_full_softmax():
    torch.manual_seed(0)
    items = torch.randn(8, 4)
    hidden, labels = torch.randn(5, 4), torch.tensor([1, 3, 7, 2, 5])
    candidates = torch.arange(1, 8)  # each label is among them once and is removed as an accidental hit
    torch.testing.assert_close(sampled_label_log_probs(hidden, labels, items, candidates), label_log_probs(hidden, labels, items))


def test_log_q_correction_by_hand():
    hidden = torch.tensor([[2.0, 1.0]])
    log_q = torch.log(torch.tensor([0.0, 0.5, 0.25, 0.25]).clamp(min=1e-12))
    value = sampled_label_log_probs(hidden, torch.tensor([3]), ITEMS, torch.tensor([1, 2]), log_q)
    positive, first, second = 3.0 - math.log(0.25), 2.0 - math.log(0.5), 1.0 - math.log(0.25)
    expected = positive - math.log(math.exp(positive) + math.exp(first) + math.exp(second))
    assert math.isclose(value.item(), expected, rel_tol=1e-6)


def test_next_item_loss_uses_the_sampled_softmax_when_given_candidates():
    hidden = torch.tensor([[[2.0, 1.0], [0.5, 0.5]]])
    labels = torch.tensor([[3, 0]])  # the second position has no label
    loss = next_item_loss(hidden, labels, ITEMS, candidates=torch.tensor([1, 2]))
    expected = -(3.0 - math.log(math.exp(3.0) + math.exp(2.0) + math.exp(1.0)))
    assert math.isclose(loss.item(), expected, rel_tol=1e-6)
