"""Dense, left-padded sequence tensors built once per split.

Every sequence keeps time order and only its most recent items, right-aligned: the newest
item is in the last column and padding (id 0) fills the left. Batches are then plain row
slices of these tensors; nothing per example is built in Python.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import polars as pl
import torch
from torch import Tensor


def last_items(events: pl.DataFrame, row_of: pl.Expr, n_rows: int, length: int, value: str = "item") -> Tensor:
    """``(n_rows, length)`` matrix of the last ``length`` values of ``value`` per row, right-aligned.

    ``events`` must be sorted in time order within each row; ``row_of`` maps an event to its
    matrix row. Memory is ``n_rows * length`` whatever the longest history.
    """
    placed = (
        events.select(row=row_of, value=pl.col(value))
        .with_columns(from_end=pl.int_range(pl.len()).reverse().over("row"))
        .filter(pl.col("from_end") < length)
    )
    matrix = np.zeros((n_rows, length), dtype=np.int64)
    matrix[placed["row"].to_numpy(), length - 1 - placed["from_end"].to_numpy()] = placed["value"].cast(pl.Int64).to_numpy()
    return torch.from_numpy(matrix)


@dataclass
class TensorTable:
    """Equal-length tensors indexed by row; ``take`` gathers a batch of rows from all of them."""

    def __len__(self) -> int:
        return len(getattr(self, fields(self)[0].name))

    def take(self, rows: Tensor) -> dict[str, Tensor]:
        return {f.name: getattr(self, f.name)[rows] for f in fields(self)}


@dataclass
class TrainSequences(TensorTable):
    """Per training user, ``(U, L + 1)`` item ids: inputs are columns ``[:-1]``, next-item labels ``[1:]``.

    ``positives`` and ``negatives`` are the two sign-separated sequences PNFRec reads;
    ``history`` is the whole mixed history and ``history_positive`` the sign of each of its items.
    """

    positives: Tensor
    negatives: Tensor
    history: Tensor
    history_positive: Tensor

    @classmethod
    def from_events(cls, train: pl.DataFrame, max_len: int) -> "TrainSequences":
        users = train["user"].unique().sort()
        n_users = users.len()
        row_of = pl.col("user").replace_strict(users, pl.int_range(0, n_users, eager=True))
        as_int = train.with_columns(sign=pl.col("positive").cast(pl.Int64))
        sequences = cls(
            positives=last_items(train.filter("positive"), row_of, n_users, max_len + 1),
            negatives=last_items(train.filter(~pl.col("positive")), row_of, n_users, max_len + 1),
            history=last_items(train, row_of, n_users, max_len + 1),
            history_positive=last_items(as_int, row_of, n_users, max_len + 1, value="sign").bool(),
        )
        has_label = (sequences.positives[:, -2] > 0) | (sequences.negatives[:, -2] > 0) | (sequences.history[:, -2] > 0)
        return cls(*(getattr(sequences, f.name)[has_label] for f in fields(cls)))


@dataclass
class EvalSequences(TensorTable):
    """Per evaluated user: model inputs (last ``L`` items before the target), the seen items and the target.

    ``seen`` is a ``(U, S)`` matrix of every distinct item in the user's history (padding 0), so
    that seen items can be removed from the ranking with one scatter; ``S`` is the longest
    history in this split, needed because every seen item must be filtered.
    """

    user: Tensor
    positives: Tensor
    history: Tensor
    seen: Tensor
    target: Tensor
    target_positive: Tensor

    @classmethod
    def from_events(cls, events: pl.DataFrame, max_len: int) -> "EvalSequences":
        targets = events.filter("is_target").sort("user")
        n_users = targets.height
        row_of = pl.col("user").replace_strict(targets["user"], pl.int_range(0, n_users, eager=True))
        history = events.filter(~pl.col("is_target"))
        seen = history.unique(subset=["user", "item"]).sort("user", "item")
        longest = int(seen.group_by("user").len()["len"].max() or 0)
        return cls(
            user=torch.from_numpy(targets["user"].to_numpy().astype(np.int64)),
            positives=last_items(history.filter("positive"), row_of, n_users, max_len),
            history=last_items(history, row_of, n_users, max_len),
            seen=last_items(seen, row_of, n_users, max(longest, 1)),
            target=torch.from_numpy(targets["item"].to_numpy().astype(np.int64)),
            target_positive=torch.from_numpy(targets["positive"].to_numpy()),
        )
