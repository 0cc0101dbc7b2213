"""Streaming preparation: an interaction log to compact, signed, event-ordered events, then a split.

The same events, in the same order, as ``read_log`` -> ``add_sign`` -> ``filter_cores`` give,
without an eager copy of the whole log:

- the log is scanned lazily (polars): only the used columns are read, the optional user sample
  is applied at the scan, and one streaming pass gathers what validation needs (counts, missing
  values, id and time ranges): bad input stops with ``read_log``'s one-line messages;
- ids become ``UInt32`` codes as they are read (by offset for integer ids of a small range, else
  through a vocabulary of the distinct ids), time the smallest integer type that holds it, and
  feedback only survives to its sign (``Boolean``);
- events are collected in user ranges of about ``PARTITION_EVENTS`` each (a range is a
  predicate pushed into the scan), each range put in event order, deduplicated and signed on its
  own; only the compact columns of all ranges are ever held together.

Then the 5-core filters and the split run on the compact events, whose codes keep the order of
the original ids, so splits and tensors are those of the eager path (tested).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import polars as pl

from negseq.data import splits
from negseq.data.io import (
    FORMATS,
    STANDARD_COLUMNS,
    ZVUK_SESSION,
    Columns,
    _check_feedback,
    _check_id,
    _check_time,
    _drop_exact_duplicates,
    _reject_missing,
    event_order,
    in_event_order,
    resolve_format,
)
from negseq.errors import DataError

log = logging.getLogger("negseq")

PARTITION_EVENTS = 25_000_000  # events collected at once: bounds the working memory of one range
KEY_BLOCK = 1 << 20
OFFSET_CODES = 2**26  # integer ids spanning fewer values are coded by offset; more: through a vocabulary


@dataclass
class Events:
    """Signed events in event order: ``user``, ``item`` (UInt32 codes), ``positive``, ``time``, ``row``.

    Codes keep the order of the original ids: ``user_ids[code]`` and ``item_ids[code]`` are those ids.
    """

    frame: pl.DataFrame
    user_ids: pl.Series
    item_ids: pl.Series


def collect(lazy: pl.LazyFrame) -> pl.DataFrame:
    return lazy.collect(engine="streaming")


def scan(path: str | Path, format: str = "auto", columns: Optional[dict] = None) -> tuple[pl.LazyFrame, Columns, str]:
    """The raw log as a LazyFrame (Parquet is scanned; text and JSON formats are read, then made lazy), its columns and format."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    fmt = resolve_format(path, format)
    names = columns or {}
    wanted = FORMATS[fmt].columns.override(names.get("user_col"), names.get("item_col"), names.get("feedback_col"), names.get("time_col"))
    reader = FORMATS[fmt].scanner or FORMATS[fmt].reader
    return _reading(path, fmt, lambda: reader(path, wanted)).lazy(), wanted, fmt


def _reading(source, fmt: str, read: Callable):
    """``read()``, with polars' and the OS's read errors turned into ``read_log``'s DataErrors."""
    try:
        return read()
    except pl.exceptions.NoDataError:
        raise DataError(f"{source}: the file is empty; expected a header and at least one event") from None
    except (pl.exceptions.PolarsError, OSError, EOFError) as error:
        raise DataError(f"{source}: cannot be read as {fmt}: {error}") from None


def sample_users(lazy: pl.LazyFrame, users: int | float, seed: int, source) -> pl.LazyFrame:
    """Keep a deterministic sample of users: a fraction in (0, 1), or a count (those with the smallest seeded hash).

    The hash is of the original id, so the sample does not depend on the file's row order, and a
    fraction streams (a count needs one pass over the user column).
    """
    key = pl.col("user").cast(pl.String if lazy.collect_schema()["user"] == pl.String else pl.Int64).hash(seed)
    if isinstance(users, float):
        if not 0.0 < users < 1.0:
            raise DataError(f"{source}: sample_users={users}; expected a count >= 1 or a fraction in (0, 1)")
        return lazy.filter(key < int(users * 2.0**64))
    if users < 1:
        raise DataError(f"{source}: sample_users={users}; expected a count >= 1 or a fraction in (0, 1)")
    chosen = collect(lazy.select(pl.col("user").unique()).drop_nulls().with_columns(_hash=key).sort("_hash").head(users))["user"]
    return lazy.filter(pl.col("user").is_in(chosen.implode()))


def _stats(lazy: pl.LazyFrame) -> dict:
    """One pass: events, missing values per column, and min/max of the columns whose range matters."""
    schema = lazy.collect_schema()
    aggregates = [pl.len().alias("len")]
    for role in STANDARD_COLUMNS:
        dtype = schema[role]
        missing = pl.col(role).null_count()
        if dtype.is_float():
            missing = missing + pl.col(role).is_nan().sum()
        aggregates.append(missing.alias(f"{role}_missing"))
        if dtype.is_numeric() or dtype.is_temporal():
            aggregates += [pl.col(role).min().alias(f"{role}_min"), pl.col(role).max().alias(f"{role}_max")]
    return collect(lazy.select(aggregates)).row(0, named=True)


def _range_frame(stats: dict, role: str, dtype: pl.DataType) -> pl.DataFrame:
    """A two-row frame of the column's min and max: enough for io's type and range checks of non-string columns."""
    return pl.DataFrame({role: [stats.get(f"{role}_min"), stats.get(f"{role}_max")]}, schema={role: dtype})


@dataclass
class _Codes:
    """How one id column becomes UInt32 codes that keep the ids' order, and back."""

    expr: pl.Expr
    size: int
    decode: Callable[[pl.Series], pl.Series]
    bounds: Optional[tuple[int, int]] = None  # the id range, for offset codes (pushed into the scan)


def _codes(lazy: pl.LazyFrame, role: str, dtype: pl.DataType, stats: dict) -> _Codes:
    low, high = stats.get(f"{role}_min"), stats.get(f"{role}_max")
    if dtype.is_integer() and low is not None and high - low < OFFSET_CODES:
        low, high = int(low), int(high)
        return _Codes((pl.col(role).cast(pl.Int64) - low).cast(pl.UInt32), high - low + 1, lambda codes: codes.cast(pl.Int64) + low, (low, high))
    vocabulary = collect(lazy.select(pl.col(role).unique()).drop_nulls())[role].sort()
    if dtype.is_integer():
        vocabulary = vocabulary.cast(pl.Int64)
    codes = pl.int_range(0, vocabulary.len(), eager=True, dtype=pl.UInt32)
    return _Codes(pl.col(role).replace_strict(vocabulary, codes, default=None, return_dtype=pl.UInt32), vocabulary.len(), vocabulary.gather)


def _time_dtype(stats: dict, time: pl.Expr, dtype: pl.DataType) -> pl.DataType:
    """Int32 when every timestamp (in io's units) fits, else io's own type (Int64 or Float64)."""
    if dtype.is_float():
        return pl.Float64
    bounds = pl.DataFrame({"time": [stats["time_min"], stats["time_max"]]}, schema={"time": dtype}).select(time)["time"]
    if bounds.null_count() == 0 and -(2**31) <= bounds.min() and bounds.max() < 2**31:
        return pl.Int32
    return pl.Int64


def sum_plays(frame: pl.DataFrame) -> pl.DataFrame:
    """Zvuk: plays of one track within one session (``session``) become one event, as :func:`negseq.data.io._read_zvuk`.

    Durations are summed; time is the first play's, ``row`` the position of the first play. One
    sort by a packed (user, session, item) key and segment reductions: several times faster than a
    hash group-by with as many groups as events.
    """
    if frame.height == 0:
        return frame.drop("session")
    session = pl.col("session").cast(pl.Int64) - frame["session"].min()
    bits = [int(frame[column].max() or 0).bit_length() for column in ("user", "item")]
    session_bits = int(frame.select(session.max()).item()).bit_length()
    if bits[0] + session_bits + bits[1] > 64:
        grouped = frame.group_by("user", "session", "item").agg(pl.col("feedback").sum(), pl.col("time").min(), pl.col("row").min())
        return grouped.drop("session")
    key = (pl.col("user").cast(pl.UInt64) * 2 ** (session_bits + bits[1])) + session.cast(pl.UInt64) * 2 ** bits[1] + pl.col("item").cast(pl.UInt64)
    order = frame.select(key.arg_sort()).to_series()
    keys = frame.select(key.gather(order)).to_series().to_numpy()
    starts = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))
    del keys

    def reduce(column: str, ufunc: np.ufunc, dtype=None) -> np.ndarray:
        values = frame[column].to_numpy()[order.to_numpy()]
        return ufunc.reduceat(values.astype(dtype) if dtype else values, starts)

    return pl.DataFrame({
        "user": frame["user"].to_numpy()[order.to_numpy()[starts]],
        "item": frame["item"].to_numpy()[order.to_numpy()[starts]],
        "feedback": reduce("feedback", np.add, np.float64 if frame.schema["feedback"].is_float() else np.int64),
        "time": reduce("time", np.minimum),
        "row": reduce("row", np.minimum),
    })


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


def _high_and_position(keys: np.ndarray, bits: int, shift: int, position_dtype: type) -> tuple[np.ndarray, np.ndarray]:
    """(UInt32 ``keys >> (bits + shift)``: the user codes, and the positions) of sorted keys, a block at a time."""
    high = np.empty(len(keys), dtype=np.uint32)
    for start in range(0, len(keys), KEY_BLOCK):
        high[start : start + KEY_BLOCK] = keys[start : start + KEY_BLOCK] >> np.uint64(bits + shift)
    return high, _low_bits(keys, bits, position_dtype)


def order_events(frame: pl.DataFrame, first_row: int = 0) -> pl.DataFrame:
    """``frame`` (UInt32 user codes, integer or float time) sorted by user, then time, then row, as :func:`negseq.data.io.event_order`.

    ``row`` becomes ``first_row`` + the event's position in input order (an order-equivalent tie
    breaker, cheaper than carrying the original). Users and rows come out of the sorted keys; only
    the other columns are gathered (random reads: the slow part), each moved out of ``frame`` as
    it is (``frame`` is then left empty: the log's columns are not held twice).
    """
    positions = np.uint32 if frame.height < 2**32 else np.int64
    if not frame["row"].is_sorted():  # ties keep the input order: first put the frame in it
        keys, bits = _sorted_keys(frame["row"].to_numpy())
        frame = _gather(frame, _low_bits(keys, bits, positions))
        del keys
    row_dtype = pl.UInt64 if first_row + frame.height >= 2**32 else pl.UInt32
    renumbered = pl.int_range(first_row, first_row + frame.height, dtype=row_dtype).alias("row")
    if in_event_order(frame):  # the rows are increasing: order-equivalent to the renumbered ones
        return frame.with_columns(renumbered)
    time = frame["time"]
    if not time.dtype.is_integer():
        return event_order(frame.with_columns(renumbered))
    low = int(time.min())
    user_bits = int(frame["user"].max()).bit_length()
    time_bits = (int(time.max()) - low).bit_length()
    position_bits = max(1, (frame.height - 1).bit_length())
    if time_bits + position_bits > 64 or user_bits + position_bits > 64:
        return event_order(frame.with_columns(renumbered))
    users, times = frame["user"].to_numpy(), time.to_numpy()
    del time
    if user_bits + time_bits + position_bits <= 64:  # one sort: (user, time, position)
        high = users.astype(np.uint64)
        high <<= np.uint64(time_bits)
        high |= (times.astype(np.int64) - low).astype(np.uint64)
        keys, bits = _sorted_keys(high)
        del high
        user, permutation = _high_and_position(keys, bits, time_bits, positions)
    elif frame["time"].is_sorted():  # a time-ordered log: a stable sort by user is enough
        keys, bits = _sorted_keys(users)
        user, permutation = _high_and_position(keys, bits, 0, positions)
    else:  # by time, then a stable sort by user: the permutation is the two composed
        offsets = times.astype(np.int64)
        offsets -= low
        keys, bits = _sorted_keys(offsets)
        del offsets
        by_time = _low_bits(keys, bits, positions)
        del keys
        keys, bits = _sorted_keys(users[by_time])
        user, then = _high_and_position(keys, bits, 0, positions)
        permutation = by_time[then]  # the positions in the frame, not in the time order
        del by_time, then
    del keys, users, times
    columns = frame.columns
    frame.drop_in_place("user")
    frame.drop_in_place("row")
    rest = _gather(frame, permutation)
    row = permutation.astype(np.uint64) if row_dtype == pl.UInt64 else permutation  # the event's position in input order
    row += row.dtype.type(first_row)
    return rest.with_columns(user=pl.Series(user), row=pl.Series(row)).select(columns)


def prepare_events(
    raw: pl.LazyFrame,
    columns: Columns,
    threshold: float,
    source: str | Path,
    sessions: bool = False,
    sample: Optional[int | float] = None,
    sample_seed: int = 0,
    fmt: str = "parquet",
    require_positive: bool = True,
) -> Events:
    """Validate, code, sign, order and deduplicate a raw log (lazy, the file's column names) into :class:`Events`.

    ``sessions``: sum Zvuk plays per (user, ``session_id``, track) first. ``sample``: keep that
    many users (or that fraction of them), chosen by a hash of the id seeded with ``sample_seed``.
    ``require_positive``: a log without a liked event cannot train anything (serving takes one).
    """
    names = raw.collect_schema().names()
    wanted = dict(zip(STANDARD_COLUMNS, (columns.user, columns.item, columns.feedback, columns.time)))
    for role, name in wanted.items():
        if name not in names:
            raise DataError(f"{source}: missing {role} column {name!r}; the file has columns {names} (set --data.{role}_col)")
    extra = {"session": pl.col(ZVUK_SESSION)} if sessions else {}
    lazy = raw.select(**{role: pl.col(name) for role, name in wanted.items()}, **extra).with_row_index("row")
    if sample is not None:
        lazy = sample_users(lazy, sample, sample_seed, source)
    schema = lazy.collect_schema()
    if schema["time"] == pl.String:  # ISO strings are parsed as read_log parses them: on the whole column at once
        lazy = _reading(source, fmt, lambda: collect(lazy)).lazy()
    stats = _reading(source, fmt, lambda: _stats(lazy))
    if stats["len"] == 0:
        raise DataError(f"{source}: no events; expected at least one row")
    user = _check_id(_range_frame(stats, "user", schema["user"]), "user", wanted["user"], source)
    item = _check_id(_range_frame(stats, "item", schema["item"]), "item", wanted["item"], source)
    if not (schema["feedback"].is_numeric() or schema["feedback"] == pl.Boolean):
        _check_feedback(collect(lazy.select("row", "feedback")), wanted["feedback"], source)
    if schema["time"] == pl.String:
        materialized = collect(lazy)
        lazy = materialized.with_columns(_check_time(materialized, wanted["time"], source)).lazy()
        schema, stats = lazy.collect_schema(), _stats(lazy)
        time = pl.col("time")
    else:
        time = _check_time(_range_frame(stats, "time", schema["time"]), wanted["time"], source)
    for role in STANDARD_COLUMNS:
        if stats[f"{role}_missing"]:
            missing = pl.col(role).is_null() | (pl.col(role).is_nan() if schema[role].is_float() else False)
            _reject_missing(collect(lazy.select("row", role).filter(missing)), role, wanted[role], source)
    lazy = lazy.with_columns(user=user, item=item)
    schema = lazy.collect_schema()
    users, items = _codes(lazy, "user", schema["user"], stats), _codes(lazy, "item", schema["item"], stats)
    time = time.cast(_time_dtype(stats, time, schema["time"]))
    feedback = pl.col("feedback").cast(pl.Float64) if schema["feedback"] == pl.Boolean else pl.col("feedback")
    selected = [users.expr.alias("user"), items.expr.alias("item"), feedback, time.alias("time"), "row", *(["session"] if sessions else [])]

    parts, n_events, n_duplicates, n_positive, feedback_max = [], 0, 0, 0, None
    n_parts = max(1, math.ceil(stats["len"] / PARTITION_EVENTS))
    cuts = np.linspace(0, users.size, n_parts + 1).round().astype(np.int64)
    for low, high in zip(cuts[:-1], cuts[1:]):
        if n_parts == 1:
            chosen = lazy
        elif users.bounds is not None:  # on the raw id: a predicate the scan can check against row-group statistics
            chosen = lazy.filter(pl.col("user").is_between(users.bounds[0] + int(low), users.bounds[0] + int(high) - 1))
        else:
            chosen = lazy.filter(users.expr.is_between(int(low), int(high) - 1))
        part = _reading(source, fmt, lambda: collect(chosen.select(selected)))
        if sessions:
            part = sum_plays(part)
        part = order_events(part, first_row=n_events)
        n_events += part.height
        before = part.height
        part = _drop_exact_duplicates(part)
        n_duplicates += before - part.height
        positive = pl.col("feedback").cast(pl.Float64) >= threshold
        top = part["feedback"].cast(pl.Float64).max()
        feedback_max = top if feedback_max is None or (top is not None and top > feedback_max) else feedback_max
        part = part.select("user", "item", positive.alias("positive"), "time", "row")
        n_positive += int(part["positive"].sum())
        parts.append(part)
    frame = pl.concat(parts, rechunk=False) if len(parts) > 1 else parts[0]
    del parts
    if n_duplicates:
        log.info("%s: dropped %d exact duplicate events (same user, item, feedback and time)", source, n_duplicates)
    kept = n_events - n_duplicates
    if n_positive == 0 and require_positive:
        raise DataError(
            f"{source}: no positive events: every feedback value is below the threshold {threshold} "
            f"(max {feedback_max}); lower --data.threshold"
        )
    log.info("%s: %d events, %d positive (feedback >= %s), %d negative", source, kept, n_positive, threshold, kept - n_positive)
    user_ids = users.decode(pl.int_range(0, users.size, eager=True, dtype=pl.UInt32))
    item_ids = items.decode(pl.int_range(0, items.size, eager=True, dtype=pl.UInt32))
    return Events(frame, user_ids, item_ids)


def _dense_codes(codes: pl.Series, ids: pl.Series, first: int) -> tuple[pl.Series, pl.Series]:
    """Codes renumbered ``first, first + 1, ...`` over the codes present (order kept), and the ids of the new codes."""
    present = np.bincount(codes.to_numpy(), minlength=ids.len()) > 0
    renumbered = (np.cumsum(present) - 1 + first).astype(np.uint32)
    return pl.Series(codes.name, renumbered[codes.to_numpy()]), ids.filter(pl.Series(present))


def prepare_split(
    events: Events, split_events: Callable[..., splits.Split], seed: int, validation_targets: str, min_item_users: int, min_user_items: int, source,
) -> splits.Split:
    """5-core filters and ``split_events`` (e.g. :func:`negseq.data.splits.leave_last_out`) on compact events.

    The filtered events are renumbered to the split's own codes (users 0..U-1, items 1..N), so
    that the split encodes them without a copy; its vocabularies are mapped back to the original ids.
    """
    frame = splits.filter_cores(events.frame, min_item_users, min_user_items, source)
    events.frame = None  # the filtered copy replaces it
    users, user_ids = _dense_codes(frame["user"], events.user_ids, 0)
    items, item_ids = _dense_codes(frame["item"], events.item_ids, 1)
    frame = frame.with_columns(users, items)
    del users, items
    result = split_events(frame, seed, validation_targets)
    del frame
    return dataclasses.replace(
        result, user_ids=user_ids.gather(result.user_ids), item_ids=item_ids.gather(result.item_ids.cast(pl.Int64) - 1),
    )
