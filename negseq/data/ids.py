"""Ids to codes and back, in one place.

Every id column becomes dense integer codes that keep the ids' order (users 0..U-1, items 1..N: 0 is padding), and
codes go back to ids through the vocabulary they index:

- :func:`id_coder` codes a column while the log is read: by offset for a small integer range (a predicate the scan can
  push down), through its sorted vocabulary otherwise;
- :func:`renumber` codes again, densely, the codes left after the 5-core filters;
- :func:`dense` codes a column for counting only (the filters' distinct pairs);
- :func:`vocabulary` is a column's sorted distinct ids; :func:`codes` and :func:`item_codes` look ids up in a known
  vocabulary (the splits, the catalogue, serving);
- :func:`decode` is the way back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import polars as pl

OFFSET_CODES = 2**26  # integer ids spanning fewer values are coded by offset; more: through a vocabulary


@dataclass
class IdCoder:
    """How one id column becomes UInt32 codes that keep the ids' order, and back."""

    expr: pl.Expr
    size: int
    decode: Callable[[pl.Series], pl.Series]
    bounds: Optional[tuple[int, int]] = None  # the id range, for offset codes (pushed into the scan)


def id_coder(lazy: pl.LazyFrame, role: str, dtype: pl.DataType, stats: dict) -> IdCoder:
    """The coder of column ``role`` of a log being read, from its ``stats`` (``<role>_min``, ``<role>_max``)."""
    low, high = stats.get(f"{role}_min"), stats.get(f"{role}_max")
    if dtype.is_integer() and low is not None and high - low < OFFSET_CODES:
        low, high = int(low), int(high)
        return IdCoder((pl.col(role).cast(pl.Int64) - low).cast(pl.UInt32), high - low + 1, lambda codes: codes.cast(pl.Int64) + low, (low, high))
    vocabulary = lazy.select(pl.col(role).unique()).drop_nulls().collect(engine="streaming")[role].sort()
    if dtype.is_integer():
        vocabulary = vocabulary.cast(pl.Int64)
    numbers = pl.int_range(0, vocabulary.len(), eager=True, dtype=pl.UInt32)
    return IdCoder(pl.col(role).replace_strict(vocabulary, numbers, default=None, return_dtype=pl.UInt32), vocabulary.len(), vocabulary.gather)


def vocabulary(values: pl.Series) -> pl.Series:
    """The sorted distinct ``values``: the vocabulary whose positions are the codes."""
    return values.unique().sort()


def renumber(values: pl.Series, ids: pl.Series, first: int) -> tuple[pl.Series, pl.Series]:
    """Codes ``values`` of the vocabulary ``ids`` renumbered ``first, first + 1, ...`` over the codes present (order
    kept), and the ids of the new codes."""
    present = np.bincount(values.to_numpy(), minlength=ids.len()) > 0
    renumbered = (np.cumsum(present) - 1 + first).astype(np.uint32)
    return pl.Series(values.name, renumbered[values.to_numpy()]), ids.filter(pl.Series(present))


def dense(values: pl.Series) -> tuple[np.ndarray, int]:
    """Codes 0..K-1 of ``values`` (any order-preserving numbering) and K: integer ids by offset when their range is small.

    Offsets are UInt32 when they fit (4 bytes an event instead of 8: the compact events' codes pass as they are).
    """
    if values.dtype.is_integer():
        low, high = values.min(), values.max()
        if high - low < 2**31:
            offsets = values if low == 0 and values.dtype == pl.UInt32 else (values.cast(pl.Int64) - low).cast(pl.UInt32)
            return offsets.to_numpy(), int(high - low + 1)
    distinct = vocabulary(values)
    return codes(values, distinct, 0).to_numpy(), distinct.len()


def codes(values: pl.Series, vocabulary: pl.Series, first: int) -> pl.Series:
    """``first + position`` of each value in the sorted ``vocabulary`` (UInt32 when it fits); null for a value not in it.

    Integer ids of a small range are looked up in a table instead of hashed: one gather.
    """
    dtype = pl.UInt32 if first + vocabulary.len() < 2**32 else pl.Int64
    if values.dtype.is_integer() and vocabulary.dtype.is_integer() and vocabulary.len():
        low, high = int(vocabulary[0]), int(vocabulary[-1])
        if low == first and high - low + 1 == vocabulary.len() and values.len() and low <= values.min() and values.max() <= high:
            return values.cast(dtype)  # already the codes (compact events): no copy
        if high - low < max(2**20, 4 * vocabulary.len()):
            table = np.full(high - low + 2, -1, dtype=np.int64)  # the last slot: values outside the range
            table[vocabulary.cast(pl.Int64).to_numpy() - low] = np.arange(first, first + vocabulary.len())
            offset = pl.col("v").cast(pl.Int64) - low
            index = pl.when(offset.is_between(0, high - low)).then(offset).otherwise(high - low + 1).cast(pl.UInt32)
            looked_up = pl.lit(pl.Series(table)).gather(index)
            return pl.DataFrame({"v": values}).select(pl.when(looked_up >= 0).then(looked_up).cast(dtype)).to_series().alias(values.name)
    numbers = pl.int_range(first, first + vocabulary.len(), eager=True, dtype=pl.Int64)
    return values.replace_strict(vocabulary, numbers, default=None, return_dtype=pl.Int64).cast(dtype)


def item_codes(values: pl.Series, item_ids: pl.Series) -> pl.Series:
    """Item codes 1..N of original ids in the sorted vocabulary ``item_ids``; null for an id not in it."""
    return codes(values, item_ids, 1)


def decode(values: pl.Series, ids: pl.Series, first: int = 0) -> pl.Series:
    """The ids of codes ``values`` that number the vocabulary ``ids`` from ``first`` (users 0, items 1)."""
    return ids.gather(values - first if first else values)
