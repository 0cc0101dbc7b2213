"""Read an interaction log into one validated polars frame.

Every reader ends in the same four columns, whatever the file called them:
``user`` and ``item`` (original ids, integer or string), ``feedback`` (float) and ``time``
(integer, seconds or the file's own unit), plus ``row``, the event's position in the input,
which breaks timestamp ties. Anything that cannot become that frame stops here with a
:class:`DataError` naming the file, the column and what was expected.
"""

from __future__ import annotations

import gzip
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import polars as pl

from negseq.errors import DataError

log = logging.getLogger("negseq")

STANDARD_COLUMNS = ("user", "item", "feedback", "time")


@dataclass(frozen=True)
class Columns:
    """Names of the user, item, feedback and timestamp columns in an input file."""

    user: str
    item: str
    feedback: str
    time: str

    def override(self, user: str | None, item: str | None, feedback: str | None, time: str | None) -> "Columns":
        return Columns(user or self.user, item or self.item, feedback or self.feedback, time or self.time)


GENERIC_COLUMNS = Columns("user_id", "item_id", "rating", "timestamp")
MOVIELENS_COLUMNS = Columns("userId", "movieId", "rating", "timestamp")


def _read_csv(path: Path, separator: str = ",") -> pl.DataFrame:
    return pl.read_csv(path, separator=separator, infer_schema_length=10_000)


def _read_tsv(path: Path) -> pl.DataFrame:
    return _read_csv(path, separator="\t")


def _read_parquet(path: Path) -> pl.DataFrame:
    return pl.read_parquet(path)


def _read_movielens(path: Path) -> pl.DataFrame:
    """``ratings.dat`` (``::``-separated, no header) or ``ratings.csv`` (with header)."""
    if ".dat" not in path.suffixes:
        return _read_csv(path)
    # polars wants a one-byte separator; '::' never occurs inside MovieLens fields
    data = path.read_bytes()
    if path.suffix == ".gz":  # detect_format accepts ratings.dat.gz; '::' must be replaced in the plain text
        data = gzip.decompress(data)
    text = data.replace(b"::", b"\t")
    return pl.read_csv(io.BytesIO(text), separator="\t", has_header=False, new_columns=list(MOVIELENS_COLUMNS.__dict__.values()))


@dataclass(frozen=True)
class Format:
    reader: Callable[[Path], pl.DataFrame]
    columns: Columns


FORMATS: dict[str, Format] = {
    "csv": Format(_read_csv, GENERIC_COLUMNS),
    "tsv": Format(_read_tsv, GENERIC_COLUMNS),
    "parquet": Format(_read_parquet, GENERIC_COLUMNS),
    "movielens": Format(_read_movielens, MOVIELENS_COLUMNS),
}


def detect_format(path: Path) -> str:
    """Guess the format from the file name: MovieLens names first, then the extension."""
    name = path.name.lower().removesuffix(".gz")
    if name in ("ratings.dat", "ratings.csv"):
        return "movielens"
    for suffix, fmt in ((".csv", "csv"), (".tsv", "tsv"), (".txt", "tsv"), (".parquet", "parquet"), (".pq", "parquet")):
        if name.endswith(suffix):
            return fmt
    raise DataError(f"{path}: cannot tell the format from the file name; pass --data.format, one of {sorted(FORMATS)}")


def read_log(
    path: str | Path,
    format: str = "auto",
    user_col: str | None = None,
    item_col: str | None = None,
    feedback_col: str | None = None,
    time_col: str | None = None,
) -> pl.DataFrame:
    """Read and validate one interaction log; see the module docstring for the result's columns."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    fmt = detect_format(path) if format == "auto" else format
    if fmt not in FORMATS:
        raise DataError(f"{path}: unknown format {format!r}; expected one of {['auto', *sorted(FORMATS)]}")
    columns = FORMATS[fmt].columns.override(user_col, item_col, feedback_col, time_col)
    try:
        raw = FORMATS[fmt].reader(path)
    except pl.exceptions.NoDataError:
        raise DataError(f"{path}: the file is empty; expected a header and at least one event") from None
    except (pl.exceptions.PolarsError, OSError, EOFError) as error:
        raise DataError(f"{path}: cannot be read as {fmt}: {error}") from None
    return standardize(raw, columns, path)


def standardize(raw: pl.DataFrame, columns: Columns, source: str | Path) -> pl.DataFrame:
    """Rename to the standard columns, check their types and values, and drop exact duplicates."""
    wanted = dict(zip(STANDARD_COLUMNS, (columns.user, columns.item, columns.feedback, columns.time)))
    for role, name in wanted.items():
        if name not in raw.columns:
            raise DataError(f"{source}: missing {role} column {name!r}; the file has columns {raw.columns} (set --data.{role}_col)")
    if raw.height == 0:
        raise DataError(f"{source}: no events; expected at least one row")
    frame = raw.select(**{role: pl.col(name) for role, name in wanted.items()}).with_row_index("row")
    frame = frame.with_columns(
        _check_id(frame, "user", wanted["user"], source),
        _check_id(frame, "item", wanted["item"], source),
        _check_feedback(frame, wanted["feedback"], source),
        _check_time(frame, wanted["time"], source),
    )
    for role in STANDARD_COLUMNS:
        _reject_missing(frame, role, wanted[role], source)
    before = frame.height
    frame = frame.unique(subset=list(STANDARD_COLUMNS), keep="first", maintain_order=True)
    if frame.height < before:
        log.info("%s: dropped %d exact duplicate events (same user, item, feedback and time)", source, before - frame.height)
    return frame


def _check_id(frame: pl.DataFrame, role: str, name: str, source: str | Path) -> pl.Expr:
    dtype = frame.schema[role]
    if dtype.is_integer():  # one id type whatever the file's integer width, so that files can be joined
        return pl.col(role).cast(pl.Int64)
    if dtype == pl.String:
        return pl.col(role)
    raise DataError(f"{source}: {role} column {name!r} has type {dtype}; expected integer or string ids")


def _check_feedback(frame: pl.DataFrame, name: str, source: str | Path) -> pl.Expr:
    dtype = frame.schema["feedback"]
    if dtype.is_numeric() or dtype == pl.Boolean:
        return pl.col("feedback").cast(pl.Float64)
    example = frame["feedback"].drop_nulls().head(1).to_list()
    raise DataError(f"{source}: feedback column {name!r} has type {dtype} (e.g. {example}); expected numbers")


def _check_time(frame: pl.DataFrame, name: str, source: str | Path) -> pl.Expr:
    dtype = frame.schema["time"]
    if dtype.is_integer():
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


def _reject_missing(frame: pl.DataFrame, role: str, name: str, source: str | Path) -> None:
    missing = pl.col(role).is_null()
    if frame.schema[role].is_float():
        missing = missing | pl.col(role).is_nan()
    bad = frame.filter(missing)
    if bad.height:
        raise DataError(
            f"{source}: {role} column {name!r} has {bad.height} missing (null or NaN) values, first at row {bad['row'][0]}; "
            "expected a value in every row"
        )
