"""Read an interaction log into one validated polars frame.

Every reader ends in the same four columns, whatever the file called them:
``user`` and ``item`` (original ids, integer or string), ``feedback`` (float) and ``time``
(integer, seconds or the file's own unit), plus ``row``, the event's position in the input
(among the rows a format keeps: Kion's rows with a value, Zvuk's summed plays), which breaks
timestamp ties. The frame comes in *event order*: by user, then time, then row
(every later step relies on it and never sorts again). Anything that cannot become that frame
stops here with a :class:`DataError` naming the file, the column and what was expected.

Formats (``FORMATS``; ``--data.format``, ``auto`` picks one from the file name):

| name | file | user, item, feedback, time | threshold |
|---|---|---|---|
| csv, tsv | any delimited text (``.gz`` too) | user_id, item_id, rating, timestamp | 4 |
| parquet | any Parquet file | user_id, item_id, rating, timestamp | 4 |
| movielens | ``ratings.dat`` (``::``) or ``ratings.csv`` | userId, movieId, rating, timestamp | 4 |
| amazon | review JSON lines (``.json``, ``.json.gz``) | reviewerID, asin, overall, unixReviewTime | 5 |
| kion | MTS Kion ``interactions.csv`` | user_id, item_id, watched_pct, last_watch_dt | 50 |
| zvuk | ``zvuk-interactions.parquet`` | user_id, track_id, play_duration, datetime | 30 |

Zvuk plays of one track within one session (``session_id``) are summed into one event at the
session's first play of it, as the paper's authors did; Kion rows without ``watched_pct`` are
dropped (a missing value is not feedback).
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
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
AMAZON_COLUMNS = Columns("reviewerID", "asin", "overall", "unixReviewTime")
KION_COLUMNS = Columns("user_id", "item_id", "watched_pct", "last_watch_dt")
ZVUK_COLUMNS = Columns("user_id", "track_id", "play_duration", "datetime")
ZVUK_SESSION = "session_id"


# -- raw bytes --


def _is_gzip(path: Path) -> bool:
    return path.suffix.lower() == ".gz"


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, decompressed when it is ``.gz``; a damaged gzip file is a DataError."""
    data = path.read_bytes()
    if not _is_gzip(path):
        return data
    try:
        return gzip.decompress(data)
    except EOFError:
        raise DataError(
            f"{path}: the gzip data ends early (the file is truncated, e.g. an interrupted download); "
            "expected a complete .gz file: download it again"
        ) from None
    except (gzip.BadGzipFile, zlib.error) as error:
        raise DataError(f"{path}: is not a valid gzip file ({error}); expected gzip-compressed data for a .gz name") from None


# -- readers: path and the wanted columns in, a raw frame out (standardize() maps it) --


def _read_csv(path: Path, columns: Columns, separator: str = ",") -> pl.DataFrame:
    source = io.BytesIO(_read_bytes(path)) if _is_gzip(path) else path
    try:
        return pl.read_csv(source, separator=separator, infer_schema_length=10_000)
    except pl.exceptions.ComputeError:
        # a value after the first 10,000 rows that does not fit the type guessed from them (an id
        # 'abc' after numeric ids, a word in a numeric column): guess from the whole file instead
        if not isinstance(source, Path):
            source.seek(0)
        return pl.read_csv(source, separator=separator, infer_schema_length=None)


def _read_tsv(path: Path, columns: Columns) -> pl.DataFrame:
    return _read_csv(path, columns, separator="\t")


def _read_parquet(path: Path, columns: Columns) -> pl.DataFrame:
    """Only the four wanted columns are read; without one of them, an empty frame of the file's columns (standardize names it)."""
    names = pl.scan_parquet(path).collect_schema().names()
    wanted = [columns.user, columns.item, columns.feedback, columns.time]
    if not set(wanted) <= set(names):
        return pl.scan_parquet(path).head(0).collect()
    return pl.read_parquet(path, columns=list(dict.fromkeys(wanted)))


def _read_movielens(path: Path, columns: Columns) -> pl.DataFrame:
    """``ratings.dat`` (``::``-separated, no header: MovieLens 1M/10M) or ``ratings.csv`` (with header: 20M, 25M, latest)."""
    if ".dat" not in [suffix.lower() for suffix in path.suffixes]:
        return _read_csv(path, columns)
    # polars wants a one-byte separator; '::' never occurs inside MovieLens fields
    text = _read_bytes(path).replace(b"::", b"\t")
    return pl.read_csv(io.BytesIO(text), separator="\t", has_header=False, new_columns=[MOVIELENS_COLUMNS.user, MOVIELENS_COLUMNS.item, MOVIELENS_COLUMNS.feedback, MOVIELENS_COLUMNS.time])


_JSON_TYPES = {str: "string", int: "int64", float: "float64", bool: "bool"}


def _read_amazon(path: Path, columns: Columns) -> pl.DataFrame:
    """Amazon review JSON lines (one object per line; the 2014 and 2018 5-core files), plain or gzipped.

    Only the four wanted fields are parsed (the files also hold nested ``style``, ``image``, review
    text ...). Each field keeps the JSON type of its first line; a later line with another type
    (an id written as a number in one line and as a string in another) is a DataError.
    """
    import pyarrow as pa
    import pyarrow.json as pa_json

    data = _read_bytes(path)
    first_line = data.lstrip().split(b"\n", 1)[0]
    if not first_line:
        raise pl.exceptions.NoDataError("empty")
    try:
        first = json.loads(first_line)
    except ValueError as error:
        raise DataError(f"{path}: line 1 is not JSON ({error}); expected one JSON object per line (Amazon review files)") from None
    if not isinstance(first, dict):
        raise DataError(f"{path}: line 1 is a JSON {type(first).__name__}; expected one JSON object per line (Amazon review files)")
    wanted = dict(zip(STANDARD_COLUMNS, (columns.user, columns.item, columns.feedback, columns.time)))
    for role, name in wanted.items():
        if name not in first:
            raise DataError(f"{path}: missing {role} column {name!r}; the first line has fields {list(first)} (set --data.{role}_col)")
    types = {name: _JSON_TYPES.get(type(first[name]), "string") for name in wanted.values()}
    if types[columns.feedback] == "int64":
        types[columns.feedback] = "float64"  # 5 and 5.0 are the same rating
    schema = pa.schema([(name, getattr(pa, kind)()) for name, kind in types.items()])
    options = pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
    try:
        table = pa_json.read_json(io.BytesIO(data), parse_options=options)
    except pa.ArrowInvalid as error:
        raise _json_type_error(path, data, str(error), wanted, types) from None
    return pl.from_arrow(table)


def _json_type_error(path: Path, data: bytes, message: str, wanted: dict[str, str], types: dict[str, str]) -> DataError:
    """A DataError for pyarrow's 'Column(/name) changed from X to Y', with the first line where it happens."""
    match = re.search(r"Column\(/([^)]*)\) changed from (\w+) to (\w+)", message)
    if not match or match.group(1) not in types:
        return DataError(f"{path}: cannot be read as amazon JSON lines: {message}")
    name, expected, found = match.groups()
    role = next(role for role, column in wanted.items() if column == name)
    what = "ids" if role in ("user", "item") else "values"
    for number, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line).get(name)
        except ValueError:
            return DataError(f"{path}: line {number} is not JSON; expected one JSON object per line (Amazon review files)")
        kind = {str: "string", bool: "boolean", int: "number", float: "number"}.get(type(value))
        if value is not None and kind != expected:
            return DataError(
                f"{path}: {role} column {name!r} mixes JSON {expected}s and {kind}s (line 1 has a {expected}, "
                f"line {number} the {kind} {value!r}); expected one type for all {what}"
            )
    return DataError(f"{path}: {role} column {name!r} changes from JSON {expected} to {found}; expected one type for all {what}")


def _read_kion(path: Path, columns: Columns) -> pl.DataFrame:
    """MTS Kion ``interactions.csv``: rows without a feedback value (``watched_pct``) are dropped and counted."""
    frame = _read_csv(path, columns)
    if columns.feedback in frame.columns:
        missing = frame[columns.feedback].null_count()
        if missing and missing < frame.height:
            log.info("%s: dropped %d events without %s", path, missing, columns.feedback)
            frame = frame.filter(pl.col(columns.feedback).is_not_null())
    return frame


def _scan_zvuk(path: Path, columns: Columns) -> pl.LazyFrame:
    """Zvuk's plays, lazily, once the columns the session sum needs are known to be there."""
    lazy = pl.scan_parquet(path)
    schema = lazy.collect_schema()
    names = schema.names()
    wanted = dict(zip(STANDARD_COLUMNS, (columns.user, columns.item, columns.feedback, columns.time)))
    for role, name in (*wanted.items(), ("session", ZVUK_SESSION)):
        if name not in names:
            hint = f" (set --data.{role}_col)" if role != "session" else "; expected Zvuk's per-session plays"
            raise DataError(f"{path}: missing {role} column {name!r}; the file has columns {names}{hint}")
    feedback = schema[columns.feedback]
    if not (feedback.is_numeric() or feedback == pl.Boolean):
        raise DataError(f"{path}: feedback column {columns.feedback!r} has type {feedback}; expected numbers (play seconds)")
    return lazy


def _read_zvuk(path: Path, columns: Columns) -> pl.DataFrame:
    """Zvuk ``zvuk-interactions.parquet``: plays of a track within a session become one event.

    Its play durations are summed and its time is the session's first play of the track; events
    keep the order of their first play in the file.
    """
    lazy = _scan_zvuk(path, columns)
    before = lazy.select(pl.len()).collect().item()
    frame = (
        lazy.group_by(columns.user, ZVUK_SESSION, columns.item, maintain_order=True)
        .agg(pl.col(columns.feedback).sum(), pl.col(columns.time).min())
        .collect()
    )
    if frame.height < before:
        log.info("%s: %d plays summed into %d (user, session, track) events", path, before, frame.height)
    return frame


def _scan_parquet(path: Path, columns: Columns) -> pl.LazyFrame:
    return pl.scan_parquet(path)


@dataclass(frozen=True)
class Format:
    """How to read one kind of file: its reader, its default columns and its default feedback threshold."""

    reader: Callable[[Path, Columns], pl.DataFrame]
    columns: Columns
    threshold: float = 4.0
    scanner: Optional[Callable[[Path, Columns], pl.LazyFrame]] = None  # lazy reading for the streaming preparation (Parquet); else the reader


FORMATS: dict[str, Format] = {
    "csv": Format(_read_csv, GENERIC_COLUMNS),
    "tsv": Format(_read_tsv, GENERIC_COLUMNS),
    "parquet": Format(_read_parquet, GENERIC_COLUMNS, scanner=_scan_parquet),
    "movielens": Format(_read_movielens, MOVIELENS_COLUMNS),
    "amazon": Format(_read_amazon, AMAZON_COLUMNS, threshold=5.0),  # rating 5 of 5, as the authors' Toys & Games split
    "kion": Format(_read_kion, KION_COLUMNS, threshold=50.0),  # watched at least half (negseq's choice; the paper gives none)
    "zvuk": Format(_read_zvuk, ZVUK_COLUMNS, threshold=30.0, scanner=_scan_zvuk),  # 30 s of a track in a session, as the paper
}


def _csv_header(path: Path) -> list[str]:
    try:
        opener = gzip.open if _is_gzip(path) else open
        with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
            return handle.readline().strip().split(",")
    except (OSError, EOFError):
        return []


def detect_format(path: Path) -> str:
    """Guess the format from the file name: dataset names first, then the extension."""
    name = path.name.lower().removesuffix(".gz")
    if name in ("ratings.dat", "ratings.csv"):
        return "movielens"
    if name == "interactions.csv" and "watched_pct" in _csv_header(path):
        return "kion"
    if name.startswith("zvuk") and name.endswith((".parquet", ".pq")):
        return "zvuk"
    for suffix, fmt in (
        (".csv", "csv"), (".tsv", "tsv"), (".txt", "tsv"), (".parquet", "parquet"), (".pq", "parquet"),
        (".json", "amazon"), (".jsonl", "amazon"), (".ndjson", "amazon"),
    ):
        if name.endswith(suffix):
            return fmt
    raise DataError(f"{path}: cannot tell the format from the file name; pass --data.format, one of {sorted(FORMATS)}")


def resolve_format(path: str | Path, format: str = "auto") -> str:
    """The format name ``read_log`` uses for ``path``: ``format`` itself, or the detected one for ``auto``."""
    path = Path(path)
    fmt = detect_format(path) if format == "auto" else format
    if fmt not in FORMATS:
        raise DataError(f"{path}: unknown format {format!r}; expected one of {['auto', *sorted(FORMATS)]}")
    return fmt


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
    fmt = resolve_format(path, format)
    columns = FORMATS[fmt].columns.override(user_col, item_col, feedback_col, time_col)
    try:
        raw = FORMATS[fmt].reader(path, columns)
    except pl.exceptions.NoDataError:
        raise DataError(f"{path}: the file is empty; expected a header and at least one event") from None
    except (pl.exceptions.PolarsError, OSError, EOFError) as error:
        raise DataError(f"{path}: cannot be read as {fmt}: {error}") from None
    return standardize(raw, columns, path)


def standardize(raw: pl.DataFrame, columns: Columns, source: str | Path) -> pl.DataFrame:
    """Rename to the standard columns, check their types and values, put events in order and drop exact duplicates."""
    wanted = dict(zip(STANDARD_COLUMNS, (columns.user, columns.item, columns.feedback, columns.time)))
    for role, name in wanted.items():
        if name not in raw.columns:
            raise DataError(f"{source}: missing {role} column {name!r}; the file has columns {raw.columns} (set --data.{role}_col)")
    if raw.height == 0:
        raise DataError(f"{source}: no events; expected at least one row")
    frame = raw.select(**{role: pl.col(name) for role, name in wanted.items()}).with_row_index("row")
    del raw
    frame = frame.with_columns(
        _check_id(frame, "user", wanted["user"], source),
        _check_id(frame, "item", wanted["item"], source),
        _check_feedback(frame, wanted["feedback"], source),
        _check_time(frame, wanted["time"], source),
    )
    for role in STANDARD_COLUMNS:
        _reject_missing(frame, role, wanted[role], source)
    frame = event_order(frame)
    before = frame.height
    frame = _drop_exact_duplicates(frame)
    if frame.height < before:
        log.info("%s: dropped %d exact duplicate events (same user, item, feedback and time)", source, before - frame.height)
    return frame


def in_event_order(frame: pl.DataFrame) -> bool:
    """Whether ``frame`` is sorted by user, then time, then row (one pass, no sort)."""
    if frame.height < 2:
        return True
    user, time, row = pl.col("user"), pl.col("time"), pl.col("row")
    later = (user > user.shift()) | ((user == user.shift()) & ((time > time.shift()) | ((time == time.shift()) & (row > row.shift()))))
    return bool(frame.select(later.slice(1).all()).item())


def event_order(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` sorted by user, then time, then row: as is when it already is, by user alone when it is in time order.

    Sorts are stable, so events of one user at one time keep their order in ``frame`` (row order
    for a file as read).
    """
    if in_event_order(frame):
        return frame
    if frame.select(pl.col("time").diff().slice(1).ge(0).all() & pl.col("row").diff().slice(1).gt(0).all()).item():
        return frame.sort("user", maintain_order=True)  # a log in time order (server logs): one key is enough
    # polars sorts one integer key several times faster than two: pack (user, time) into one when they fit
    user, time = frame["user"], frame["time"]
    if user.dtype.is_integer() and time.dtype.is_integer():
        users, times = int(user.max()) - int(user.min()) + 1, int(time.max()) - int(time.min()) + 1
        if users * times < 2**63:
            key = (pl.col("user").cast(pl.Int64) - user.min()) * times + (pl.col("time").cast(pl.Int64) - time.min())
            return frame.with_columns(_key=key).sort("_key", maintain_order=True).drop("_key")
    return frame.sort("time", maintain_order=True).sort("user", maintain_order=True)  # stable: the second keeps the first's order


def _drop_exact_duplicates(frame: pl.DataFrame) -> pl.DataFrame:
    """Keep the first of events with the same user, item, feedback and time; ``frame`` is in event order.

    Duplicates share user and time, so they sit in runs of equal (user, time): only those runs
    are compared, which costs nothing for a log without time ties.
    """
    same = (pl.col("user") == pl.col("user").shift()) & (pl.col("time") == pl.col("time").shift())
    tied = frame.select(same.fill_null(False)).to_series()
    if not tied.any():
        return frame
    in_run = (tied | tied.shift(-1, fill_value=False)).to_numpy()
    runs = frame.filter(pl.Series(in_run))
    first = runs.select(pl.struct(*STANDARD_COLUMNS).is_first_distinct()).to_series().to_numpy()
    if first.all():
        return frame
    keep = np.ones(frame.height, dtype=bool)
    keep[np.flatnonzero(in_run)[~first]] = False
    return frame.filter(pl.Series(keep))


def _check_int64(frame: pl.DataFrame, role: str, name: str, source: str | Path, expected: str) -> None:
    """Integers beyond the signed 64-bit range (a UInt64 or Int128 column) would fail deep in a cast."""
    low, high = frame[role].min(), frame[role].max()
    for value in (low, high):
        if value is not None and not -(2**63) <= value < 2**63:
            raise DataError(f"{source}: {role} column {name!r} holds integers beyond the 64-bit signed range (e.g. {value}); expected {expected}")


def _check_id(frame: pl.DataFrame, role: str, name: str, source: str | Path) -> pl.Expr:
    dtype = frame.schema[role]
    if dtype.is_integer():  # one id type whatever the file's integer width, so that files can be joined
        _check_int64(frame, role, name, source, "integer ids between -2**63 and 2**63 - 1, or string ids")
        return pl.col(role).cast(pl.Int64)
    if dtype == pl.String:
        return pl.col(role)
    raise DataError(f"{source}: {role} column {name!r} has type {dtype}; expected integer or string ids")


def _check_feedback(frame: pl.DataFrame, name: str, source: str | Path) -> pl.Expr:
    dtype = frame.schema["feedback"]
    if dtype.is_numeric() or dtype == pl.Boolean:
        return pl.col("feedback").cast(pl.Float64)
    values = frame.select("row", "feedback").drop_nulls()
    if dtype == pl.String:  # show a value that is not a number, not merely the first one
        values = values.filter(pl.col("feedback").cast(pl.Float64, strict=False).is_null())
    example = values.head(1).rows()
    at = f" (e.g. {example[0][1]!r} at row {example[0][0]})" if example else ""
    raise DataError(f"{source}: feedback column {name!r} has type {dtype}{at}; expected numbers")


def _check_time(frame: pl.DataFrame, name: str, source: str | Path) -> pl.Expr:
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


def _reject_missing(frame: pl.DataFrame, role: str, name: str, source: str | Path) -> None:
    missing = pl.col(role).is_null()
    if frame.schema[role].is_float():
        missing = missing | pl.col(role).is_nan()
    elif frame[role].null_count() == 0:
        return
    bad = frame.filter(missing)
    if bad.height:
        raise DataError(
            f"{source}: {role} column {name!r} has {bad.height} missing (null or NaN) values, first at row {bad['row'][0]}; "
            "expected a value in every row"
        )
