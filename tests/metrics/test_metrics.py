"""Signed ranking metrics: target ranks, per-user gains, the split HR/NDCG/MRR states and Coverage."""

import math

import numpy as np
import pytest
import torch

from negseq.evaluation.metrics import MRR, NDCG, Coverage, HitRate, hit_gain, mrr_gain, ndcg_gain
from negseq.models.ranking import ranks_in, top_k
from tests.rank_oracle import sorted_ranks

INF = math.inf
NEG = -math.inf


# -- NumPy reference implementations --


def np_gains(ranks: np.ndarray, k: int) -> dict[str, np.ndarray]:
    inside = ranks <= k
    safe = np.where(inside, ranks, 1.0)
    return {
        "hr": inside.astype(float),
        "ndcg": np.where(inside, 1.0 / np.log2(safe + 1.0), 0.0),
        "mrr": np.where(inside, 1.0 / safe, 0.0),
    }


def np_signed(gains: np.ndarray, positive: np.ndarray) -> dict[str, float]:
    pos = gains[positive].mean() if positive.any() else 0.0
    neg = gains[~positive].mean() if (~positive).any() else 0.0
    return {"pos": pos, "neg": neg, "delta": pos - neg}


def random_case(seed: int, n_users: int = 64, n_items: int = 30):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 6, size=(n_users, n_items)).astype(np.float32)  # few values -> many ties
    scores[rng.random(scores.shape) < 0.2] = -np.inf  # seen items
    scores[:, 0] = -np.inf  # padding column
    targets = rng.integers(-2, n_items + 3, size=n_users)  # some out of the catalogue
    positive = rng.random(n_users) < 0.6
    return scores, targets, positive


# -- the ranks the metrics count: each target's place in the top list served for its scores --


def served_ranks(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``(B,)`` each target's 1-based place in the whole list :func:`negseq.models.ranking.top_k` serves for ``scores``
    ``(B, N)`` (:func:`negseq.models.ranking.ranks_in`; inf when absent): the item table is the identity, so a user's vector
    is its row of scores, and a ``-inf`` entry is an item the user has seen (excluded). Item 0 is padding."""
    n_items = scores.shape[1]
    finite = torch.isfinite(scores)
    seen = torch.where(finite, 0, torch.arange(n_items).expand_as(scores))  # (B, N): 0 = no seen item in that slot
    _, items = top_k(torch.where(finite, scores, 0.0), torch.eye(n_items), seen, n_items)
    return ranks_in(items, targets)


def test_served_ranks_distinct_scores_hand_computed():
    # item:             0    1    2    3    4
    row = torch.tensor([NEG, 0.1, 0.7, 0.3, 0.5])
    scores = row.expand(4, -1).clone()
    # order by score: 2 (0.7), 4 (0.5), 3 (0.3), 1 (0.1)
    ranks = served_ranks(scores, torch.tensor([2, 4, 3, 1]))
    assert ranks.tolist() == [1.0, 2.0, 3.0, 4.0]
    assert ranks.dtype == torch.float32


@pytest.mark.parametrize(
    ("row", "target", "expected"),
    [
        # all tied: ids 1 and 2 come before 3
        ([NEG, 1.0, 1.0, 1.0, 1.0], 3, 3.0),
        ([NEG, 1.0, 1.0, 1.0, 1.0], 1, 1.0),
        ([NEG, 1.0, 1.0, 1.0, 1.0], 4, 4.0),
        # tie with a larger id only: the target wins the tie
        ([NEG, 1.0, 0.5, 1.0], 1, 1.0),
        ([NEG, 1.0, 0.5, 1.0], 3, 2.0),
        # one strictly higher item (1) plus one tied smaller id (2): 1 + 2 ahead
        ([NEG, 2.0, 1.0, 1.0, 0.5], 3, 3.0),
        ([NEG, 2.0, 1.0, 1.0, 0.5], 2, 2.0),
        # tied item with larger id and a strictly higher one with larger id
        ([NEG, 0.0, 1.0, 3.0, 1.0], 2, 2.0),
        ([NEG, 0.0, 1.0, 3.0, 1.0], 4, 3.0),
    ],
)
def test_served_ranks_ties_broken_by_smaller_id_first(row, target, expected):
    ranks = served_ranks(torch.tensor([row]), torch.tensor([target]))
    assert ranks.item() == expected


def test_served_ranks_excludes_minus_inf_items():
    # items 0 (padding), 1 and 3 (seen) cannot be recommended; only item 2 is ahead of item 4
    scores = torch.tensor([[NEG, NEG, 0.2, NEG, 0.1]])
    assert served_ranks(scores, torch.tensor([4])).item() == 2.0
    assert served_ranks(scores, torch.tensor([2])).item() == 1.0


def test_served_ranks_unrankable_targets_give_inf():
    scores = torch.tensor([[NEG, 0.3, NEG, 0.1]]).expand(6, -1).clone()
    targets = torch.tensor([4, 7, -1, 0, 2, 3])  # >= n_items, >= n_items, negative, padding, seen, valid
    ranks = served_ranks(scores, targets)
    assert ranks.tolist() == [INF, INF, INF, INF, INF, 2.0]


def test_served_ranks_of_a_padding_item_scored_and_a_target_outside_the_catalogue():
    scores = torch.tensor([[NEG, 0.5, 0.9, 0.5], [0.0, 1.0, 2.0, 3.0]])
    assert served_ranks(scores, torch.tensor([3, 7])).tolist() == [3.0, INF]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_served_ranks_match_numpy_sort_reference(seed):
    scores, targets, _ = random_case(seed)
    ranks = served_ranks(torch.from_numpy(scores), torch.from_numpy(targets))
    np.testing.assert_array_equal(ranks.numpy(), sorted_ranks(scores, targets).numpy())


# -- gains --


@pytest.mark.parametrize("k", [1, 3, 10])
def test_gains_at_rank_1_k_k_plus_1_and_inf(k):
    ranks = torch.tensor([1.0, float(k), float(k + 1), INF])
    assert hit_gain(ranks, k).tolist() == [1.0, 1.0, 0.0, 0.0]
    torch.testing.assert_close(ndcg_gain(ranks, k), torch.tensor([1.0, 1.0 / math.log2(k + 1), 0.0, 0.0]))
    torch.testing.assert_close(mrr_gain(ranks, k), torch.tensor([1.0, 1.0 / k, 0.0, 0.0]))


def test_gains_hand_computed_at_k5():
    ranks = torch.tensor([2.0, 3.0, 5.0, 6.0])
    torch.testing.assert_close(ndcg_gain(ranks, 5), torch.tensor([1 / math.log2(3), 0.5, 1 / math.log2(6), 0.0]))
    torch.testing.assert_close(mrr_gain(ranks, 5), torch.tensor([0.5, 1 / 3, 0.2, 0.0]))
    assert hit_gain(ranks, 5).tolist() == [1.0, 1.0, 1.0, 0.0]


# -- signed metric classes --

RANKS = torch.tensor([1.0, 3.0, 2.0, INF, 1.0])
POSITIVE = torch.tensor([True, True, False, False, False])


def values(metric) -> dict[str, float]:
    return {name: value.item() for name, value in metric.compute().items()}


def test_signed_metrics_hand_computed_k2():
    # positive users: ranks 1, 3; negative users: ranks 2, inf, 1
    expected = {
        HitRate: (1.0 / 2, (1.0 + 0.0 + 1.0) / 3),
        NDCG: (1.0 / 2, (1 / math.log2(3) + 0.0 + 1.0) / 3),
        MRR: (1.0 / 2, (1 / 2 + 0.0 + 1.0) / 3),
    }
    for cls, (pos, neg) in expected.items():
        metric = cls(k=2)
        metric.update(RANKS, POSITIVE)
        got = values(metric)
        assert got["pos"] == pytest.approx(pos)
        assert got["neg"] == pytest.approx(neg)
        assert got["delta"] == pytest.approx(pos - neg)
        assert metric.n_pos.item() == 2 and metric.n_neg.item() == 3


@pytest.mark.parametrize("cls", [HitRate, NDCG, MRR])
def test_signed_metric_batches_equal_one_concatenated_update(cls):
    scores, targets, positive = random_case(3, n_users=50)
    ranks = served_ranks(torch.from_numpy(scores), torch.from_numpy(targets))
    positive = torch.from_numpy(positive)
    batched, single = cls(k=5), cls(k=5)
    for chunk in (slice(0, 7), slice(7, 8), slice(8, 30), slice(30, 50)):
        batched.update(ranks[chunk], positive[chunk])
    single.update(ranks, positive)
    assert values(batched) == pytest.approx(values(single), abs=1e-7)
    assert batched.n_pos.item() + batched.n_neg.item() == 50


@pytest.mark.parametrize("cls", [HitRate, NDCG, MRR])
def test_signed_metric_empty_group_gives_nan_not_zero(cls):
    """A group with no user has no mean: NaN, and so is the Delta (never the other group's value)."""
    only_pos = cls(k=2)
    only_pos.update(torch.tensor([1.0, 5.0]), torch.tensor([True, True]))
    got = values(only_pos)
    assert math.isnan(got["neg"]) and math.isnan(got["delta"])
    assert got["pos"] == pytest.approx(0.5)

    only_neg = cls(k=2)
    only_neg.update(torch.tensor([1.0]), torch.tensor([False]))
    got = values(only_neg)
    assert math.isnan(got["pos"]) and math.isnan(got["delta"]) and got["neg"] == 1.0

    nobody = cls(k=2)
    nobody.update(torch.tensor([]), torch.tensor([], dtype=torch.bool))
    assert all(math.isnan(value) for value in values(nobody).values())


def test_signed_metric_states_are_float32():
    """MPS has no float64: every state, and the result, is float32."""
    metric = NDCG(k=3)
    metric.update(RANKS, POSITIVE)
    assert {state.dtype for state in (metric.gain_pos, metric.gain_neg, metric.n_pos, metric.n_neg)} == {torch.float32}
    assert {value.dtype for value in metric.compute().values()} == {torch.float32}


def test_signed_metric_positive_flag_accepts_integers():
    metric = HitRate(k=2)
    metric.update(RANKS, POSITIVE.long())
    assert values(metric)["pos"] == pytest.approx(0.5)
    assert values(metric)["neg"] == pytest.approx(2 / 3)


def test_signed_metric_reset():
    metric = HitRate(k=2)
    metric.update(RANKS, POSITIVE)
    metric.reset()
    assert metric.n_pos.item() == 0 and metric.n_neg.item() == 0
    metric.update(torch.tensor([3.0]), torch.tensor([True]))
    assert values(metric)["pos"] == 0.0 and math.isnan(values(metric)["neg"])
    metric.update(torch.tensor([1.0]), torch.tensor([True]))
    assert values(metric)["pos"] == pytest.approx(0.5)


@pytest.mark.parametrize("k", [0, -3, 2.5, "10", None])
@pytest.mark.parametrize("cls", [HitRate, NDCG, MRR])
def test_signed_metric_invalid_k_raises_with_value(cls, k):
    with pytest.raises(ValueError, match=repr(k).replace(".", r"\.")):
        cls(k=k)


def test_signed_metric_shape_mismatch_raises():
    metric = NDCG(k=3)
    with pytest.raises(ValueError, match=r"\(3,\) and \(2,\)"):
        metric.update(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([True, False]))


@pytest.mark.parametrize("k", [1, 5, 10])
def test_signed_metrics_match_numpy_reference(k):
    scores, targets, positive = random_case(10 + k, n_users=80)
    ranks_np = sorted_ranks(scores, targets).numpy()
    gains = np_gains(ranks_np, k)
    ranks = served_ranks(torch.from_numpy(scores), torch.from_numpy(targets))
    flags = torch.from_numpy(positive)
    for name, cls in (("hr", HitRate), ("ndcg", NDCG), ("mrr", MRR)):
        metric = cls(k=k)
        for chunk in (slice(0, 33), slice(33, 80)):
            metric.update(ranks[chunk], flags[chunk])
        expected = np_signed(gains[name], positive)
        got = values(metric)
        for key in ("pos", "neg", "delta"):
            assert got[key] == pytest.approx(expected[key], abs=1e-6), (name, key)


@pytest.mark.parametrize("cls", [HitRate, NDCG, MRR])
def test_signed_metric_merge_counts_every_user_once(cls):
    """DDP-style: two ranks each see half of the users; merged states equal one metric over all."""
    scores, targets, positive = random_case(7, n_users=40)
    ranks = served_ranks(torch.from_numpy(scores), torch.from_numpy(targets))
    flags = torch.from_numpy(positive)
    left, right, whole = cls(k=5), cls(k=5), cls(k=5)
    left.update(ranks[:15], flags[:15])
    right.update(ranks[15:], flags[15:])
    whole.update(ranks, flags)

    # the sync path: each state reduced with its dist_reduce_fx over the stacked per-rank states
    synced = {name: left._reductions[name](torch.stack([getattr(left, name), getattr(right, name)])) for name in left._defaults}
    assert synced["n_pos"].item() == positive.sum()
    assert synced["n_neg"].item() == (~positive).sum()

    left.merge_state(right)
    assert left.n_pos.item() + left.n_neg.item() == 40
    for name in left._defaults:
        torch.testing.assert_close(getattr(left, name), synced[name])
    assert values(left) == pytest.approx(values(whole), abs=1e-7)


# -- Coverage --


def test_coverage_distinct_items_across_updates():
    metric = Coverage(num_items=6, num_train_items=5)
    metric.update(torch.tensor([[1, 2], [2, 0]]))
    metric.update(torch.tensor([[3, 0], [0, 0]]))
    metric.update(torch.tensor([[2, 1], [3, 2]]))  # nothing new
    assert metric.compute().item() == pytest.approx(3 / 5)
    metric.update(torch.tensor([[6, 5]]))
    assert metric.compute().item() == pytest.approx(5 / 5)


def test_coverage_ignores_padding_id():
    metric = Coverage(num_items=4, num_train_items=4)
    metric.update(torch.zeros(3, 2, dtype=torch.long))
    assert metric.compute().item() == 0.0
    metric.update(torch.tensor([[4, 0]]))
    assert metric.compute().item() == pytest.approx(1 / 4)


@pytest.mark.filterwarnings("ignore:The ``compute`` method of metric Coverage was called before")
def test_coverage_reset_and_merge():
    a, b, whole = (Coverage(num_items=10, num_train_items=8) for _ in range(3))
    a.update(torch.tensor([[1, 2, 3]]))
    b.update(torch.tensor([[3, 4, 0]]))
    whole.update(torch.tensor([[1, 2, 3], [3, 4, 0]]))
    a.merge_state(b)
    assert a.compute().item() == pytest.approx(4 / 8)
    assert whole.compute().item() == pytest.approx(4 / 8)
    a.reset()
    assert a.compute().item() == 0.0


@pytest.mark.parametrize(("num_items", "num_train_items", "bad"), [(0, 5, "num_items"), (-1, 5, "num_items"), (5, 0, "num_train_items")])
def test_coverage_invalid_arguments_raise(num_items, num_train_items, bad):
    with pytest.raises(ValueError, match=bad):
        Coverage(num_items=num_items, num_train_items=num_train_items)


def test_coverage_matches_numpy_reference():
    rng = np.random.default_rng(5)
    batches = [rng.integers(0, 31, size=(8, 10)) for _ in range(4)]
    metric = Coverage(num_items=30, num_train_items=25)
    for batch in batches:
        metric.update(torch.from_numpy(batch))
    distinct = np.unique(np.concatenate([b.ravel() for b in batches]))
    expected = len(distinct[distinct > 0]) / 25
    assert metric.compute().item() == pytest.approx(expected)
