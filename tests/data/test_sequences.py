"""Right-aligned sequence matrices: TrainSequences and EvalSequences against hand-written expectations."""

from __future__ import annotations

import polars as pl
import pytest
import torch

from negseq.data.sequences import EvalSequences, TrainSequences


def frame(rows: list[tuple], columns: list[str]) -> pl.DataFrame:
    """Events as a split gives them: sorted by user, then time, then row."""
    out = pl.DataFrame(rows, schema=columns, orient="row").with_row_index("row")
    return out.with_columns(pl.col("row").cast(pl.UInt32)).sort("user", "time", "row")


# -- TrainSequences --

TRAIN_COLUMNS = ["user", "item", "positive", "time"]


def train_frame() -> pl.DataFrame:
    return frame(
        [
            # user 0: + - + + - + +  (items 1..7 in time order, given out of order here)
            (0, 3, True, 30),
            (0, 1, True, 10),
            (0, 2, False, 20),
            (0, 4, True, 40),
            (0, 5, False, 50),
            (0, 6, True, 60),
            (0, 7, True, 70),
            (1, 8, True, 5),  # user 1: a single event: no label anywhere, dropped
            (2, 9, False, 1),  # user 2: two negatives
            (2, 1, False, 2),
            (3, 2, True, 1),  # user 3: one positive, one negative: only the mixed history has a label
            (3, 3, False, 2),
            (4, 4, True, 1),  # user 4: the same item twice
            (4, 4, True, 9),
        ],
        TRAIN_COLUMNS,
    )


def test_train_sequences_exact_matrices():
    sequences = TrainSequences.from_events(train_frame(), max_len=3)  # width 4: inputs [:-1], labels [1:]
    assert len(sequences) == 4  # users 0, 2, 3, 4
    assert sequences.positives.tolist() == [
        [3, 4, 6, 7],
        [0, 0, 0, 0],
        [0, 0, 0, 2],
        [0, 0, 4, 4],
    ]
    assert sequences.negatives.tolist() == [
        [0, 0, 2, 5],
        [0, 0, 9, 1],
        [0, 0, 0, 3],
        [0, 0, 0, 0],
    ]
    assert sequences.history.tolist() == [
        [4, 5, 6, 7],
        [0, 0, 9, 1],
        [0, 0, 2, 3],
        [0, 0, 4, 4],
    ]
    assert sequences.history_positive.dtype == torch.bool
    assert sequences.history_positive.tolist() == [
        [True, False, True, True],
        [False, False, False, False],
        [False, False, True, False],
        [False, False, True, True],
    ]
    # stored narrow (half the memory), handed to the model as int64 (cross-entropy targets and gathers need it)
    assert sequences.positives.dtype == sequences.negatives.dtype == sequences.history.dtype == sequences.positives_order.dtype == torch.int32
    batch = sequences.take(torch.arange(4))
    assert {name: batch[name].dtype for name in batch} == {**dict.fromkeys(batch, torch.int64), "history_positive": torch.bool}


@pytest.mark.parametrize("kind", ["train", "eval"])
def test_sequences_built_in_blocks_of_users_equal_one_block(kind, monkeypatch):
    from negseq.data import sequences as module

    build, events = (TrainSequences.from_events, train_frame()) if kind == "train" else (EvalSequences.from_events, eval_frame())
    whole = build(events, max_len=3)
    monkeypatch.setattr(module, "BLOCK_EVENTS", 2)  # about every user its own block (blocks hold whole users)
    assert len(module.user_blocks(events["user"].to_numpy(), 2)) >= 3
    blocks = build(events, max_len=3)
    for name in whole.__dataclass_fields__:
        assert getattr(blocks, name).dtype == getattr(whole, name).dtype and torch.equal(getattr(blocks, name), getattr(whole, name)), name


def test_train_sequences_padding_marks_no_sign():
    sequences = TrainSequences.from_events(train_frame(), max_len=5)
    # padded positions are never positive
    assert not sequences.history_positive[sequences.history == 0].any()
    # every user kept has at least one next-item label
    assert (sequences.history[:, -2] > 0).all()


def test_train_sequences_take_rows():
    sequences = TrainSequences.from_events(train_frame(), max_len=3)
    batch = sequences.take(torch.tensor([3, 0]))
    assert set(batch) == {"positives", "negatives", "history", "history_positive", "positives_order", "negatives_order"}
    assert batch["positives"].tolist() == [[0, 0, 4, 4], [3, 4, 6, 7]]


def test_train_sequences_all_users_dropped():
    lone = frame([(0, 1, True, 1), (1, 2, False, 1)], TRAIN_COLUMNS)
    sequences = TrainSequences.from_events(lone, max_len=3)
    assert len(sequences) == 0
    assert sequences.positives.shape == (0, 4)


# -- EvalSequences --

EVAL_COLUMNS = ["user", "item", "positive", "time", "is_target"]


def eval_frame() -> pl.DataFrame:
    return frame(
        [
            # user 7: history + - - + + - then a positive target; item 1 seen with both signs
            (7, 1, True, 1, False),
            (7, 2, False, 2, False),
            (7, 1, False, 3, False),
            (7, 3, True, 4, False),
            (7, 4, True, 5, False),
            (7, 5, False, 6, False),
            (7, 6, True, 7, True),
            # user 2: one negative in history, negative target
            (2, 8, False, 1, False),
            (2, 9, False, 2, True),
            # user 4: no history at all
            (4, 3, True, 1, True),
        ],
        EVAL_COLUMNS,
    )


def test_eval_sequences_exact_matrices():
    sequences = EvalSequences.from_events(eval_frame(), max_len=3)
    assert sequences.user.tolist() == [2, 4, 7]  # sorted users
    assert sequences.target.tolist() == [9, 3, 6]
    assert sequences.target_positive.tolist() == [False, True, True]
    assert sequences.positives.tolist() == [
        [0, 0, 0],
        [0, 0, 0],
        [1, 3, 4],  # positives before the target only: the negative re-watch of 1 does not remove it
    ]
    assert sequences.history.tolist() == [
        [0, 0, 8],
        [0, 0, 0],
        [3, 4, 5],
    ]
    # seen: distinct history items of both signs, flat with offsets (item 1, seen twice, once)
    assert sequences.seen_items.tolist() == [8, 1, 2, 3, 4, 5]
    assert sequences.seen_offsets.tolist() == [0, 1, 1, 6]
    # in a batch: (B, S) padded with 0, S = the most distinct items of a user in the batch (user 7: 1..5)
    seen = sequences.take(torch.arange(3))["seen"]
    assert seen.dtype == torch.int64
    assert seen.tolist() == [[8, 0, 0, 0, 0], [0, 0, 0, 0, 0], [1, 2, 3, 4, 5]]
    assert 6 not in seen.tolist()[2]  # the target is not seen


def test_eval_sequences_seen_is_not_truncated_to_max_len():
    rows = [(0, item, True, item, False) for item in range(1, 9)] + [(0, 20, True, 99, True)]
    sequences = EvalSequences.from_events(frame(rows, EVAL_COLUMNS), max_len=2)
    assert sequences.positives.tolist() == [[7, 8]]
    assert sequences.take(torch.tensor([0]))["seen"].tolist() == [[1, 2, 3, 4, 5, 6, 7, 8]]


def test_eval_sequences_without_any_history():
    rows = [(3, 5, False, 1, True), (1, 2, True, 4, True)]
    sequences = EvalSequences.from_events(frame(rows, EVAL_COLUMNS), max_len=4)
    assert sequences.user.tolist() == [1, 3]
    assert sequences.take(torch.tensor([0, 1]))["seen"].tolist() == [[0], [0]]
    assert sequences.seen_items.numel() == 0
    assert sequences.history.tolist() == [[0, 0, 0, 0], [0, 0, 0, 0]]


def test_eval_sequences_take():
    sequences = EvalSequences.from_events(eval_frame(), max_len=3)
    batch = sequences.take(torch.tensor([2]))
    assert set(batch) == {"user", "positives", "negatives", "history", "history_positive", "seen", "target", "target_positive"}
    assert batch["user"].tolist() == [7] and batch["target"].tolist() == [6]
    # the last 3 of user 7's history (+ - - + + -) with their signs, what a signed model reads
    assert batch["history"].tolist() == [[3, 4, 5]] and batch["history_positive"].tolist() == [[True, True, False]]


def test_eval_batch_seen_is_as_wide_as_its_widest_user_only():
    # user 0 has seen 300 items, users 1-3 one each: a batch without user 0 is one column wide
    rows = [(0, item, True, item, False) for item in range(1, 301)] + [(0, 400, True, 999, True)]
    for user in (1, 2, 3):
        rows += [(user, 500 + user, False, 1, False), (user, 600, True, 2, True)]
    sequences = EvalSequences.from_events(frame(rows, EVAL_COLUMNS), max_len=5)
    assert sequences.positives.shape == (4, 5)
    assert sequences.seen_items.numel() == 303  # memory: the distinct (user, item) pairs, not users x longest
    assert sequences.take(torch.tensor([3, 1]))["seen"].tolist() == [[503], [501]]
    assert sequences.take(torch.tensor([2, 0]))["seen"].shape == (2, 300)


def test_eval_sequences_interleaved_users_and_unsorted_rows():
    # rows of several users interleaved (still time-ordered within each user): the same matrices
    ordered = eval_frame()
    interleaved = ordered.sort("time", "user")
    a, b = EvalSequences.from_events(ordered, 3), EvalSequences.from_events(interleaved, 3)
    every = torch.arange(len(a))
    for key, value in a.take(every).items():
        assert torch.equal(value, b.take(every)[key]), key


def test_train_sequences_orders_interleave_the_two_signs_in_time():
    sequences = TrainSequences.from_events(train_frame(), max_len=3)
    # padding has order 0; a real item has a positive order
    for items, order in ((sequences.positives, sequences.positives_order), (sequences.negatives, sequences.negatives_order)):
        assert ((order == 0) == (items == 0)).all()
    # merging each user's liked and disliked items by order gives the user's items in time order
    expected = [[2, 3, 4, 5, 6, 7], [9, 1], [2, 3], [4, 4]]  # users 0, 2, 3, 4; user 0's liked item 1 is cut by max_len
    for row, timeline in enumerate(expected):
        pairs = [
            (int(o), int(i))
            for items, order in ((sequences.positives, sequences.positives_order), (sequences.negatives, sequences.negatives_order))
            for i, o in zip(items[row], order[row])
            if i > 0
        ]
        assert [item for _, item in sorted(pairs)] == timeline


def test_eval_sequences_negatives_are_the_disliked_history():
    sequences = EvalSequences.from_events(eval_frame(), max_len=3)
    assert sequences.negatives.tolist() == [
        [0, 0, 8],  # user 2: the disliked target (9) is not history
        [0, 0, 0],
        [2, 1, 5],  # user 7: the disliked re-watch of item 1 counts, in time order
    ]
