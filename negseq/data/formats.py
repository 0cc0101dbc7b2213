"""The log formats: how each kind of file is opened, which columns it names, and its usual sign threshold.

A format turns a path into a *raw* LazyFrame with the file's own column names (Parquet is scanned;
text and JSON are read, then made lazy); :mod:`negseq.data.reading` selects, validates
(:mod:`negseq.data.validation`), orders (:mod:`negseq.data.order`) and signs its events.

=========== ============================================ ====================================== =========
name        file                                         user, item, feedback, time             threshold
=========== ============================================ ====================================== =========
csv, tsv    any delimited text (``.gz`` too)             user_id, item_id, rating, timestamp    4
parquet     any Parquet file                             user_id, item_id, rating, timestamp    4
movielens   ``ratings.dat`` (``::``) or ``ratings.csv``  userId, movieId, rating, timestamp     4
amazon      review JSON lines (``.json``, ``.json.gz``)  reviewerID, asin, overall,             5
                                                         unixReviewTime
kion        MTS Kion ``interactions.csv``                user_id, item_id, watched_pct,         50
                                                         last_watch_dt
zvuk        ``zvuk-interactions.parquet``                user_id, track_id, play_duration,      30
                                                         datetime
=========== ============================================ ====================================== =========

Delimited text (``csv``, ``tsv``) may have no header line (``has_header=False``): its columns are
then ``column_1``, ``column_2``, ... by position from 1 (name the four wanted ones with the ``*_col`` options),
and ``separator`` overrides the format's own (``,`` for csv, a tab for tsv; ``\t`` as typed on a
command line is a tab).
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

import polars as pl

from negseq.errors import DataError

log = logging.getLogger("negseq")

STANDARD_COLUMNS = ("user", "item", "feedback", "time")
TEXT_FORMATS = ("csv", "tsv")  # the formats whose header and separator are options


@dataclass(frozen=True)
class Columns:
    """Names of the user, item, feedback and timestamp columns in an input file."""

    user: str
    item: str
    feedback: str
    time: str

    def override(self, user: str | None, item: str | None, feedback: str | None, time: str | None) -> "Columns":
        return Columns(user or self.user, item or self.item, feedback or self.feedback, time or self.time)

    def by_role(self) -> dict[str, str]:
        """``{"user": name, "item": name, "feedback": name, "time": name}``."""
        return dict(zip(STANDARD_COLUMNS, (self.user, self.item, self.feedback, self.time)))


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


# -- readers: path, the wanted columns and the text options in, a raw frame out --


def _read_csv(path: Path, columns: Columns, separator: str = ",", has_header: bool = True) -> pl.DataFrame:
    source = io.BytesIO(_read_bytes(path)) if _is_gzip(path) else path
    options = dict(separator=separator, has_header=has_header)
    try:
        frame = pl.read_csv(source, infer_schema_length=10_000, **options)
    except pl.exceptions.ComputeError:
        # a value after the first 10,000 rows that does not fit the type guessed from them (an id
        # 'abc' after numeric ids, a word in a numeric column): guess from the whole file instead
        if not isinstance(source, Path):
            source.seek(0)
        frame = pl.read_csv(source, infer_schema_length=None, **options)
    if not has_header:  # column_1, column_2, ... by position, whatever polars' version calls them
        frame.columns = [f"column_{position}" for position in range(1, frame.width + 1)]
    return frame


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
    wanted = columns.by_role()
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


def _scan_parquet(path: Path, columns: Columns) -> pl.LazyFrame:
    return pl.scan_parquet(path)


def _scan_zvuk(path: Path, columns: Columns) -> pl.LazyFrame:
    """Zvuk's plays, lazily, once the columns the session sum needs are known to be there.

    Plays of one track within one session become one event (:func:`negseq.data.reading.sum_plays`).
    """
    lazy = pl.scan_parquet(path)
    schema = lazy.collect_schema()
    names = schema.names()
    for role, name in (*columns.by_role().items(), ("session", ZVUK_SESSION)):
        if name not in names:
            hint = f" (set --data.{role}_col)" if role != "session" else "; expected Zvuk's per-session plays"
            raise DataError(f"{path}: missing {role} column {name!r}; the file has columns {names}{hint}")
    feedback = schema[columns.feedback]
    if not (feedback.is_numeric() or feedback == pl.Boolean):
        raise DataError(f"{path}: feedback column {columns.feedback!r} has type {feedback}; expected numbers (play seconds)")
    return lazy


@dataclass(frozen=True)
class Format:
    """How to open one kind of file: its reader (a frame, or a LazyFrame when the file can be scanned),
    its default columns and its default feedback threshold; ``separator`` for delimited text."""

    open: Callable[..., "pl.DataFrame | pl.LazyFrame"]
    columns: Columns
    threshold: float = 4.0
    separator: Optional[str] = None  # delimited text: the header and separator are options
    sessions: bool = False  # plays are summed per (user, session, item) (Zvuk)


FORMATS: dict[str, Format] = {
    "csv": Format(_read_csv, GENERIC_COLUMNS, separator=","),
    "tsv": Format(_read_csv, GENERIC_COLUMNS, separator="\t"),
    "parquet": Format(_scan_parquet, GENERIC_COLUMNS),
    "movielens": Format(_read_movielens, MOVIELENS_COLUMNS),
    "amazon": Format(_read_amazon, AMAZON_COLUMNS, threshold=5.0),  # rating 5 of 5, as the authors' Toys & Games split
    "kion": Format(_read_kion, KION_COLUMNS, threshold=50.0),  # watched at least half (negseq's choice; the paper gives none)
    "zvuk": Format(_scan_zvuk, ZVUK_COLUMNS, threshold=30.0, sessions=True),  # 30 s of a track in a session, as the paper
}


def open_raw(path: Path, fmt: str, columns: Columns, has_header: bool = True, separator: Optional[str] = None) -> pl.LazyFrame:
    """The file as a LazyFrame of its own columns; ``has_header`` and ``separator`` only for delimited text (else a DataError)."""
    spec = FORMATS[fmt]
    if spec.separator is None:
        if not has_header or separator is not None:
            raise DataError(f"{path}: has_header and separator apply to delimited text ({list(TEXT_FORMATS)}), not to format {fmt!r}")
        return spec.open(path, columns).lazy()
    separator = "\t" if separator == "\\t" else separator  # ``--data.separator '\t'`` as typed on a command line
    if separator is not None and len(separator.encode()) != 1:
        raise DataError(f"{path}: separator {separator!r}; expected one byte (e.g. ',', ';' or a tab)")
    return spec.open(path, columns, separator=separator or spec.separator, has_header=has_header).lazy()


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
    """The format of ``path``: ``format`` itself, or the detected one for ``auto``."""
    path = Path(path)
    fmt = detect_format(path) if format == "auto" else format
    if fmt not in FORMATS:
        raise DataError(f"{path}: unknown format {format!r}; expected one of {['auto', *sorted(FORMATS)]}")
    return fmt
