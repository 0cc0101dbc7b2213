"""Sign, core filter and the three splits, on hand-made logs (expected rows worked out by hand) and on ml-latest-small."""

from __future__ import annotations

import logging
import re

import polars as pl
import pytest
import torch

from negseq.data import splits
from negseq.data.sequences import EvalSequences
from negseq.errors import DataError

EVENT = ["user", "item", "time", "row"]


def decoded(split: splits.Split, frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with user and item codes replaced by the original ids."""
    return frame.with_columns(
        user=split.user_ids.gather(frame["user"]),
        item=split.item_ids.gather(frame["item"] - 1),
    )


def targets_of(split: splits.Split, frame: pl.DataFrame) -> dict:
    """original user -> (original item, time, row, positive) of the user's target."""
    return {u: (i, t, r, p) for u, i, t, r, p in decoded(split, frame.filter("is_target")).select("user", "item", "time", "row", "positive").rows()}


def event_set(frame: pl.DataFrame) -> set[tuple]:
    return set(frame.select(EVENT).rows())


# -- filter_cores --


def core_log() -> list[tuple]:
    """Items A-E, H keep >= 5 users; F (4 users) and G (2 users) go; then u6, u7 (4 items left) go; H keeps only 4 users but stays."""
    rows = []
    t = 0
    for user in ("u1", "u2", "u3", "u4", "u5", "u8"):
        for item in "ABCDE":
            rows.append((user, item, 4.0, (t := t + 1)))
    rows.append(("u1", "A", 2.0, (t := t + 1)))  # repeat: u1 still has 5 distinct items, A still 6 distinct users
    rows.append(("u8", "E", 5.0, (t := t + 1)))  # repeat
    for user in ("u1", "u2", "u3", "u4"):
        rows.append((user, "F", 4.0, (t := t + 1)))  # F: 4 users
    for user in ("u1", "u2", "u3", "u4", "u6"):
        rows.append((user, "H", 4.0, (t := t + 1)))  # H: 5 users before the user filter
    for item in "ABC":
        rows.append(("u6", item, 4.0, (t := t + 1)))
    rows.append(("u6", "G", 4.0, (t := t + 1)))  # G: 1 user
    for item in "ABCDG":
        rows.append(("u7", item, 4.0, (t := t + 1)))  # G: 2 users in all; u7 loses G, then has 4 items
    return rows


def test_filter_cores_items_first_then_users_one_pass(signed_log, caplog):
    rows = core_log()
    frame = signed_log(rows)
    with caplog.at_level(logging.INFO, logger="negseq"):
        kept = splits.filter_cores(frame, 5, 5, "log.csv")
    expected = {i for i, (user, item, _, _) in enumerate(rows) if user not in ("u6", "u7") and item not in ("F", "G")}
    assert set(kept["row"].to_list()) == expected
    assert kept.height == 6 * 5 + 2 + 4  # A-E for six users, two repeats, H for u1-u4
    # one pass: H fell to 4 users when u6 went, and is not filtered again
    assert kept.filter(pl.col("item") == "H")["user"].n_unique() == 4
    # 4 (F) + 2 (G) dropped by the item filter; u6 keeps A, B, C, H (4 events) and u7 keeps A-D (4 events)
    assert "item filter (>= 5 users) dropped 6 events, user filter (>= 5 items) dropped 8 more; 36 events left" in caplog.text


def test_filter_cores_keeps_the_event_order(signed_log):
    frame = signed_log(core_log())
    kept = splits.filter_cores(frame, 5, 5, "log.csv")
    assert kept["row"].to_list() == [row for row in frame["row"].to_list() if row in set(kept["row"].to_list())]


def test_filter_cores_keeps_everything_without_a_copy(signed_log):
    frame = signed_log(core_log())
    kept = splits.filter_cores(frame, 1, 1, "log.csv")
    assert kept is frame


def test_filter_cores_nothing_left(signed_log):
    frame = signed_log([(1, 1, 4.0, 1), (2, 1, 4.0, 2), (1, 2, 4.0, 3)])
    expected = "log.csv: no events left after keeping items with >= 3 users and users with >= 2 items"
    with pytest.raises(DataError, match=re.escape(expected)):
        splits.filter_cores(frame, 3, 2, "log.csv")


# -- leave_last_out, hand-made --

# (user, item, feedback, time); the comment is each user's expected target
LLO_ROWS = [
    ("b", "i1", 4.0, 5),  # 0
    ("a", "i1", 5.0, 10),  # 1
    ("a", "i2", 2.0, 30),  # 2  a: last by time (rows are not in time order), negative
    ("a", "i3", 4.0, 20),  # 3
    ("b", "i4", 5.0, 50),  # 4  tie at 50 with row 5 ...
    ("b", "i3", 4.0, 50),  # 5  ... the later row is b's target
    ("c", "i4", 3.0, 7),  # 6
    ("c", "i1", 4.0, 8),  # 7  c
    ("d", "i3", 2.0, 3),  # 8  d: negative
    ("d", "i2", 5.0, 1),  # 9
    ("e", "i4", 4.0, 100),  # 10 e
    ("e", "i1", 1.0, 90),  # 11
    ("f", "i2", 4.0, 40),  # 12
    ("f", "i1", 4.0, 60),  # 13 f
]
LLO_TARGETS = {
    "a": ("i2", 30, 2, False),
    "b": ("i3", 50, 5, True),
    "c": ("i1", 8, 7, True),
    "d": ("i3", 3, 8, False),
    "e": ("i4", 100, 10, True),
    "f": ("i1", 60, 13, True),
}


def test_leave_last_out_encoding(signed_log):
    split = splits.leave_last_out(signed_log(LLO_ROWS), seed=0)
    assert split.item_ids.to_list() == ["i1", "i2", "i3", "i4"]
    assert split.user_ids.to_list() == ["a", "b", "c", "d", "e", "f"]
    assert split.num_items == 4
    assert split.train.columns == ["user", "item", "positive", "time", "row"]
    assert split.test.columns == ["user", "item", "positive", "time", "row", "is_target"]
    assert split.train["item"].min() >= 1  # 0 is padding


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_leave_last_out_hand_made(signed_log, seed):
    split = splits.leave_last_out(signed_log(LLO_ROWS), seed=seed)
    validation, test = decoded(split, split.validation), decoded(split, split.test)
    # one target per evaluated user, and it is the expected one (last by time, ties -> later row)
    for frame in (validation, test):
        assert frame.group_by("user").agg(pl.col("is_target").sum())["is_target"].to_list() == [1] * frame["user"].n_unique()
    test_targets = targets_of(split, split.test)
    validation_targets = targets_of(split, split.validation)
    for user, target in {**test_targets, **validation_targets}.items():
        assert target == LLO_TARGETS[user]
    # test takes the larger half; the other half is validation, minus users whose target is negative
    assert len(test_targets) == 3
    others = set(LLO_TARGETS) - set(test_targets)
    assert set(validation_targets) == {u for u in others if LLO_TARGETS[u][3]}
    assert all(positive for _, _, _, positive in validation_targets.values())
    # evaluated users carry all their events; train has exactly the non-target events of every user
    everything = {(u, i, t, r) for r, (u, i, _, t) in enumerate(LLO_ROWS)}
    held_out = {(u, i, t, r) for u, (i, t, r, _) in LLO_TARGETS.items()}
    for frame in (validation, test):
        users = set(frame["user"].to_list())
        assert event_set(frame) == {e for e in everything if e[0] in users}
    assert event_set(decoded(split, split.train)) == everything - held_out


def test_leave_last_out_seed(signed_log):
    frame = signed_log(LLO_ROWS)
    first, again = splits.leave_last_out(frame, seed=0), splits.leave_last_out(frame, seed=0)
    assert first.test.equals(again.test) and first.validation.equals(again.validation) and first.train.equals(again.train)
    test_users = {seed: set(splits.leave_last_out(frame, seed=seed).test["user"].unique().to_list()) for seed in range(4)}
    assert len({frozenset(users) for users in test_users.values()}) > 1


# -- leave_last_out, ml-latest-small --


def test_leave_last_out_ml_latest_small_sizes(embedded_events, embedded_split):
    assert embedded_split.num_items == 3650
    assert embedded_split.train.height == 89664
    assert embedded_split.test["user"].n_unique() == 305
    assert embedded_events["user"].n_unique() == 610
    assert embedded_split.train.height + 610 == embedded_events.height


def test_leave_last_out_ml_latest_small_invariants(embedded_events, embedded_split):
    split = embedded_split
    validation, test = split.validation, split.test
    # exactly one target per evaluated user
    for frame in (validation, test):
        assert (frame.group_by("user").agg(pl.col("is_target").sum())["is_target"] == 1).all()
    # the target is the user's last event of the (filtered) input by time, ties to the later row
    expected = (
        embedded_events.sort("time", "row")
        .group_by("user", maintain_order=True)
        .last()
        .select("user", "item", "time", "row")
    )
    targets = decoded(split, pl.concat([validation, test]).filter("is_target")).select(expected.columns)
    assert targets.join(expected, on=expected.columns, how="anti").height == 0
    assert targets["user"].n_unique() == targets.height
    # the input does have time ties on a user's last second, so the row tie-break is exercised
    last_time = embedded_events.join(expected.select("user", "time"), on=["user", "time"])
    assert (last_time.group_by("user").len()["len"] > 1).any()
    # no target in train
    assert event_set(split.train) & event_set(pl.concat([validation, test]).filter("is_target")) == set()
    # disjoint halves covering every user; validation targets are positive
    validation_users, test_users = set(validation["user"].unique()), set(test["user"].unique())
    assert validation_users.isdisjoint(test_users)
    other_half = set(range(610)) - test_users
    assert len(other_half) == 305
    assert validation["positive"].filter(validation["is_target"]).all()
    # validation = exactly the users of the other half whose last event is positive
    last_positive = set(expected.join(embedded_events.select("row", "positive"), on="row").filter("positive")["user"])
    other_half_original = set(split.user_ids.gather(sorted(other_half)).to_list())
    assert set(split.user_ids.gather(sorted(validation_users)).to_list()) == other_half_original & last_positive
    assert len(validation_users) > 0


def test_leave_last_out_ml_latest_small_seed(embedded_events, embedded_split):
    again = splits.leave_last_out(embedded_events, seed=42)
    assert again.test.equals(embedded_split.test) and again.validation.equals(embedded_split.validation)
    other = splits.leave_last_out(embedded_events, seed=43)
    assert set(other.test["user"].unique()) != set(embedded_split.test["user"].unique())
    assert other.train.equals(embedded_split.train)  # the seed only moves users between validation and test


# -- leave_last_out, holdout every_user (the SASRec leave-one-out) --


def test_an_unknown_holdout_is_refused_by_name(signed_log):
    """Called directly (not through the DataModule, which checks it first), a misspelt holdout is an error, not the default."""
    with pytest.raises(DataError, match=re.escape("unknown holdout 'every_users'; expected one of ['half_users', 'every_user']")):
        splits.leave_last_out(signed_log(LLO_ROWS), seed=0, holdout="every_users")


def test_every_user_hand_made(signed_log):
    split = splits.leave_last_out(signed_log(LLO_ROWS), seed=0, validation_targets="all", holdout="every_user")
    # a and b have 3 events: test target the last, validation target the one before; c..f (2 events) only train
    assert targets_of(split, split.test) == {"a": LLO_TARGETS["a"], "b": LLO_TARGETS["b"]}
    assert targets_of(split, split.validation) == {"a": ("i3", 20, 3, True), "b": ("i4", 50, 4, True)}
    everything = {(u, i, t, r) for r, (u, i, _, t) in enumerate(LLO_ROWS)}
    assert event_set(decoded(split, split.test)) == {e for e in everything if e[0] in "ab"}
    assert event_set(decoded(split, split.validation)) == {e for e in everything if e[0] in "ab"} - {("a", "i2", 30, 2), ("b", "i3", 50, 5)}
    assert event_set(decoded(split, split.train)) == everything - {("a", "i2", 30, 2), ("b", "i3", 50, 5), ("a", "i3", 20, 3), ("b", "i4", 50, 4)}


def test_every_user_validation_targets_positive_drops_disliked_validation_targets(signed_log):
    rows = LLO_ROWS + [("g", "i2", 5.0, 1), ("g", "i4", 1.0, 2), ("g", "i1", 5.0, 3)]  # g's validation target is disliked
    split = splits.leave_last_out(signed_log(rows), seed=0, holdout="every_user")
    assert set(decoded(split, split.test)["user"].unique()) == {"a", "b", "g"}
    assert set(decoded(split, split.validation)["user"].unique()) == {"a", "b"}


def test_every_user_ml_latest_small_invariants(embedded_events):
    split = splits.leave_last_out(embedded_events, seed=42, validation_targets="all", holdout="every_user")
    assert (embedded_events.group_by("user").len()["len"] >= 3).all()
    # so every user is a test and a validation user, with one target each
    for frame in (split.test, split.validation):
        assert frame["user"].n_unique() == 610
        assert (frame.group_by("user").agg(pl.col("is_target").sum())["is_target"] == 1).all()
    assert split.train.height + 2 * 610 == embedded_events.height
    # in time order (event order), the validation target is the event just before the test target
    for frame in (split.train, split.validation, split.test):
        assert frame.equals(frame.sort("user", "time", "row"))
    test_last = split.test.group_by("user", maintain_order=True).agg(pl.col("row").last(), pl.col("is_target").last(), pl.col("row").get(pl.len() - 2).alias("before"))
    assert test_last["is_target"].all()
    validation_last = split.validation.group_by("user", maintain_order=True).agg(pl.col("row").last(), pl.col("is_target").last(), pl.len())
    assert validation_last["is_target"].all()
    assert validation_last.join(test_last, on="user").select((pl.col("row") == pl.col("before")).all()).item()
    # validation history = test history minus the validation target; training = events before the validation target
    assert event_set(split.validation) == event_set(split.test) - event_set(split.test.filter("is_target"))
    assert event_set(split.train) == event_set(split.validation) - event_set(split.validation.filter("is_target"))
    # the paper's validation keeps the users whose validation target is liked; test users are the same
    positive = splits.leave_last_out(embedded_events, seed=42, holdout="every_user")
    assert positive.test.equals(split.test)
    assert set(positive.validation["user"].unique()) == set(split.validation.filter(pl.col("is_target") & pl.col("positive"))["user"])


# -- temporal --


def temporal_log() -> list[tuple]:
    """54 events before the cut (6 users x 9 items, times 0..530) and 6 after it.

    60 timestamps: the 0.9 quantile sits at position 59 * 0.9 = 53.1, between 530 (position 53)
    and 1000 (position 54): linear interpolation gives 530 + 0.1 * 470 = 577.
    """
    held_out = [
        ("u1", "i1", 5.0, 1000),  # history of u1 (held-out period)
        ("u3", "X", 5.0, 1030),  # item unseen before the cut: dropped
        ("u1", "i2", 1.0, 1010),  # u1's target, negative
        ("u2", "i3", 5.0, 1020),  # u2's target, positive
        ("NEW", "i1", 5.0, 1040),  # user unseen before the cut: dropped
        ("u4", "i4", 2.0, 1050),  # u4's target, negative
    ]
    before = [(f"u{k // 9 + 1}", f"i{k % 9 + 1}", float(k % 5 + 1), 10 * k) for k in range(54)]
    return held_out + before  # held-out rows first: nothing may rely on input order


def test_temporal_split(signed_log, caplog):
    rows = temporal_log()
    with caplog.at_level(logging.INFO, logger="negseq"):
        split = splits.temporal(signed_log(rows), seed=0)
    cut = re.search(r"temporal split at t=(\S+): 6 held-out events, 2 of unseen users or items dropped", caplog.text)
    assert cut and float(cut.group(1)) == pytest.approx(577.0)
    assert split.user_ids.to_list() == ["u1", "u2", "u3", "u4", "u5", "u6"]
    assert split.item_ids.to_list() == [f"i{k}" for k in range(1, 10)]
    # train: exactly the events before the cut
    train = decoded(split, split.train)
    assert train["row"].sort().to_list() == list(range(6, 60))
    assert train["time"].max() == 530
    # held-out users: u1, u2, u4; test gets 2 of them, validation the third if its target is positive
    expected_targets = {"u1": ("i2", 1010, 2, False), "u2": ("i3", 1020, 3, True), "u4": ("i4", 1050, 5, False)}
    test_targets, validation_targets = targets_of(split, split.test), targets_of(split, split.validation)
    assert len(test_targets) == 2
    assert {**test_targets, **validation_targets}.items() <= expected_targets.items()
    (other,) = set(expected_targets) - set(test_targets)
    assert set(validation_targets) == ({other} if expected_targets[other][3] else set())
    assert all(time >= 577 for _, time, _, _ in {**test_targets, **validation_targets}.values())
    # a held-out user's history: all their train events plus earlier held-out events
    for frame in (split.validation, split.test):
        for user, events in decoded(split, frame).group_by("user"):
            user = user[0]
            expected_rows = {r for r, (u, _, _, t) in enumerate(rows) if u == user and (t < 577 or r in (0, 2, 3, 5))}
            assert set(events["row"].to_list()) == expected_rows
    # nothing of the unseen user or item anywhere
    for frame in (split.train, split.validation, split.test):
        assert not set(frame["row"].to_list()) & {1, 4}


def test_temporal_seed_picks_the_test_half(signed_log):
    frame = signed_log(temporal_log())
    halves = {frozenset(splits.temporal(frame, seed=seed).test["user"].unique().to_list()) for seed in range(6)}
    assert len(halves) > 1


def test_temporal_events_at_the_cut_are_held_out(signed_log):
    # ten timestamps 0, 10, ..., 90: the 0.9 quantile is exactly 81; make it a timestamp by adding one at 81
    rows = [(f"u{k % 3}", f"i{k % 4}", 5.0, 10 * k) for k in range(9)]  # 0..80
    rows += [("u0", "i1", 5.0, 81), ("u1", "i2", 5.0, 100)]  # 11 stamps: position 9.0 -> cut 81 exactly
    split = splits.temporal(signed_log(rows), seed=0)
    assert split.train["time"].max() == 80
    held_out = pl.concat([split.validation, split.test]).filter("is_target")
    assert sorted(held_out["time"].to_list()) == [81, 100]


def test_temporal_without_events_before_the_cut(signed_log):
    frame = signed_log([("u1", "i1", 5.0, 7), ("u2", "i1", 5.0, 7)])
    with pytest.raises(DataError, match=re.escape("temporal split: no events before the cut 7.0")):
        splits.temporal(frame, seed=0)


# -- presplit --


def test_presplit(signed_log, caplog):
    train = signed_log(
        [
            ("u1", "i1", 5.0, 1),
            ("u1", "i2", 2.0, 2),
            ("u2", "i2", 4.0, 3),
            ("u2", "i3", 5.0, 4),
            ("u3", "i1", 1.0, 5),
        ]
    )
    validation = signed_log(
        [
            ("u1", "i3", 5.0, 10),  # history
            ("u1", "i1", 4.0, 11),  # u1's target, positive
            ("u3", "i9", 5.0, 12),  # item absent from train: dropped, so u3 has no validation event
            ("u4", "i2", 1.0, 13),  # new user with a negative target: not a validation user
        ]
    )
    test = signed_log(
        [
            ("u2", "i1", 4.0, 20),  # u2's target: the last event of a known item
            ("u3", "i2", 1.0, 25),  # u3's target, negative
            ("u2", "i9", 5.0, 30),  # absent from train: dropped
            ("u5", "i3", 5.0, 26),  # new user, no history
        ]
    )
    with caplog.at_level(logging.INFO, logger="negseq"):
        split = splits.presplit(train, validation, test)
    assert "presplit validation: dropped 1 events of items absent from train" in caplog.text
    assert "presplit test: dropped 1 events of items absent from train" in caplog.text
    assert split.item_ids.to_list() == ["i1", "i2", "i3"]
    assert split.user_ids.to_list() == ["u1", "u2", "u3", "u4", "u5"]
    assert decoded(split, split.train).select("user", "item", "time").rows() == [
        ("u1", "i1", 1), ("u1", "i2", 2), ("u2", "i2", 3), ("u2", "i3", 4), ("u3", "i1", 5)
    ]
    columns = ["user", "item", "time", "positive", "is_target"]
    assert decoded(split, split.validation).select(columns).rows() == [
        ("u1", "i1", 1, True, False),
        ("u1", "i2", 2, False, False),
        ("u1", "i3", 10, True, False),
        ("u1", "i1", 11, True, True),
    ]
    assert decoded(split, split.test).select(columns).rows() == [
        ("u2", "i2", 3, True, False),
        ("u2", "i3", 4, True, False),
        ("u2", "i1", 20, True, True),
        ("u3", "i1", 5, False, False),
        ("u3", "i2", 25, False, True),
        ("u5", "i3", 26, True, True),
    ]


def test_presplit_test_history_holds_the_validation_file(signed_log):
    """Train [a, b], validation [c], test [d, e]: the test input is a, b, c, d and the target e (c was left out before)."""
    train = signed_log([("u1", "a", 5.0, 1), ("u1", "b", 5.0, 2), *[("u2", item, 5.0, t) for t, item in enumerate("cde")]])
    validation = signed_log([("u1", "c", 5.0, 3)])
    test = signed_log([("u1", "d", 5.0, 4), ("u1", "e", 5.0, 5)])
    split = splits.presplit(train, validation, test)
    rows = decoded(split, split.test).filter(pl.col("user") == "u1").select("item", "is_target").rows()
    assert rows == [("a", False), ("b", False), ("c", False), ("d", False), ("e", True)]
    sequences = EvalSequences.from_events(split.test, max_len=5)
    c = split.item_ids.to_list().index("c") + 1
    assert c in sequences.positives[0].tolist() and c in sequences.seen_matrix(torch.tensor([0]))[0].tolist()  # read, and never recommended again
    # validation still holds train plus the validation file only
    assert decoded(split, split.validation).select("item", "is_target").rows() == [("a", False), ("b", False), ("c", True)]


def test_presplit_target_is_last_of_the_held_out_file(signed_log):
    train = signed_log([("u1", "i1", 5.0, 100), ("u1", "i2", 5.0, 200)])
    # held-out events out of row order, with a time tie: row 2 (time 60) is later than row 0 (time 60)
    test = signed_log([("u1", "i2", 5.0, 60), ("u1", "i1", 5.0, 50), ("u1", "i1", 2.0, 60)])
    split = splits.presplit(train, test, test)
    target = split.test.filter("is_target")
    assert target.select("item", "time", "row", "positive").rows() == [(1, 60, 2, False)]


def test_presplit_id_types_must_agree(signed_log):
    train = signed_log([(1, 1, 5.0, 1)])
    strings = signed_log([("1", 1, 5.0, 2)])
    with pytest.raises(DataError, match=re.escape("presplit: user ids have different types across the files")):
        splits.presplit(train, strings, train)


# -- validation_targets --


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_leave_last_out_validation_can_keep_negative_targets(signed_log, seed):
    frame = signed_log(LLO_ROWS)
    paper, kept = splits.leave_last_out(frame, seed=seed), splits.leave_last_out(frame, seed=seed, validation_targets="all")
    # the same test users and train events; validation gains exactly the users whose target is disliked
    assert kept.test.equals(paper.test) and kept.train.equals(paper.train)
    validation_targets = targets_of(kept, kept.validation)
    assert set(validation_targets) == set(LLO_TARGETS) - set(targets_of(kept, kept.test))
    assert kept.validation.filter(pl.col("user").is_in(paper.validation["user"].implode())).equals(paper.validation)


def test_temporal_and_presplit_validation_can_keep_negative_targets(signed_log):
    frame = signed_log(temporal_log())
    for make in (lambda targets: splits.temporal(frame, seed=0, validation_targets=targets),
                 lambda targets: splits.presplit(frame, frame, frame, validation_targets=targets)):
        paper, kept = make("positive"), make("all")
        assert kept.test.equals(paper.test)
        negative_users = kept.validation.filter(pl.col("is_target") & ~pl.col("positive"))["user"]
        assert negative_users.len() > 0 and not paper.validation.filter(pl.col("is_target") & ~pl.col("positive")).height
        assert kept.validation.filter(~pl.col("user").is_in(negative_users.implode())).equals(paper.validation)
