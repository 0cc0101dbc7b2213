"""Item titles: MovieLens ``movies.csv`` / ``movies.dat`` beside a MovieLens log, or the embedded ml-latest-small's.

In the data layer so that a checkpoint's catalogue (:mod:`negseq.data.catalog`) can carry them. The
catalogue takes titles only for a log read as ``movielens`` (a file, not a frame): a ``movies.csv``
beside any other log is not its items' titles, even when their integer ids happen to match.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Optional

import polars as pl


def _read_titles(path: Path) -> pl.DataFrame:
    if path.name.endswith(".dat"):  # MovieLens 1M/10M: MovieID::Title::Genres, latin-1
        rows = [line.split("::")[:2] for line in path.read_bytes().decode("latin-1").splitlines() if "::" in line]
        return pl.DataFrame(rows, schema=["item_id", "title"], orient="row").with_columns(pl.col("item_id").cast(pl.Int64))
    frame = pl.read_csv(path, infer_schema_length=10000)
    if not {"movieId", "title"} <= set(frame.columns):
        raise ValueError(f"{path}: expected columns movieId, title")
    return frame.select(item_id=pl.col("movieId").cast(pl.Int64), title=pl.col("title").cast(pl.String))


def item_titles(source: "str | os.PathLike | None" = None) -> Optional[pl.DataFrame]:
    """``item_id, title`` of the items of a log, or None when its data has no titles.

    ``source`` None: the embedded ml-latest-small's ``movies.csv.gz``. A log file or a folder:
    ``movies.csv``, ``movies.csv.gz`` or ``movies.dat`` beside it (the MovieLens layout).
    """
    if source is None:
        candidates = [Path(str(resources.files("negseq.data") / "ml_latest_small" / "movies.csv.gz"))]
    else:
        path = Path(source)
        folder = path if path.is_dir() else path.parent
        candidates = [folder / name for name in ("movies.csv", "movies.csv.gz", "movies.dat")]
    for candidate in candidates:
        if candidate.is_file():
            try:
                return _read_titles(candidate)
            except (ValueError, pl.exceptions.PolarsError):
                continue
    return None


def attach_titles(frame: pl.DataFrame, titles: Optional[pl.DataFrame], on: str = "item_id") -> pl.DataFrame:
    """``frame`` with a ``title`` column (null where unknown), row order kept; unchanged when ``titles`` is None."""
    if titles is None:
        return frame
    titles = titles.with_columns(pl.col("item_id").cast(frame.schema[on], strict=False)).rename({"item_id": on}).unique(on)
    return frame.join(titles, on=on, how="left", maintain_order="left")
