"""Checks of a log's four standard columns: one-line DataErrors naming the file, the column and what was expected.

Each check takes a frame holding the column (the whole column, or for numbers and dates a frame
of its min and max: what the streaming reader gathers in one pass) and returns the expression
that brings the column to its standard type: Int64 or String ids, Float64 or Boolean feedback,
Int64 (or Float64) timestamps in seconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, get_args

import polars as pl

from negseq.errors import DataError

MissingTime = Literal["error", "drop"]  # what an event without a timestamp does
MISSING_TIME = get_args(MissingTime)


def _check_int64(frame: pl.DataFrame, role: str, name: str, source: str | Path, expected: str) -> None:
    """Integers beyond the signed 64-bit range (a UInt64 or Int128 column) would fail deep in a cast."""
    low, high = frame[role].min(), frame[role].max()
    for value in (low, high):
        if value is not None and not -(2**63) <= value < 2**63:
            raise DataError(f"{source}: {role} column {name!r} holds integers beyond the 64-bit signed range (e.g. {value}); expected {expected}")


def check_id(frame: pl.DataFrame, role: str, name: str, source: str | Path) -> pl.Expr:
    dtype = frame.schema[role]
    if dtype.is_integer():  # one id type whatever the file's integer width, so that files can be joined
        _check_int64(frame, role, name, source, "integer ids between -2**63 and 2**63 - 1, or string ids")
        return pl.col(role).cast(pl.Int64)
    if dtype == pl.String:
        return pl.col(role)
    raise DataError(f"{source}: {role} column {name!r} has type {dtype}; expected integer or string ids")


def check_feedback(frame: pl.DataFrame, name: str, source: str | Path) -> pl.Expr:
    """Numbers become Float64; a Boolean column stays Boolean (true = liked, whatever the threshold)."""
    dtype = frame.schema["feedback"]
    if dtype == pl.Boolean:
        return pl.col("feedback")
    if dtype.is_numeric():
        return pl.col("feedback").cast(pl.Float64)
    values = frame.select("row", "feedback").drop_nulls()
    if dtype == pl.String:  # show a value that is not a number, not merely the first one
        values = values.filter(pl.col("feedback").cast(pl.Float64, strict=False).is_null())
    example = values.head(1).rows()
    at = f" (e.g. {example[0][1]!r} at row {example[0][0]})" if example else ""
    raise DataError(f"{source}: feedback column {name!r} has type {dtype}{at}; expected numbers or booleans")


def check_time(frame: pl.DataFrame, name: str, source: str | Path) -> pl.Expr:
    dtype = frame.schema["time"]
    if dtype.is_integer():
        _check_int64(frame, "time", name, source, "integer timestamps between -2**63 and 2**63 - 1")
        return pl.col("time").cast(pl.Int64)
    if dtype.is_float():
        return pl.col("time")
    if dtype in (pl.Date, pl.Datetime) or isinstance(dtype, pl.Datetime):
        return pl.col("time").cast(pl.Datetime("us")).dt.epoch("s")
    if dtype == pl.String:
        try:
            parsed = frame["time"].str.to_datetime(strict=False)
        except pl.exceptions.ComputeError:  # no value polars can infer a format from
            parsed = pl.Series("time", [None] * frame.height, dtype=pl.Datetime("us"))
        unparsed = frame.filter(parsed.is_null() & frame["time"].is_not_null())
        if unparsed.height:
            raise DataError(
                f"{source}: time column {name!r} holds strings that are not ISO dates or times "
                f"(e.g. {unparsed['time'][0]!r} at row {unparsed['row'][0]}); expected numbers or ISO 8601 timestamps"
            )
        return pl.lit(parsed).cast(pl.Datetime("us")).dt.epoch("s").alias("time")
    raise DataError(f"{source}: time column {name!r} has type {dtype}; expected numbers, dates or ISO 8601 strings")


def missing(role: str, dtype: pl.DataType) -> pl.Expr:
    """Whether an event lacks its ``role`` value (null, or NaN in a float column)."""
    return pl.col(role).is_null() | pl.col(role).is_nan() if dtype.is_float() else pl.col(role).is_null()


def reject_missing(frame: pl.DataFrame, role: str, name: str, source: str | Path) -> None:
    bad = frame.filter(missing(role, frame.schema[role]))
    if bad.height:
        hint = "; or drop them with --data.missing_time drop" if role == "time" else ""
        raise DataError(
            f"{source}: {role} column {name!r} has {bad.height} missing (null or NaN) values, first at row {bad['row'][0]}; "
            f"expected a value in every row{hint}"
        )
