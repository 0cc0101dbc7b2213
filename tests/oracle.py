"""The eager reader negseq had before its streaming one: a test oracle for :mod:`negseq.data.reading`.

Kept deliberately plain and independent of the package's ordering and coding: the whole log is
read into one frame, validated, sorted with polars' stable sorts, deduplicated with ``unique`` and
signed. Only the opening of a file (:mod:`negseq.data.formats`) and the column checks
(:mod:`negseq.data.validation`) are shared. :func:`read_log` also checks that the streaming
reader agrees with it on every call (the same DataError, or the same events): every test that
reads a log through it compares the two readers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import polars as pl
import pytest

from negseq.data import reading
from negseq.data.formats import FORMATS, STANDARD_COLUMNS, ZVUK_SESSION, Columns, open_raw, resolve_format
from negseq.data.validation import check_feedback, check_id, check_time, reject_missing
from negseq.errors import DataError


def eager_read_log(
    path, format: str = "auto", user_col: Optional[str] = None, item_col: Optional[str] = None, feedback_col: Optional[str] = None,
    time_col: Optional[str] = None, has_header: bool = True, separator: Optional[str] = None,
) -> pl.DataFrame:
    """``row, user, item, feedback, time`` of a log file, in event order (user, time, then row), exact duplicates dropped."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    fmt = resolve_format(path, format)
    columns = FORMATS[fmt].columns.override(user_col, item_col, feedback_col, time_col)
    try:
        raw = open_raw(path, fmt, columns, has_header, separator).collect()
        if FORMATS[fmt].sessions:  # Zvuk: plays of a track within a session summed, at the session's first play of it
            raw = raw.group_by(columns.user, ZVUK_SESSION, columns.item, maintain_order=True).agg(pl.col(columns.feedback).sum(), pl.col(columns.time).min())
    except pl.exceptions.NoDataError:
        raise DataError(f"{path}: the file is empty; expected a header and at least one event") from None
    except (pl.exceptions.PolarsError, OSError, EOFError) as error:
        raise DataError(f"{path}: cannot be read as {fmt}: {error}") from None
    return standardize(raw, columns, path)


def standardize(raw: pl.DataFrame, columns: Columns, source) -> pl.DataFrame:
    """Rename to the standard columns, check them, put events in order and drop exact duplicates."""
    wanted = columns.by_role()
    for role, name in wanted.items():
        if name not in raw.columns:
            raise DataError(f"{source}: missing {role} column {name!r}; the file has columns {raw.columns} (set --data.{role}_col)")
    if raw.height == 0:
        raise DataError(f"{source}: no events; expected at least one row")
    frame = raw.select(**{role: pl.col(name) for role, name in wanted.items()}).with_row_index("row")
    frame = frame.with_columns(
        check_id(frame, "user", wanted["user"], source),
        check_id(frame, "item", wanted["item"], source),
        check_feedback(frame, wanted["feedback"], source),
        check_time(frame, wanted["time"], source),
    )
    for role in STANDARD_COLUMNS:
        reject_missing(frame, role, wanted[role], source)
    frame = frame.sort("user", "time", "row", maintain_order=True)
    return frame.unique(list(STANDARD_COLUMNS), keep="first", maintain_order=True)


def add_sign(frame: pl.DataFrame, threshold: float) -> pl.DataFrame:
    """``positive``: feedback >= threshold (a Boolean feedback is its own sign)."""
    positive = pl.col("feedback") if frame.schema["feedback"] == pl.Boolean else pl.col("feedback") >= threshold
    return frame.with_columns(positive=positive)


READ_FAILURE = ": cannot be read as "  # what precedes the format and polars' own error text in a DataError


def negseq_part(message: str) -> str:
    """A DataError's message without polars' text after ``cannot be read as <format>:``."""
    head, failure, tail = message.partition(READ_FAILURE)
    return head + failure + tail.split(":")[0] if failure else message


def read_log(path, format: str = "auto", **options) -> pl.DataFrame:
    """:func:`eager_read_log`, after checking that :func:`negseq.data.reading.read_events` agrees: the same
    DataError message, or the same events (users, items, times, signs at the format's threshold, in the same order)."""
    try:
        expected = eager_read_log(path, format, **options)
    except DataError as error:
        with pytest.raises(DataError) as streamed:
            reading.read_events(path, format, **options, threshold=None, require_positive=False)
        # polars' own text after "cannot be read as <format>:" differs between its eager and streaming engines in
        # some versions (1.28: the context stack); negseq's part of the message must be the same
        assert negseq_part(str(streamed.value)) == negseq_part(str(error))
        raise
    events = reading.read_events(path, format, **options, threshold=None, require_positive=False)
    signed = add_sign(expected, events.threshold).select("user", "item", "positive", time=pl.col("time").cast(pl.Float64))
    assert events.decoded().select("user", "item", "positive", time=pl.col("time").cast(pl.Float64)).equals(signed)
    return expected


def read_signed(path, threshold: float = 4.0, **options) -> pl.DataFrame:
    """``row, user, item, positive, time``: the eager log, signed."""
    return add_sign(eager_read_log(path, **options), threshold).drop("feedback")
