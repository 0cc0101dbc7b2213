"""Event order, the one order every later step relies on: by user, then time, ties in input order.

:func:`event_order` is the only sort of events in the package (the streaming reader's ranges, the
splits' encoded frames); :func:`drop_exact_duplicates` relies on it. Integer users and times are
sorted by packed UInt64 keys with numpy (several times faster than polars' multi-key sort, and
without a copy of the log); anything else by polars' stable sorts.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import polars as pl

KEY_BLOCK = 1 << 20  # keys written at a time: no temporary array of the log's length


def in_event_order(frame: pl.DataFrame) -> bool:
    """Whether ``frame`` is sorted by user, then time (one pass, no sort)."""
    if frame.height < 2:
        return True
    user, time = pl.col("user"), pl.col("time")
    later = (user > user.shift()) | ((user == user.shift()) & (time >= time.shift()))
    return bool(frame.select(later.slice(1).all()).item())


def event_order(frame: pl.DataFrame, first_row: Optional[int] = None, consume: bool = False) -> pl.DataFrame:
    """``frame`` sorted by user, then time; events of one user at one time keep their order in ``frame`` (a stable sort).

    ``first_row``: ``row`` becomes ``first_row`` + the event's position in ``frame`` (the streaming
    reader's compact tie breaker); else it moves with its event. ``consume``: move each column out
    of ``frame`` as it is gathered (``frame`` is left empty: the log's columns are never held twice).
    """
    if not consume:
        frame = frame.clone()  # shallow: the columns are shared until one is gathered
    renumbered = None
    if first_row is not None:
        row_dtype = pl.UInt64 if first_row + frame.height >= 2**32 else pl.UInt32
        renumbered = pl.int_range(first_row, first_row + frame.height, dtype=row_dtype).alias("row")
    if in_event_order(frame):
        return frame if renumbered is None else frame.with_columns(renumbered)
    user, time = frame["user"], frame["time"]
    if user.dtype.is_integer() and time.dtype.is_integer() and user.min() >= 0:
        sorted_frame = _sorted_by_keys(frame, first_row)
        if sorted_frame is not None:
            return sorted_frame
    if renumbered is not None:
        frame = frame.with_columns(renumbered)
    return frame.sort("time", maintain_order=True).sort("user", maintain_order=True)  # stable: the second keeps the first's order


def _sorted_by_keys(frame: pl.DataFrame, first_row: Optional[int]) -> Optional[pl.DataFrame]:
    """:func:`event_order` for non-negative integer users and integer times; None when the keys do not fit 64 bits."""
    positions = np.uint32 if frame.height < 2**32 else np.int64
    time = frame["time"]
    low = int(time.min())
    user_bits = int(frame["user"].max()).bit_length()
    time_bits = (int(time.max()) - low).bit_length()
    position_bits = max(1, (frame.height - 1).bit_length())
    if time_bits + position_bits > 64 or user_bits + position_bits > 64:
        return None
    user_dtype = frame.schema["user"]
    user_np = np.uint32 if user_bits <= 32 else np.uint64  # the codes' own width: no temporary twice their size
    users, times = frame["user"].to_numpy(), time.to_numpy()
    del time
    if user_bits + time_bits + position_bits <= 64:  # one sort: (user, time, position)
        high = users.astype(np.uint64)
        high <<= np.uint64(time_bits)
        high |= (times.astype(np.int64) - low).astype(np.uint64)
        keys, bits = _sorted_keys(high)
        del high
        user, permutation = _high_and_position(keys, bits, time_bits, positions, user_np)
    elif frame["time"].is_sorted():  # a time-ordered log: a stable sort by user is enough
        keys, bits = _sorted_keys(users)
        user, permutation = _high_and_position(keys, bits, 0, positions, user_np)
    else:  # by time, then a stable sort by user: the permutation is the two composed
        offsets = times.astype(np.int64)
        offsets -= low
        keys, bits = _sorted_keys(offsets)
        del offsets
        by_time = _low_bits(keys, bits, positions)
        del keys
        keys, bits = _sorted_keys(users[by_time])
        user, then = _high_and_position(keys, bits, 0, positions, user_np)
        permutation = by_time[then]  # the positions in the frame, not in the time order
        del by_time, then
    del keys, users, times
    columns = frame.columns
    frame.drop_in_place("user")
    if first_row is None:
        rest = _gather(frame, permutation)
    else:
        frame.drop_in_place("row")
        rest = _gather(frame, permutation)
        row = permutation.astype(np.uint64) if first_row + len(permutation) >= 2**32 else permutation  # the event's position in input order
        row += row.dtype.type(first_row)
        rest = rest.with_columns(row=pl.Series(row))
    user = pl.Series(user)
    return rest.with_columns(user=user if user.dtype == user_dtype else user.cast(user_dtype)).select(columns)


def _sorted_keys(high: np.ndarray) -> tuple[np.ndarray, int]:
    """``high`` (non-negative integers) packed with each position into UInt64 keys, sorted; and the position bits.

    Sorting keys by value is several times faster than an arg-sort, and the sorted keys give both
    the permutation (their low bits) and the sorted values (their high bits) without a gather.
    """
    position_bits = max(1, (len(high) - 1).bit_length())
    keys = high.astype(np.uint64)
    keys <<= np.uint64(position_bits)
    for start in range(0, len(keys), KEY_BLOCK):  # positions a block at a time: no second array of the log's length
        keys[start : start + KEY_BLOCK] |= np.arange(start, min(start + KEY_BLOCK, len(keys)), dtype=np.uint64)
    return pl.Series(keys).sort().to_numpy(), position_bits


def _gather(frame: pl.DataFrame, permutation: np.ndarray) -> pl.DataFrame:
    """``frame``'s rows in ``permutation`` order, one column at a time with numpy (several times faster than polars' gather here).

    Each column is moved out of ``frame`` (left empty) as it is gathered: one column of the log is copied at a time.
    """
    return pl.DataFrame([pl.Series(name, frame.drop_in_place(name).to_numpy()[permutation]) for name in frame.columns])


def _low_bits(keys: np.ndarray, bits: int, dtype: type) -> np.ndarray:
    """The positions (low ``bits``) of sorted keys as ``dtype``, a block at a time (no temporary of the log's length)."""
    position, mask = np.empty(len(keys), dtype=dtype), np.uint64(2**bits - 1)
    for start in range(0, len(keys), KEY_BLOCK):
        position[start : start + KEY_BLOCK] = keys[start : start + KEY_BLOCK] & mask
    return position


def _high_and_position(keys: np.ndarray, bits: int, shift: int, position_dtype: type, high_dtype: type) -> tuple[np.ndarray, np.ndarray]:
    """(``keys >> (bits + shift)`` as ``high_dtype``: the user codes, and the positions) of sorted keys, a block at a time."""
    high = np.empty(len(keys), dtype=high_dtype)
    for start in range(0, len(keys), KEY_BLOCK):
        high[start : start + KEY_BLOCK] = keys[start : start + KEY_BLOCK] >> np.uint64(bits + shift)
    return high, _low_bits(keys, bits, position_dtype)


def in_row_order(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` (consumed) with its rows sorted by ``row``: a frame collected out of input order put back in it."""
    if frame["row"].is_sorted():
        return frame
    keys, bits = _sorted_keys(frame["row"].to_numpy())
    return _gather(frame, _low_bits(keys, bits, np.uint32 if frame.height < 2**32 else np.int64))


def drop_exact_duplicates(frame: pl.DataFrame, columns: tuple[str, ...] = ("user", "item", "feedback", "time")) -> pl.DataFrame:
    """Keep the first of events with the same ``columns`` (user, item, feedback and time); ``frame`` is in event order.

    Duplicates share user and time, so they sit in runs of equal (user, time): only those runs
    are compared, which costs nothing for a log without time ties.
    """
    same = (pl.col("user") == pl.col("user").shift()) & (pl.col("time") == pl.col("time").shift())
    tied = frame.select(same.fill_null(False)).to_series()
    if not tied.any():
        return frame
    in_run = (tied | tied.shift(-1, fill_value=False)).to_numpy()
    runs = frame.filter(pl.Series(in_run))
    first = runs.select(pl.struct(*columns).is_first_distinct()).to_series().to_numpy()
    if first.all():
        return frame
    keep = np.ones(frame.height, dtype=bool)
    keep[np.flatnonzero(in_run)[~first]] = False
    return frame.filter(pl.Series(keep))
