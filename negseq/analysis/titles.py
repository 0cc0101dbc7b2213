"""Item titles joined onto tables of recommendations (the titles themselves: :mod:`negseq.data.titles`)."""

from __future__ import annotations

from typing import Optional

import polars as pl

from negseq.data.titles import item_titles

__all__ = ["attach_titles", "item_titles"]


def attach_titles(frame: pl.DataFrame, titles: Optional[pl.DataFrame], on: str = "item_id") -> pl.DataFrame:
    """``frame`` with a ``title`` column (null where unknown), row order kept; unchanged when ``titles`` is None."""
    if titles is None:
        return frame
    titles = titles.with_columns(pl.col("item_id").cast(frame.schema[on], strict=False)).rename({"item_id": on}).unique(on)
    return frame.join(titles, on=on, how="left", maintain_order="left")
