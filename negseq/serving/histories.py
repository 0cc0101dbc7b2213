"""What a caller hands :class:`negseq.Recommender`: histories of ``(item, liked)`` events and lists of item ids, checked
into the event frames serving ranks, with one clear line for input of the wrong shape or type.

A history is a list of ``(item, liked)`` pairs in time order, oldest first (``liked`` a bool); many histories are a
list of them (each user's id is its position) or a polars (or pandas) frame ``user_id, item_id, liked`` in time order per user.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Union

import numpy as np
import polars as pl

from negseq.data.reading import as_polars
from negseq.errors import DataError

Id = Union[int, str]  # an original user or item id
History = Sequence[tuple[Id, bool]]  # (item, liked) events in time order, oldest first
FRAME_COLUMNS = ("user_id", "item_id", "liked")


def histories_frame(histories: "Sequence[History] | pl.DataFrame", item_dtype: pl.DataType, name: str) -> tuple[pl.DataFrame, pl.Series]:
    """Events ``user`` (0..U-1), ``item`` (original ids), ``positive`` in time order per user, and the ``user_id`` of
    each user row (a frame's ids in order of first appearance, else list positions); ``name`` starts each error."""
    histories = as_polars(histories)
    if isinstance(histories, pl.DataFrame):
        return _frame_events(histories, name)
    if isinstance(histories, (str, bytes, dict)) or not isinstance(histories, Sequence):
        raise DataError(f"{name}: histories must be a list of [(item, liked), ...] lists or a polars or pandas frame, got {type(histories).__name__}")
    if not histories:
        raise DataError(f"{name}: no histories; expected a list of [(item, liked), ...] lists")
    users, items, signs = [], [], []
    for position, history in enumerate(histories):
        if isinstance(history, (str, bytes, dict)) or not isinstance(history, Sequence):
            raise DataError(f"{name}: history {position} must be a list of (item, liked) pairs in time order, got {type(history).__name__}")
        for event in history:
            if not (isinstance(event, (tuple, list)) and len(event) == 2 and isinstance(event[1], (bool, np.bool_))):
                raise DataError(f"{name}: history {position}: each event must be an (item, liked) pair, liked True or False; got {event!r}")
        users += [position] * len(history)
        items += [item for item, _ in history]
        signs += [bool(liked) for _, liked in history]
    events = pl.DataFrame({"user": pl.Series(users, dtype=pl.Int64), "item": item_series(items, item_dtype, name), "positive": pl.Series(signs, dtype=pl.Boolean)})
    return events, pl.Series("user_id", range(len(histories)), dtype=pl.Int64)


def _frame_events(histories: pl.DataFrame, name: str) -> tuple[pl.DataFrame, pl.Series]:
    missing = [column for column in FRAME_COLUMNS if column not in histories.columns]
    if missing:
        raise DataError(f"{name}: the frame lacks {missing}; expected columns user_id, item_id, liked (bool) in time order per user")
    if histories.schema["liked"] != pl.Boolean:
        raise DataError(f"{name}: column 'liked' is {histories.schema['liked']}; expected Boolean (True: liked, False: disliked)")
    if histories.height == 0:
        raise DataError(f"{name}: no histories; expected at least one user's events")
    user_ids = histories["user_id"].unique(maintain_order=True)
    users = histories["user_id"].replace_strict(user_ids, pl.int_range(user_ids.len(), eager=True), return_dtype=pl.Int64)
    events = pl.DataFrame({"user": users, "item": histories["item_id"], "positive": histories["liked"]})
    return events.sort("user", maintain_order=True), user_ids.alias("user_id")


def item_series(values: Iterable[Id], dtype: pl.DataType, name: str) -> pl.Series:
    """Original item ids as a Series (an empty list as one of ``dtype``, the model's id type); mixed types are refused."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise DataError(f"{name}: expected a list of item ids, got {type(values).__name__}")
    values = list(values)
    try:
        return pl.Series("item", values, dtype=None if values else dtype, strict=True)
    except (TypeError, pl.exceptions.PolarsError) as error:
        raise DataError(f"{name}: item ids must all be integers or all strings, as the model's ({dtype}): {error}") from None
