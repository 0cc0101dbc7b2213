"""Filter, encode and split signed events (polars frames in, polars frames out).

A split is a training frame plus, for the validation and for the test users, every event of
each user with the held-out target marked. Ids are encoded here: items as 1..N (0 is
padding everywhere downstream), users as 0..U-1, both in sorted order of the original ids,
whose values are kept to decode recommendations.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import polars as pl

from negseq.data import ids
from negseq.data.order import event_order
from negseq.deprecation import moved
from negseq.errors import DataError

log = logging.getLogger("negseq")

# the choices of FeedbackDataModule's arguments, declared once: its annotations and its checks read them
SplitName = Literal["leave_last_out", "temporal", "presplit", "none"]
ValidationTargets = Literal["positive", "all"]
Holdout = Literal["half_users", "every_user"]
SPLITS, VALIDATION_TARGETS, HOLDOUTS = get_args(SplitName), get_args(ValidationTargets), get_args(Holdout)
PRESPLIT_FILES = ("train.parquet", "validation.parquet", "test.parquet")


@dataclass
class Split:
    """Encoded events ready for sequence building.

    ``train`` has columns user, item, positive, time, row. ``validation`` and ``test`` have the
    same columns plus ``is_target``: all events of each evaluated user (history and target),
    exactly one target per user. ``item_ids[c - 1]`` and ``user_ids[u]`` are the original ids.
    """

    train: pl.DataFrame
    validation: pl.DataFrame
    test: pl.DataFrame
    item_ids: pl.Series
    user_ids: pl.Series

    @property
    def num_items(self) -> int:
        return self.item_ids.len()


def filter_cores(frame: pl.DataFrame, min_item_users: int, min_user_items: int, source: str | Path) -> pl.DataFrame:
    """Keep items with ``min_item_users`` distinct users, then users with ``min_user_items`` distinct items (one pass, as the paper).

    Both counts come from the distinct (user, item) pairs; the events are filtered once, in order.
    """
    before = frame.height
    drop_item, drop_user = _small_items_and_users(frame, min_item_users, min_user_items)
    dropped_by_items = int(drop_item.sum())
    drop = drop_item | drop_user
    if drop.any():
        frame = frame.filter(~pl.Series(drop))
    log.info(
        "%s: item filter (>= %d users) dropped %d events, user filter (>= %d items) dropped %d more; %d events left",
        source, min_item_users, dropped_by_items, min_user_items, before - dropped_by_items - frame.height, frame.height,
    )
    if frame.height == 0:
        raise DataError(
            f"{source}: no events left after keeping items with >= {min_item_users} users and users with >= {min_user_items} items; "
            "lower --data.min_item_users / --data.min_user_items"
        )
    return frame


def _small_items_and_users(frame: pl.DataFrame, min_item_users: int, min_user_items: int) -> tuple[np.ndarray, np.ndarray]:
    """Per event: is its item below ``min_item_users`` users, and (after dropping those) its user below ``min_user_items`` items."""
    users, n_users = ids.dense(frame["user"])
    items, n_items = ids.dense(frame["item"])
    pairs = users.astype(np.uint64)  # (events,) user * n_items + item, built in place
    pairs *= np.uint64(n_items)
    pairs += items
    pairs = pl.Series(pairs).sort().to_numpy()
    pairs = pairs[np.concatenate([[True], pairs[1:] != pairs[:-1]])] if len(pairs) else pairs  # distinct (user, item) pairs
    pair_item = (pairs % np.uint64(n_items)).astype(np.int32)  # codes < 2**31 (see ids.dense)
    small_item = np.bincount(pair_item, minlength=n_items) < min_item_users
    pairs = pairs[~small_item[pair_item]]
    del pair_item
    small_user = np.bincount((pairs // np.uint64(n_items)).astype(np.int32), minlength=n_users) < min_user_items
    return small_item[items], small_user[users]


def _encode(frame: pl.DataFrame, item_ids: pl.Series, user_ids: pl.Series) -> pl.DataFrame:
    """Replace original ids by codes (items 1..N, users 0..U-1); rows with unknown ids are dropped.

    The result is in event order (user, time, row): it keeps the order of a frame already in it
    (codes follow the sorted original ids), and sorts any other.
    """
    columns = ["user", "item", "positive", "time", "row", *[c for c in frame.columns if c == "is_target"]]
    encoded = frame.select(columns).with_columns(user=ids.codes(frame["user"], user_ids, 0), item=ids.codes(frame["item"], item_ids, 1))
    if encoded["user"].null_count() or encoded["item"].null_count():
        encoded = encoded.drop_nulls(["user", "item"])
    return event_order(encoded)


def _mark_last_event(frame: pl.DataFrame) -> pl.DataFrame:
    """Flag each user's last event by time; ties broken by input row order (the later row is last)."""
    frame = event_order(frame)
    return frame.with_columns(is_target=(pl.col("user") != pl.col("user").shift(-1)).fill_null(True))


def _halve_users(users: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Shuffle users with ``seed`` and cut the list in two: (validation users, test users)."""
    shuffled = np.random.default_rng(seed).permutation(np.sort(users))
    half = len(shuffled) // 2
    return shuffled[:half], shuffled[half:]


def _evaluation_frames(events: pl.DataFrame, seed: int, validation_targets: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split the users of ``events`` (encoded, all events, target marked) 50/50.

    With ``validation_targets="positive"`` (the paper) validation keeps the users whose target
    is liked only; ``"all"`` keeps the others too, so that negative metrics can be watched and
    selected on without looking at the test users (who are the same either way).
    """
    validation_users, test_users = _halve_users(events.filter("is_target")["user"].to_numpy(), seed)
    role = np.zeros(int(events["user"].max() or 0) + 1, dtype=np.int8)  # by user code: 1 validation, 2 test (no events: max() is None)
    role[validation_users] = 1
    role[test_users] = 2
    of_user = pl.Series(role).gather(events["user"])
    return _validation_users(events.filter(of_user == 1), validation_targets), events.filter(of_user == 2)


def _validation_users(validation: pl.DataFrame, validation_targets: str) -> pl.DataFrame:
    """``validation`` as is for ``"all"``; for ``"positive"`` (the paper) only the users whose target is liked, with all their events."""
    if validation_targets == "all":
        return validation
    liked = validation.filter(pl.col("is_target") & pl.col("positive"))["user"]
    return validation.filter(pl.col("user").is_in(liked.implode()))


def leave_last_out(frame: pl.DataFrame, seed: int, validation_targets: str = "positive", holdout: str = "half_users") -> Split:
    """Each user's last event is held out.

    ``holdout="half_users"`` (the paper): users are split 50/50 into validation and test.
    ``"every_user"``: every user is both (:func:`_every_user_frames`), about twice the test users.
    """
    if holdout not in HOLDOUTS:
        raise DataError(f"unknown holdout {holdout!r}; expected one of {list(HOLDOUTS)}")
    item_ids, user_ids = ids.vocabulary(frame["item"]), ids.vocabulary(frame["user"])
    events = _mark_last_event(_encode(frame, item_ids, user_ids))
    if holdout == "every_user":
        return Split(*_every_user_frames(events, validation_targets), item_ids, user_ids)
    validation, test = _evaluation_frames(events, seed, validation_targets)
    train = events.filter(~pl.col("is_target")).drop("is_target")
    return Split(train, validation, test, item_ids, user_ids)


def _every_user_frames(events: pl.DataFrame, validation_targets: str) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(train, validation, test) of the common SASRec leave-one-out, for ``events`` in event order with the last one marked.

    Every user with at least 3 events is a test user (target: the last event, history: all before it)
    and a validation user (target: the event before the test target, history: the events before that);
    training has the events before the validation target. Users with fewer events are training only.
    """
    from_end = pl.len().over("user") - 1 - pl.int_range(pl.len()).over("user")  # 0 = the user's last event
    events = events.with_columns(from_end=from_end, evaluated=pl.len().over("user") >= 3)
    test = events.filter("evaluated")
    validation = test.filter(pl.col("from_end") >= 1).with_columns(is_target=pl.col("from_end") == 1)
    train = events.filter(~pl.col("evaluated") | (pl.col("from_end") >= 2)).drop("is_target")
    validation, test, train = (frame.drop("from_end", "evaluated") for frame in (validation, test, train))
    return train, _validation_users(validation, validation_targets), test


def temporal(frame: pl.DataFrame, seed: int, validation_targets: str = "positive", quantile: float = 0.9) -> Split:
    """The paper's global temporal split: events at or after the ``quantile`` of all timestamps are held out.

    Held-out events of users or items unseen before the cut are dropped. Each held-out user's
    target is their last event; their history is everything before it, both periods included.
    """
    cut = frame["time"].quantile(quantile, interpolation="linear")
    before_cut = frame.filter(pl.col("time") < cut)
    if before_cut.height == 0:
        raise DataError(f"temporal split: no events before the cut {cut} (the {quantile} quantile of timestamps)")
    item_ids, user_ids = ids.vocabulary(before_cut["item"]), ids.vocabulary(before_cut["user"])
    del before_cut
    events = _encode(frame, item_ids, user_ids)  # drops the held-out events of unseen users or items
    held_out = frame.height - int(frame.select((pl.col("time") < cut).sum()).item())
    is_held_out = pl.col("time") >= cut
    known = int(events.select(is_held_out.sum()).item())
    log.info("temporal split at t=%s: %d held-out events, %d of unseen users or items dropped", cut, held_out, held_out - known)
    train = events.filter(~is_held_out)
    held_out_users = events.filter(is_held_out)["user"].unique()
    flag = np.zeros(user_ids.len(), dtype=bool)
    flag[held_out_users.to_numpy()] = True
    user_events = events.filter(pl.Series(flag).gather(events["user"]))
    del events
    validation, test = _evaluation_frames(_mark_last_event(user_events), seed, validation_targets)
    return Split(train, validation, test, item_ids, user_ids)


def presplit(
    train_raw: pl.DataFrame,
    validation_raw: pl.DataFrame,
    test_raw: pl.DataFrame,
    source: str | Path = "presplit",
    validation_targets: str = "positive",
) -> Split:
    """Splits prepared elsewhere: each held-out file's last event per user is the target.

    A validation user's history is train plus the validation file's earlier events; a test user's is
    train, the whole validation file and the test file's earlier events (what came before the test
    period, as a leave-last-out test history holds every earlier event). Frames: ``user, item,
    positive, time, row`` in original ids, each in its file's event order.
    """
    for column in ("user", "item"):
        dtypes = {name: str(frame.schema[column]) for name, frame in zip(("train", "validation", "test"), (train_raw, validation_raw, test_raw))}
        if len(set(dtypes.values())) > 1:
            raise DataError(f"{source}: presplit: {column} ids have different types across the files {dtypes}; expected one id type in all three")
    item_ids = ids.vocabulary(train_raw["item"])
    user_ids = ids.vocabulary(pl.concat([train_raw["user"], validation_raw["user"], test_raw["user"]]))
    train = _encode(train_raw, item_ids, user_ids)
    frames = []
    for name, held_out, earlier in (("validation", validation_raw, [train_raw]), ("test", test_raw, [train_raw, validation_raw])):
        known = held_out.filter(pl.col("item").is_in(item_ids.implode()))
        if known.height < held_out.height:
            log.info("presplit %s: dropped %d events of items absent from train", name, held_out.height - known.height)
        marked = _mark_last_event(known)
        users = known["user"].unique().implode()
        history = [frame.filter(pl.col("user").is_in(users)).with_columns(is_target=pl.lit(False)) for frame in earlier]
        # earlier files first: at a time tie between events of two files, the later file's is later
        frames.append(_encode(pl.concat([*history, marked], how="diagonal_relaxed"), item_ids, user_ids))
    return Split(train, _validation_users(frames[0], validation_targets), frames[1], item_ids, user_ids)


def whole_log(frame: pl.DataFrame, seed: int = 0, validation_targets: str = "positive") -> Split:
    """Every event trains (``--data.split none``, to serve): no held-out target, no validation or test user.

    ``seed`` and ``validation_targets`` are unused: the arguments every split takes.
    """
    item_ids, user_ids = ids.vocabulary(frame["item"]), ids.vocabulary(frame["user"])
    train = _encode(frame, item_ids, user_ids)
    no_users = train.clear().with_columns(is_target=pl.lit(False))
    return Split(train, no_users, no_users, item_ids, user_ids)


__getattr__ = moved(__name__, {"item_codes": "negseq.data.ids"})  # the old paths of names that moved (CHANGELOG.md)
