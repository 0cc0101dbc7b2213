"""Order keys: a total (score desc, id asc) order that survives a round trip."""

from __future__ import annotations

import pytest
import torch

from negseq.errors import ConfigError
from negseq.ranking import block_top_keys, decode_keys, order_keys


def test_keys_round_trip_and_order_scores_then_ids():
    scores = torch.tensor([[-float("inf"), -2.5, -0.0, 0.0, 1e-30, 3.0, 3.0, 7.25]])
    ids = torch.tensor([9, 4, 5, 6, 2, 8, 1, 3])
    keys = order_keys(scores, ids)
    decoded_scores, decoded_ids = decode_keys(keys)
    assert torch.equal(decoded_ids, ids[None]) and torch.equal(decoded_scores, scores)
    order = keys.argsort(dim=1, descending=True)[0]
    # 7.25, then the tied 3.0s by id (1 before 8), then 1e-30, 0.0, -0.0, -2.5, -inf
    assert ids[order].tolist() == [3, 1, 8, 2, 6, 5, 4, 9]


def test_block_top_keys_picks_the_smallest_ids_among_ties_at_the_cut():
    block = torch.tensor([[1.0, 5.0, 1.0, 1.0, 1.0, 0.5]])  # ids 10..15; top-3 = 11 then two of the four tied 1.0s
    scores, items = decode_keys(block_top_keys(block, first_id=10, k=3))
    assert items.tolist() == [[11, 10, 12]] and scores.tolist() == [[5.0, 1.0, 1.0]]


def test_block_top_keys_against_sorting_every_key():
    """Rows with ties inside the top-k, across the cut, filling it exactly, -inf slots, and a block narrower than k + 1."""
    block = torch.tensor([
        [2.0, 2.0, 1.0, 0.0, -1.0],  # ties inside the top-3 only
        [3.0, 1.0, 1.0, 1.0, 0.0],  # three tied items for two slots
        [1.0, 1.0, 1.0, 0.5, 0.5],  # three tied items filling three slots exactly
        [-float("inf")] * 4 + [0.0],  # one recommendable item
    ])
    for width, k in ((5, 3), (3, 3), (2, 3)):
        part = block[:, :width]
        ids = torch.arange(20, 20 + width)
        expected = order_keys(part, ids).sort(dim=1, descending=True).values[:, :k]
        keys = block_top_keys(part, first_id=20, k=k).sort(dim=1, descending=True).values  # the top-k set; the caller orders it
        assert torch.equal(keys, expected), (width, k)


def test_a_target_in_the_top_k_counts_at_the_rank_it_is_shown_at():
    """A near-tie below the target by a smaller id: the tolerance count put it ahead (rank 11) while the exact keys
    showed the target 10th; the rank is now the position in the recommendations."""
    from negseq.ranking import count_ahead, rank_and_recommend

    scores = torch.tensor([0.0] + [10.0] * 9 + [1.0 - 1e-6, 1.0, -5.0])  # items 1..9 far ahead, 10 just below 11 (the target)
    items = scores[:, None]  # (N + 1, 1): with the user vector [1.0], each item's score is its row
    users, seen, target = torch.ones(1, 1), torch.zeros(1, 1, dtype=torch.long), torch.tensor([11])
    assert int(count_ahead(scores[None], scores[11:12], target)) == 10  # the tolerance's view: rank 11
    for block in (1, 4, 13):
        ranks, _, top_items = rank_and_recommend(users, items, seen, target, k=10, block_items=block)
        assert top_items[0, 9].item() == 11 and ranks.tolist() == [10.0]


def test_ranks_are_the_positions_in_the_top_k_and_inf_elsewhere():
    from negseq.ranking import rank_and_recommend

    generator = torch.Generator().manual_seed(3)
    users, items = torch.randn(32, 4, generator=generator), torch.randn(41, 4, generator=generator)
    seen = torch.randint(0, 41, (32, 3), generator=generator)
    targets = torch.cat([seen[:4, 0], torch.randint(0, 41, (28,), generator=generator)])  # some seen (or padding) targets
    ranks, _, top_items = rank_and_recommend(users, items, seen, targets, k=7, block_items=5)
    for row in range(32):
        shown = top_items[row].tolist()
        expected = shown.index(targets[row].item()) + 1 if targets[row].item() in shown and targets[row] > 0 else float("inf")
        assert ranks[row].item() == expected
    assert torch.isinf(ranks[:4]).all()  # a seen item is never recommended, so never ranked


def test_dislike_demotion_subtracts_lambda_times_the_highest_positive_cosine_by_hand():
    from negseq.models.recommender import SequentialRecommender
    from negseq.ranking import score_block

    items = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 3.0], [1.0, 1.0], [-1.0, 0.0]])  # ids 0 (padding) .. 4
    users = torch.tensor([[1.0, 1.0]])
    unit_disliked = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])  # item 1 disliked, one empty slot
    block = score_block(users, items, torch.zeros(1, 1, dtype=torch.long), 0, 5, 2.0 * unit_disliked)
    # dot products 2, 3, 2, -1; cosines to item 1: 1, 0, 1/sqrt(2), -1 (clamped to 0: never a promotion)
    expected = [2 - 2.0, 3 - 0.0, 2 - 2.0 / 2**0.5, -1 - 0.0]
    assert block[0, 1:].tolist() == pytest.approx(expected) and block[0, 0] == -float("inf")

    model = SequentialRecommender(4, max_len=3, dim=2, dislike_demotion=2.0, demotion_window=1)
    with torch.no_grad():
        model.items.weight.copy_(items)
    demote = model.demotion(torch.tensor([[1, 3]]))  # the window keeps the newest dislike only: item 3
    assert demote.shape == (1, 1, 2) and demote[0, 0].tolist() == pytest.approx([2.0 / 2**0.5, 2.0 / 2**0.5])
    model.set_dislike_demotion(0.0)
    assert model.demotion(torch.tensor([[1, 3]])) is None


def test_demotion_decay_weighs_the_r_th_newest_dislike_by_gamma_to_the_r():
    from negseq.models.recommender import SequentialRecommender
    from negseq.ranking import score_block

    items = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # ids 0 (padding) .. 3
    model = SequentialRecommender(3, max_len=4, dim=2, dislike_demotion=2.0, demotion_window=3, demotion_decay=0.5)
    with torch.no_grad():
        model.items.weight.copy_(items)
    demote = model.demotion(torch.tensor([[0, 1, 2]]))  # padding, then item 1 (one step old), then item 2 (the newest)
    assert demote[0].flatten().tolist() == pytest.approx([0.0, 0.0, 2.0 * 0.5, 0.0, 0.0, 2.0])
    # item 3 is as close to both dislikes (cosine 1/sqrt(2)): the newest one's full weight counts, 2/sqrt(2)
    block = score_block(torch.tensor([[1.0, 1.0]]), items, torch.zeros(1, 1, dtype=torch.long), 0, 4, demote)
    assert block[0, 1:].tolist() == pytest.approx([1 - 1.0, 1 - 2.0, 2 - 2.0 / 2**0.5])
    with pytest.raises(ConfigError, match="demotion_decay in \\(0, 1\\]"):
        SequentialRecommender(3, max_len=4, dim=2, demotion_decay=0.0)
