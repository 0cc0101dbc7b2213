"""The one log reader: a file or a frame to compact, signed events in event order, streamed.

Every path of the package reads a log here: the DataModule (a file, the three files of a
presplit directory, or a frame) and serving (:class:`negseq.Recommender`). What it does:

- the log is opened by its format (:mod:`negseq.data.formats`; Parquet is scanned lazily): only
  the used columns are read, the optional user sample is applied at the scan, and one streaming
  pass gathers what validation (:mod:`negseq.data.validation`) needs (counts, missing values, id
  and time ranges): bad input stops with a one-line DataError;
- ids become ``UInt32`` codes as they are read (by offset for integer ids of a small range, else
  through a vocabulary of the distinct ids), time the smallest integer type that holds it, and
  feedback only survives to its sign (``positive``: feedback >= the threshold, or the value of a
  Boolean feedback column);
- events are collected in user ranges of about ``PARTITION_EVENTS`` each (a range is a
  predicate pushed into the scan), each range put in event order (:mod:`negseq.data.order`),
  deduplicated and signed on its own; only the compact columns of all ranges are held together.

Then :func:`filter_and_split` runs the 5-core filters and a split on the compact events, whose
codes keep the order of the original ids (``tests/data/oracle.py``, an eager reader, checks that
the events and tensors are the same).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np
import polars as pl

from negseq.data import ids, splits
from negseq.data.formats import FORMATS, STANDARD_COLUMNS, ZVUK_SESSION, Columns, open_raw, resolve_format
from negseq.data.order import drop_exact_duplicates, event_order, in_row_order
from negseq.data.validation import MISSING_TIME, check_feedback, check_id, check_time, missing, reject_missing
from negseq.errors import DataError

log = logging.getLogger("negseq")

PARTITION_EVENTS = 25_000_000  # events collected at once: bounds the working memory of one range
FRAME = "frame"  # the source name of a log handed over as a polars frame
Source = Union[str, Path, pl.DataFrame, pl.LazyFrame]


@dataclass
class Events:
    """Signed events in event order: ``user``, ``item`` (UInt32 codes), ``positive``, ``time``, ``row``.

    Codes keep the order of the original ids: ``user_ids[code]`` and ``item_ids[code]`` are those ids.
    ``format`` and ``threshold`` are how the log was read: its resolved format and the sign threshold applied.
    """

    frame: pl.DataFrame
    user_ids: pl.Series
    item_ids: pl.Series
    format: str
    threshold: float

    def decoded(self) -> pl.DataFrame:
        """``user, item, positive, time, row`` in original ids (what the presplit files and serving read)."""
        frame = self.frame
        return frame.with_columns(user=ids.decode(frame["user"], self.user_ids), item=ids.decode(frame["item"], self.item_ids))


def as_polars(source):
    """A pandas DataFrame as a polars one (``pl.from_pandas``, through pyarrow), anything else as it is: every entry point
    that takes a polars frame takes the pandas frames RecTools' and RePlay's users hold their logs in. Recognised by its
    class's module, so that negseq imports nothing of pandas and does not depend on it."""
    kind = type(source)
    if kind.__name__ == "DataFrame" and kind.__module__.startswith("pandas"):
        return pl.from_pandas(source)
    return source


def collect(lazy: pl.LazyFrame) -> pl.DataFrame:
    return lazy.collect(engine="streaming")


def applied_threshold(fmt: str, threshold: Optional[float]) -> float:
    """The sign threshold of a log of format ``fmt``: ``threshold``, or the format's own for None. The one place it is resolved."""
    return FORMATS[fmt].threshold if threshold is None else threshold


def _warn_on_movielens_scale(fmt: str, threshold: float, source) -> None:
    default = FORMATS[fmt].threshold
    if threshold != default and threshold == 4.0:
        log.warning(
            "%s: threshold 4.0 (MovieLens' rating scale) on a %s log, whose usual threshold is %s; "
            "set --data.threshold (null = the format's default)", source, fmt, default,
        )


def source_format(source: Source, format: str = "auto") -> str:
    """The format ``source`` is read as: ``format``, or for ``auto`` the one its file name tells (a frame: ``parquet``)."""
    if isinstance(source, (pl.DataFrame, pl.LazyFrame)):
        if format == "auto":
            return "parquet"
        if format not in FORMATS:
            raise DataError(f"{FRAME}: unknown format {format!r}; expected one of {['auto', *sorted(FORMATS)]}")
        return format
    return resolve_format(source, format)


def _reading(source, fmt: str, read: Callable):
    """``read()``, with polars' and the OS's read errors turned into one-line DataErrors."""
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
        aggregates.append(missing(role, dtype).sum().alias(f"{role}_missing"))
        if dtype.is_numeric() or dtype.is_temporal():
            aggregates += [pl.col(role).min().alias(f"{role}_min"), pl.col(role).max().alias(f"{role}_max")]
    return collect(lazy.select(aggregates)).row(0, named=True)


def _range_frame(stats: dict, role: str, dtype: pl.DataType) -> pl.DataFrame:
    """A two-row frame of the column's min and max: enough for the type and range checks of non-string columns."""
    return pl.DataFrame({role: [stats.get(f"{role}_min"), stats.get(f"{role}_max")]}, schema={role: dtype})


def _time_dtype(stats: dict, time: pl.Expr, dtype: pl.DataType) -> pl.DataType:
    """Int32 when every timestamp (in seconds or the file's unit) fits, else Int64 (or Float64 for float times)."""
    if dtype.is_float():
        return pl.Float64
    bounds = pl.DataFrame({"time": [stats["time_min"], stats["time_max"]]}, schema={"time": dtype}).select(time)["time"]
    if bounds.null_count() == 0 and -(2**31) <= bounds.min() and bounds.max() < 2**31:
        return pl.Int32
    return pl.Int64


def sum_plays(frame: pl.DataFrame) -> pl.DataFrame:
    """Zvuk: plays of one track within one session (``session``) become one event, as the paper's authors did.

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


def _open(source: Source, fmt: str, columns: Columns, has_header: bool, separator: Optional[str]) -> pl.LazyFrame:
    """The raw log (the file's column names) as a LazyFrame."""
    if isinstance(source, (pl.DataFrame, pl.LazyFrame)):
        if not has_header or separator is not None:
            raise DataError(f"{FRAME}: has_header and separator apply to delimited text files, not to a frame")
        return source.lazy()
    path = Path(source)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    return _reading(path, fmt, lambda: open_raw(path, fmt, columns, has_header, separator))


def read_events(
    source: Source,
    format: str = "auto",
    user_col: Optional[str] = None,
    item_col: Optional[str] = None,
    feedback_col: Optional[str] = None,
    time_col: Optional[str] = None,
    threshold: Optional[float] = 4.0,
    has_header: bool = True,
    separator: Optional[str] = None,
    missing_time: str = "error",
    sample: Optional[int | float] = None,
    sample_seed: int = 0,
    require_positive: bool = True,
) -> Events:
    """Read, validate, code, sign, order and deduplicate a log (a file, or a frame with a file's columns) into :class:`Events`.

    Args:
        source: the log file, or a polars (or pandas) frame with the columns of a file of ``format`` (``auto``: parquet's).
        format: the file's format (:mod:`negseq.data.formats`; ``auto``: from the file name).
        user_col: the user id column (None: the format's default; likewise the next three).
        item_col: the item id column.
        feedback_col: the feedback value column.
        time_col: the timestamp column.
        has_header: False for delimited text without a header line (columns ``column_1``, ``column_2``, ...).
        separator: the field separator of delimited text (None: the format's).
        threshold: feedback >= threshold is liked; None: the format's own (:func:`applied_threshold`).
            A Boolean feedback column is its own sign (true = liked).
        missing_time: an event without a timestamp is a DataError (``error``) or dropped and counted (``drop``).
        sample: keep that many users (or that fraction of them), chosen by a hash of the id seeded with ``sample_seed``.
        require_positive: a log without a liked event cannot train anything (serving takes one).
    """
    if missing_time not in MISSING_TIME:
        raise DataError(f"unknown missing_time {missing_time!r}; expected one of {list(MISSING_TIME)}")
    source = as_polars(source)
    fmt = source_format(source, format)
    name = FRAME if isinstance(source, (pl.DataFrame, pl.LazyFrame)) else Path(source)
    columns = FORMATS[fmt].columns.override(user_col, item_col, feedback_col, time_col)
    raw = _open(source, fmt, columns, has_header, separator)
    threshold = applied_threshold(fmt, threshold)
    _warn_on_movielens_scale(fmt, threshold, name)
    return _read(raw, columns, threshold, name, FORMATS[fmt].sessions, sample, sample_seed, fmt, require_positive, missing_time)


def _read(
    raw: pl.LazyFrame, columns: Columns, threshold: float, source, sessions: bool, sample, sample_seed: int, fmt: str, require_positive: bool, missing_time: str,
) -> Events:
    wanted = columns.by_role()
    lazy = _selected(raw, wanted, source, fmt, sessions, sample, sample_seed)
    lazy, stats, time = _validated(lazy, wanted, source, fmt, missing_time)
    schema = lazy.collect_schema()
    users, items = ids.id_coder(lazy, "user", schema["user"], stats), ids.id_coder(lazy, "item", schema["item"], stats)
    boolean = schema["feedback"] == pl.Boolean
    if boolean:
        log.info("%s: feedback column %r is Boolean: true = liked, false = disliked (no threshold)", source, wanted["feedback"])
    time = time.cast(_time_dtype(stats, time, schema["time"]))
    selected = [users.expr.alias("user"), items.expr.alias("item"), "feedback", time.alias("time"), "row", *(["session"] if sessions else [])]
    positive = pl.col("feedback") if boolean else pl.col("feedback").cast(pl.Float64) >= threshold
    frame, counts = _in_user_ranges(lazy, selected, users, positive, stats["len"], sessions, source, fmt)
    kept = counts.events - counts.duplicates
    if counts.duplicates:
        log.info("%s: dropped %d exact duplicate events (same user, item, feedback and time)", source, counts.duplicates)
    if counts.positive == 0 and require_positive:
        below = "every feedback value is false" if boolean else f"every feedback value is below the threshold {threshold} (max {counts.feedback_max}); lower --data.threshold"
        raise DataError(f"{source}: no positive events: {below}")
    rule = "feedback true" if boolean else f"feedback >= {threshold}"
    log.info("%s: %d events, %d positive (%s), %d negative", source, kept, counts.positive, rule, kept - counts.positive)
    user_ids = users.decode(pl.int_range(0, users.size, eager=True, dtype=pl.UInt32))
    item_ids = items.decode(pl.int_range(0, items.size, eager=True, dtype=pl.UInt32))
    return Events(frame, user_ids, item_ids, fmt, threshold)


def _selected(raw: pl.LazyFrame, wanted: dict[str, str], source, fmt: str, sessions: bool, sample, sample_seed: int) -> pl.LazyFrame:
    """The four standard columns by role (and Zvuk's session), numbered by input row, sampled by user when asked; a
    missing column is a DataError naming the file's columns."""
    names = _reading(source, fmt, lambda: raw.collect_schema().names())  # a damaged Parquet file fails here
    for role, name in wanted.items():
        if name not in names:
            raise DataError(f"{source}: missing {role} column {name!r}; the file has columns {names} (set --data.{role}_col)")
    extra = {"session": pl.col(ZVUK_SESSION)} if sessions else {}
    lazy = raw.select(**{role: pl.col(name) for role, name in wanted.items()}, **extra).with_row_index("row")
    return sample_users(lazy, sample, sample_seed, source) if sample is not None else lazy


def _validated(lazy: pl.LazyFrame, wanted: dict[str, str], source, fmt: str, missing_time: str) -> tuple[pl.LazyFrame, dict, pl.Expr]:
    """Every column checked (ids, feedback, time; missing values refused, or events without a time dropped) on the
    columns' statistics where they suffice: the events with ids as read, their statistics, and the time expression."""
    schema = lazy.collect_schema()
    if schema["time"] == pl.String:  # ISO strings are parsed on the whole column at once
        lazy = _reading(source, fmt, lambda: collect(lazy)).lazy()
    stats = _reading(source, fmt, lambda: _stats(lazy))
    if stats["len"] == 0:
        raise DataError(f"{source}: no events; expected at least one row")
    if stats["time_missing"] and missing_time == "drop":
        log.info("%s: dropped %d events without a timestamp (%s)", source, stats["time_missing"], wanted["time"])
        lazy = lazy.filter(~missing("time", schema["time"]))
        stats = _reading(source, fmt, lambda: _stats(lazy))
        if stats["len"] == 0:
            raise DataError(f"{source}: no events with a timestamp in time column {wanted['time']!r}; expected at least one")
    user = check_id(_range_frame(stats, "user", schema["user"]), "user", wanted["user"], source)
    item = check_id(_range_frame(stats, "item", schema["item"]), "item", wanted["item"], source)
    if not (schema["feedback"].is_numeric() or schema["feedback"] == pl.Boolean):
        check_feedback(collect(lazy.select("row", "feedback")), wanted["feedback"], source)
    if schema["time"] == pl.String:
        materialized = collect(lazy)
        lazy = materialized.with_columns(check_time(materialized, wanted["time"], source)).lazy()
        schema, stats = lazy.collect_schema(), _stats(lazy)
        time = pl.col("time")
    else:
        time = check_time(_range_frame(stats, "time", schema["time"]), wanted["time"], source)
    for role in STANDARD_COLUMNS:
        if stats[f"{role}_missing"]:
            reject_missing(collect(lazy.select("row", role).filter(missing(role, schema[role]))), role, wanted[role], source)
    return lazy.with_columns(user=user, item=item), stats, time


@dataclass
class _Counts:
    """What reading the user ranges saw: events read, exact duplicates dropped, positive events, the largest feedback."""

    events: int = 0
    duplicates: int = 0
    positive: int = 0
    feedback_max: Optional[float] = None


def _in_user_ranges(
    lazy: pl.LazyFrame, selected: list, users: ids.IdCoder, positive: pl.Expr, n_rows: int, sessions: bool, source, fmt: str,
) -> tuple[pl.DataFrame, _Counts]:
    """The coded events in event order, read a range of user codes at a time (about ``PARTITION_EVENTS`` events each),
    Zvuk's plays summed, exact duplicates dropped, the feedback turned into ``positive``."""
    parts, counts = [], _Counts()
    n_parts = max(1, math.ceil(n_rows / PARTITION_EVENTS))
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
        part = event_order(in_row_order(part), first_row=counts.events, consume=True)  # ties keep the input order
        counts.events += part.height
        before = part.height
        part = drop_exact_duplicates(part)
        counts.duplicates += before - part.height
        top = part["feedback"].cast(pl.Float64).max()
        counts.feedback_max = top if counts.feedback_max is None or (top is not None and top > counts.feedback_max) else counts.feedback_max
        part = part.select("user", "item", positive.alias("positive"), "time", "row")
        counts.positive += int(part["positive"].sum())
        parts.append(part)
    return (pl.concat(parts, rechunk=False) if len(parts) > 1 else parts[0]), counts


def filter_and_split(
    events: Events, split_events: Callable[..., splits.Split], seed: int, validation_targets: str, min_item_users: int, min_user_items: int, source,
) -> splits.Split:
    """5-core filters and ``split_events`` (e.g. :func:`negseq.data.splits.leave_last_out`) on compact events.

    The filtered events are renumbered to the split's own codes (users 0..U-1, items 1..N), so
    that the split encodes them without a copy; its vocabularies are mapped back to the original ids.
    """
    frame = splits.filter_cores(events.frame, min_item_users, min_user_items, source)
    events.frame = None  # the filtered copy replaces it
    users, user_ids = ids.renumber(frame["user"], events.user_ids, 0)
    items, item_ids = ids.renumber(frame["item"], events.item_ids, 1)
    frame = frame.with_columns(users, items)
    del users, items
    result = split_events(frame, seed, validation_targets)
    del frame
    return dataclasses.replace(
        result, user_ids=user_ids.gather(result.user_ids), item_ids=item_ids.gather(result.item_ids.cast(pl.Int64) - 1),
    )
