"""Sign, filter, encode and split an interaction log (polars frames in, polars frames out).

A split is a training frame plus, for the validation and for the test users, every event of
each user with the held-out target marked. Ids are encoded here: items as 1..N (0 is
padding everywhere downstream), users as 0..U-1, both in sorted order of the original ids,
whose values are kept to decode recommendations.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from negseq.errors import DataError

log = logging.getLogger("negseq")

SPLITS = ("leave_last_out", "temporal", "presplit")
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


def add_sign(frame: pl.DataFrame, threshold: float, source: str | Path) -> pl.DataFrame:
    """Add ``positive = feedback >= threshold``; a log with no positive event cannot train anything."""
    frame = frame.with_columns(positive=pl.col("feedback") >= threshold)
    n_positive = int(frame["positive"].sum())
    if n_positive == 0:
        raise DataError(
            f"{source}: no positive events: every feedback value is below the threshold {threshold} "
            f"(max {frame['feedback'].max()}); lower --data.threshold"
        )
    log.info("%s: %d events, %d positive (feedback >= %s), %d negative", source, frame.height, n_positive, threshold, frame.height - n_positive)
    return frame


def filter_cores(frame: pl.DataFrame, min_item_users: int, min_user_items: int, source: str | Path) -> pl.DataFrame:
    """Keep items with ``min_item_users`` distinct users, then users with ``min_user_items`` distinct items (one pass, as the paper)."""
    before = frame.height
    frame = frame.filter(pl.col("user").n_unique().over("item") >= min_item_users)
    after_items = frame.height
    frame = frame.filter(pl.col("item").n_unique().over("user") >= min_user_items)
    log.info(
        "%s: item filter (>= %d users) dropped %d events, user filter (>= %d items) dropped %d more; %d events left",
        source, min_item_users, before - after_items, min_user_items, after_items - frame.height, frame.height,
    )
    if frame.height == 0:
        raise DataError(
            f"{source}: no events left after keeping items with >= {min_item_users} users and users with >= {min_user_items} items; "
            "lower --data.min_item_users / --data.min_user_items"
        )
    return frame


def _vocabulary(values: pl.Series) -> pl.Series:
    return values.unique().sort()


def _encode(frame: pl.DataFrame, item_ids: pl.Series, user_ids: pl.Series) -> pl.DataFrame:
    """Replace original ids by codes (items 1..N, users 0..U-1); rows with unknown ids are dropped."""
    items = pl.DataFrame({"item": item_ids, "item_code": pl.int_range(1, item_ids.len() + 1, eager=True, dtype=pl.Int64)})
    users = pl.DataFrame({"user": user_ids, "user_code": pl.int_range(0, user_ids.len(), eager=True, dtype=pl.Int64)})
    return (
        frame.join(items, on="item", how="inner")
        .join(users, on="user", how="inner")
        .select(pl.col("user_code").alias("user"), pl.col("item_code").alias("item"), "positive", "time", "row", *[c for c in frame.columns if c == "is_target"])
        .sort("user", "time", "row")
    )


def _mark_last_event(frame: pl.DataFrame) -> pl.DataFrame:
    """Flag each user's last event by time; ties broken by input row order (the later row is last)."""
    return frame.sort("user", "time", "row").with_columns(is_target=pl.int_range(pl.len()).over("user") == pl.len().over("user") - 1)


def _halve_users(users: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Shuffle users with ``seed`` and cut the list in two: (validation users, test users)."""
    shuffled = np.random.default_rng(seed).permutation(np.sort(users))
    half = len(shuffled) // 2
    return shuffled[:half], shuffled[half:]


def _evaluation_frames(events: pl.DataFrame, seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split the users of ``events`` (all events, target marked) 50/50; validation keeps positive targets only."""
    validation_users, test_users = _halve_users(events["user"].unique().to_numpy(), seed)
    validation = events.filter(pl.col("user").is_in(validation_users))
    positive_target = validation.filter(pl.col("is_target") & pl.col("positive"))["user"]
    validation = validation.filter(pl.col("user").is_in(positive_target.implode()))
    test = events.filter(pl.col("user").is_in(test_users))
    return validation, test


def leave_last_out(frame: pl.DataFrame, seed: int) -> Split:
    """Each user's last event is held out; users are split 50/50 into validation and test."""
    item_ids, user_ids = _vocabulary(frame["item"]), _vocabulary(frame["user"])
    events = _encode(_mark_last_event(frame), item_ids, user_ids)
    validation, test = _evaluation_frames(events, seed)
    train = events.filter(~pl.col("is_target")).drop("is_target")
    return Split(train, validation, test, item_ids, user_ids)


def temporal(frame: pl.DataFrame, seed: int, quantile: float = 0.9) -> Split:
    """The paper's global temporal split: events at or after the ``quantile`` of all timestamps are held out.

    Held-out events of users or items unseen before the cut are dropped. Each held-out user's
    target is their last event; their history is everything before it, both periods included.
    """
    cut = frame["time"].quantile(quantile, interpolation="linear")
    train_raw = frame.filter(pl.col("time") < cut)
    if train_raw.height == 0:
        raise DataError(f"temporal split: no events before the cut {cut} (the {quantile} quantile of timestamps)")
    item_ids, user_ids = _vocabulary(train_raw["item"]), _vocabulary(train_raw["user"])
    held_out = frame.filter(pl.col("time") >= cut)
    known = held_out.filter(pl.col("item").is_in(item_ids.implode()) & pl.col("user").is_in(user_ids.implode()))
    log.info("temporal split at t=%s: %d held-out events, %d of unseen users or items dropped", cut, held_out.height, held_out.height - known.height)
    train = _encode(train_raw, item_ids, user_ids)
    held_out_users = known["user"].unique().implode()
    user_events = pl.concat([train_raw.filter(pl.col("user").is_in(held_out_users)), known])
    validation, test = _evaluation_frames(_encode(_mark_last_event(user_events), item_ids, user_ids), seed)
    return Split(train, validation, test, item_ids, user_ids)


def presplit(train_raw: pl.DataFrame, validation_raw: pl.DataFrame, test_raw: pl.DataFrame) -> Split:
    """Splits prepared elsewhere: history from train, each held-out file's last event per user is the target."""
    for column in ("user", "item"):
        dtypes = {name: str(frame.schema[column]) for name, frame in zip(("train", "validation", "test"), (train_raw, validation_raw, test_raw))}
        if len(set(dtypes.values())) > 1:
            raise DataError(f"presplit: {column} ids have different types across the files {dtypes}; expected one id type in all three")
    item_ids = _vocabulary(train_raw["item"])
    user_ids = _vocabulary(pl.concat([train_raw["user"], validation_raw["user"], test_raw["user"]]))
    train = _encode(train_raw, item_ids, user_ids)
    frames = []
    for name, held_out in (("validation", validation_raw), ("test", test_raw)):
        known = held_out.filter(pl.col("item").is_in(item_ids.implode()))
        if known.height < held_out.height:
            log.info("presplit %s: dropped %d events of items absent from train", name, held_out.height - known.height)
        marked = _mark_last_event(known)
        history = train_raw.filter(pl.col("user").is_in(known["user"].unique().implode())).with_columns(is_target=pl.lit(False))
        frames.append(_encode(pl.concat([history, marked], how="diagonal_relaxed"), item_ids, user_ids))
    validation = frames[0].filter(pl.col("user").is_in(frames[0].filter(pl.col("is_target") & pl.col("positive"))["user"].implode()))
    return Split(train, validation, frames[1], item_ids, user_ids)
