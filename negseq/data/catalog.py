"""The item vocabulary a model was trained on, and how its log was read: what serving needs besides the weights.

A :class:`Catalog` is saved in every checkpoint as the DataModule's state (Lightning stores a
DataModule's ``state_dict`` under its class name), in tensors and plain types only, so that
``torch.load(..., weights_only=True)`` still reads it: original item ids (integers as an int64
tensor, strings as a list of str) and their type, liked training events per item (the
popularity fallback), titles when the data has them, the reading settings (format and column
flags as configured, the sign threshold as applied) and ``max_len``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import polars as pl
import torch
from torch import Tensor

from negseq.data.ids import item_codes
from negseq.errors import DataError

STATE_KEY = "FeedbackDataModule"  # where Lightning puts FeedbackDataModule.state_dict() in a checkpoint
# FeedbackDataModule's reading arguments, with their values for a checkpoint written before they existed
READING_DEFAULTS = {
    "format": "auto", "user_col": None, "item_col": None, "feedback_col": None, "time_col": None,
    "has_header": True, "separator": None, "missing_time": "error", "threshold": 4.0,
}
READING = tuple(READING_DEFAULTS)
_ID_TYPES = {"Int64": pl.Int64, "String": pl.String}


@dataclass
class Catalog:
    """Item code ``c`` (1..N; 0 is padding) is original id ``item_ids[c - 1]``, titled ``titles[c - 1]``.

    Args:
        item_ids: original ids in code order (Int64 or String, as the log's reader made them).
        popularity: ``(N + 1,)`` liked training events per code (0 for padding).
        titles: title per code (null when unknown), or None when the data has no titles.
        reading: the training log's reading settings as configured (``format="auto"`` detects each
            file's format anew), keyed as :data:`READING`, with the threshold as applied.
        columns: the user, item, feedback and time column names the training log was read with
            (what a frame handed to the recommender is read with).
        max_len: the longest history the model reads.
        log_format: the format the training log was read as (``format`` resolved): how a frame
            handed to the recommender is read (Zvuk's plays are summed per session, as in training).
    """

    item_ids: pl.Series
    popularity: Tensor
    titles: Optional[pl.Series]
    reading: dict
    columns: dict
    max_len: int
    log_format: str = "parquet"

    @property
    def num_items(self) -> int:
        return self.item_ids.len()

    def state_dict(self) -> dict:
        ids = self.item_ids
        return {
            "item_ids": torch.from_numpy(ids.to_numpy().copy()) if ids.dtype == pl.Int64 else ids.to_list(),
            "item_id_type": str(ids.dtype),
            "popularity": self.popularity,
            "titles": None if self.titles is None else self.titles.to_list(),
            "reading": dict(self.reading),
            "columns": dict(self.columns),
            "max_len": self.max_len,
            "log_format": self.log_format,
        }

    @classmethod
    def from_state(cls, state: dict) -> "Catalog":
        dtype = _ID_TYPES[state["item_id_type"]]
        ids = state["item_ids"]
        item_ids = pl.Series("item_id", ids.numpy() if isinstance(ids, Tensor) else ids, dtype=dtype)
        titles = None if state["titles"] is None else pl.Series("title", state["titles"], dtype=pl.String)
        reading = {**READING_DEFAULTS, **state["reading"]}
        log_format = state.get("log_format") or (reading["format"] if reading["format"] != "auto" else "parquet")  # older checkpoints: a guess
        return cls(item_ids, state["popularity"], titles, reading, dict(state["columns"]), int(state["max_len"]), log_format)

    def codes(self, ids: pl.Series, source: str) -> pl.Series:
        """Item codes 1..N of original ``ids`` (null for an id the model does not know); ids of another type are a DataError."""
        if ids.dtype != self.item_ids.dtype:
            if ids.dtype.is_integer() and self.item_ids.dtype.is_integer():
                ids = ids.cast(pl.Int64)
            else:
                raise DataError(
                    f"{source}: item ids are {ids.dtype} but the model's are {self.item_ids.dtype}; expected the item ids of the training log"
                )
        return item_codes(ids, self.item_ids)

    def frame(self) -> pl.DataFrame:
        """``code, item_id, title``: one row per item (title null when unknown or when the data has none)."""
        titles = self.titles if self.titles is not None else pl.Series("title", [None] * self.num_items, dtype=pl.String)
        return pl.DataFrame({"code": pl.int_range(1, self.num_items + 1, eager=True), "item_id": self.item_ids, "title": titles})


def aligned_titles(item_ids: pl.Series, titles: Optional[pl.DataFrame]) -> Optional[pl.Series]:
    """The title of each of ``item_ids`` (null when unknown) from an ``item_id, title`` frame, or None without titles."""
    if titles is None:
        return None
    titles = titles.with_columns(pl.col("item_id").cast(item_ids.dtype, strict=False)).unique("item_id")
    frame = pl.DataFrame({"item_id": item_ids}).join(titles, on="item_id", how="left", maintain_order="left")
    return frame["title"]
