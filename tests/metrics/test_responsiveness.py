"""Responsiveness to a counterfactual dislike: hand-computed goldens, the neighbours, and what must be 0 or ~0."""

from __future__ import annotations

import math

import lightning as L
import polars as pl
import pytest
import torch

from negseq.data import FeedbackDataModule
from negseq.data import neighbours as neighbours_module
from negseq.data.neighbours import ItemNeighbours, training_pairs
from negseq.evaluation.responsiveness import ListChange, NeighbourSuppression, append_newest, with_dislike
from negseq.models.ranking import top_k
from negseq.training.module import NegSeqModule

# training events of 3 users over 6 items: u0 {1, 2, 3}, u1 {1, 2, 4}, u2 {3, 5, 6}
TRAIN = pl.DataFrame({"user": [0, 0, 0, 1, 1, 1, 2, 2, 2], "item": [1, 2, 3, 1, 2, 4, 3, 5, 6]})


def test_neighbours_are_the_most_similar_items_by_cosine_of_users_in_common():
    # cosines by hand (norms: items 1, 2, 3 have 2 users, items 4, 5, 6 one):
    # item 1: 2 -> 2/2 = 1, 4 -> 1/sqrt(2), 3 -> 1/2; item 5: 6 -> 1, 3 -> 1/sqrt(2); item 4: 1, 2 -> 1/sqrt(2), then none
    neighbours = ItemNeighbours.from_events(TRAIN, num_items=6, m=2, block_items=2)  # blocks of 2 items: the blocking is exercised
    result = neighbours(torch.tensor([1, 5, 0, 7]))
    assert result[:2].tolist() == [[2, 4], [6, 3]]
    assert result[2:].tolist() == [[0, 0], [0, 0]]  # padding and an unknown id have no neighbours
    assert ItemNeighbours.from_events(TRAIN, num_items=6, m=4)(torch.tensor([4])).tolist() == [[1, 2, 0, 0]]  # no shared user: 0
    with pytest.raises(ValueError, match="`m` must be positive"):
        ItemNeighbours.from_events(TRAIN, 6, m=0)


@pytest.mark.parametrize("block_events", [2, 1000])
def test_training_pairs_are_the_distinct_user_item_pairs(block_events, monkeypatch):
    monkeypatch.setattr(neighbours_module, "BLOCK_EVENTS", block_events)  # 2: blocks of whole users, cut between them
    train = pl.DataFrame({"user": [0, 0, 0, 1, 1, 2], "item": [3, 1, 3, 2, 2, 5]})
    pairs = training_pairs(train)
    assert pairs.dtype == torch.int32 and pairs.tolist() == [[0, 1], [0, 3], [1, 2], [2, 5]]
    assert training_pairs(train.head(0)).shape == (0, 2)


@pytest.mark.parametrize("built_in_inference", [False, True])
def test_neighbours_work_inside_the_test_loops_inference_mode(built_in_inference):
    """A sparse index_select inside inference mode fails on a few thousand items (torch 2.13); the test loop runs in it."""
    generator = torch.Generator().manual_seed(0)
    train = pl.DataFrame({"user": torch.randint(0, 600, (50_000,), generator=generator).numpy(),
                          "item": torch.randint(1, 9001, (50_000,), generator=generator).numpy()})
    with torch.inference_mode(built_in_inference):
        neighbours = ItemNeighbours.from_events(train, 9000)
    items = torch.randint(1, 9001, (300,), generator=generator)
    with torch.inference_mode():
        inside = neighbours(items)
    assert inside.shape == (300, 20) and torch.equal(inside, neighbours(items))


def test_goldens_on_three_users_and_six_items():
    original = torch.tensor([[1, 5, 6], [3, 1, 2], [5, 2, 4]])  # L; i1 = 1, 3, 5
    baseline = torch.tensor([[5, 6, 2], [1, 2, 5], [2, 4, 6]])  # B: i1 excluded as seen, inputs unchanged
    counterfactual = torch.tensor([[5, 3, 6], [4, 6, 5], [2, 1, 3]])  # L' after the dislike of i1
    neighbours = ItemNeighbours.from_events(TRAIN, num_items=6, m=2)(original[:, 0])
    assert [set(row) for row in neighbours.tolist()] == [{2, 4}, {5, 6}, {6, 3}]

    change = ListChange(k=3)
    change.update(original, counterfactual)
    # rest of L that leaves: user 0 none of {5, 6}; user 1 both of {1, 2}; user 2 item 4 of {2, 4}
    assert change.compute().item() == pytest.approx((0 + 1 + 0.5) / 3)

    suppression = NeighbourSuppression(k=3)
    suppression.update(baseline, counterfactual, neighbours)
    # M_B: 1/3 (item 2 at rank 3), 1/3 (item 5 at rank 3), 1/3 (item 6 at rank 3) = 1
    # M_L': 0, 1/2 + 1/3 (6 and 5 pulled in), 1/3 (item 3 at rank 3) = 7/6
    assert suppression.compute().item() == pytest.approx((1 - 7 / 6) / 1)  # negative: the dislike pulled neighbours in

    # first k columns only, and empty groups are NaN
    wide = NeighbourSuppression(k=2)
    wide.update(baseline, counterfactual, neighbours)
    assert math.isnan(wide.compute().item())  # no baseline top-2 holds a neighbour: no mass to suppress
    assert math.isnan(ListChange(k=3).compute().item())


def test_list_change_counts_only_filled_slots():
    change = ListChange(k=4)
    change.update(torch.tensor([[7, 8, 0, 0], [0, 0, 0, 0]]), torch.tensor([[1, 2, 3, 4], [1, 2, 3, 4]]))
    assert change.compute().item() == 1.0  # user 0: its one other item left; user 1 had no list and does not count


def test_metrics_sum_over_processes_like_one_process():
    torch.manual_seed(0)
    original, counterfactual = torch.randint(1, 30, (50, 10)), torch.randint(1, 30, (50, 10))
    neighbours = torch.randint(0, 30, (50, 5))
    whole, parts = NeighbourSuppression(k=10), [NeighbourSuppression(k=10) for _ in range(2)]
    whole.update(original, counterfactual, neighbours)
    for part, rows in zip(parts, (slice(0, 17), slice(17, 50))):
        part.update(original[rows], counterfactual[rows], neighbours[rows])
    merged = parts[0].baseline_mass + parts[1].baseline_mass, parts[0].counterfactual_mass + parts[1].counterfactual_mass
    # float32 sums in another order: a difference of two masses, so an absolute tolerance
    assert float((merged[0] - merged[1]) / merged[0]) == pytest.approx(whole.compute().item(), abs=1e-6)


def test_the_counterfactual_dislike_enters_every_input_as_the_newest_event():
    batch = {
        "positives": torch.tensor([[0, 4, 5]]), "negatives": torch.tensor([[0, 0, 6]]), "history": torch.tensor([[4, 6, 5]]),
        "seen": torch.tensor([[4, 5, 6]]),
    }
    changed = with_dislike(batch, torch.tensor([9]))
    assert changed["negatives"].tolist() == [[0, 6, 9]] and changed["history"].tolist() == [[6, 5, 9]]
    assert changed["seen"].tolist() == [[4, 5, 6, 9]] and changed["positives"] is batch["positives"]
    assert append_newest(torch.tensor([[1, 2]]), torch.tensor([3])).tolist() == [[2, 3]]


def test_a_random_reshuffle_is_not_rewarded_and_demoting_the_neighbours_is():
    """U users, N items: a scorer whose counterfactual list is an independent random draw, and one that demotes i1's
    neighbours. For the random one each user's M_B and M_L' have the same distribution, so suppression is 0 up to
    noise. Measured over 20 seeds of this very setup (U = 4000, N = 100, m = 20, k = 10): mean 0.005, sd 0.018,
    largest |value| 0.040 (users sharing an i1 share its neighbours, so the sd is about twice the independent-user
    estimate sqrt(2 * 0.16 * 1.55 / U) / (0.2 * H_10)). The bound 0.08 is over 4 sd; the demoting scorer reaches 1."""
    generator = torch.Generator().manual_seed(0)
    n_users, n_items, m, k = 4000, 100, 20, 10
    events = torch.randint(0, 300, (6000,), generator=generator), torch.randint(1, n_items + 1, (6000,), generator=generator)
    neighbours_of = ItemNeighbours.from_events(pl.DataFrame({"user": events[0].numpy(), "item": events[1].numpy()}), n_items, m)
    scores = torch.rand(n_users, n_items + 1, generator=generator)  # (U, N + 1); id 0 is padding, never ranked
    no_seen = torch.zeros(n_users, 1, dtype=torch.long)
    original = top_k(scores, torch.eye(n_items + 1), no_seen, k)[1]  # an identity item table: the user rows are the scores
    first = original[:, 0]
    neighbours = neighbours_of(first)  # (U, m)
    seen = first[:, None]
    baseline = top_k(scores, torch.eye(n_items + 1), seen, k)[1]
    redrawn = top_k(torch.rand(n_users, n_items + 1, generator=generator), torch.eye(n_items + 1), seen, k)[1]
    is_neighbour = torch.zeros(n_users, n_items + 1).scatter_(1, neighbours, 1.0)
    is_neighbour[:, 0] = 0.0
    demoted = top_k(scores - 0.5 * is_neighbour, torch.eye(n_items + 1), seen, k)[1]

    random, demoting = NeighbourSuppression(k), NeighbourSuppression(k)
    random.update(baseline, redrawn, neighbours)
    demoting.update(baseline, demoted, neighbours)
    assert abs(random.compute().item()) < 0.08
    assert demoting.compute().item() > 0.5
    change = ListChange(k)
    change.update(original, redrawn)
    assert change.compute().item() > 0.7  # a reshuffle changes the list a lot: list change alone cannot tell it apart


def _test_metrics(tiny_log: str, **model_args) -> dict[str, float]:
    torch.manual_seed(0)
    data = FeedbackDataModule(path=tiny_log, threshold=4, max_len=10)
    model = NegSeqModule(data.num_items, data.num_train_items, max_len=10, dim=16, **model_args)
    (metrics,) = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False).test(model, datamodule=data, verbose=False)
    return metrics


def test_a_model_that_ignores_negative_history_at_inference_scores_exactly_zero(tiny_log):
    metrics = _test_metrics(tiny_log)  # PNFRec: negative_scoring 0, no fusion
    assert metrics["test/list_change@10"] == 0.0 and metrics["test/neighbour_suppression@10"] == 0.0


@pytest.mark.parametrize("model_args", [{"dislike_demotion": 5.0}, {"negative_scoring": 1.0}, {"family": "whole_history", "alpha": 0.0}])
def test_models_that_read_the_dislike_change_their_lists(tiny_log, model_args):
    metrics = _test_metrics(tiny_log, **model_args)
    assert metrics["test/list_change@10"] > 0.0
    assert math.isfinite(metrics["test/neighbour_suppression@10"])


def test_validation_builds_the_neighbour_table_only_when_it_measures_responsiveness(tiny_log):
    data = FeedbackDataModule(path=tiny_log, threshold=4, max_len=10)
    model = NegSeqModule(data.num_items, data.num_train_items, max_len=10, dim=16)
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    (plain,) = trainer.validate(model, datamodule=data, verbose=False)
    assert "item_neighbours" not in vars(data) and "val/neighbour_suppression@10" not in plain  # nothing asked for it
    model.respond_in_validation = True
    (responding,) = trainer.validate(model, datamodule=data, verbose=False)
    assert "item_neighbours" in vars(data) and math.isfinite(responding["val/neighbour_suppression@10"])
