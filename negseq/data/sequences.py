"""Dense, left-padded sequence tensors built once per split.

Every sequence keeps time order and only its most recent items, right-aligned: the newest
item is in the last column and padding (id 0) fills the left. Batches are then plain row
slices of these tensors; nothing per example is built in Python.

Memory is bounded by what is kept: ``users x (max_len + 1)`` per training matrix, and for the
items a user has seen (which are all kept, to filter them out of the ranking) one flat array of
distinct (user, item) pairs with per-user offsets. No matrix is as wide as the longest history.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import polars as pl
import torch
from torch import Tensor


def _right_aligned(rows: np.ndarray, values: list[np.ndarray], n_rows: int, length: int) -> list[np.ndarray]:
    """For each array in ``values``, the ``(n_rows, length)`` matrix of each row's last ``length`` values, right-aligned.

    ``rows[e]`` is the matrix row of event ``e``; events of one row are in time order, and rows
    may interleave (a stable sort groups them). Only the kept events are indexed: the working
    memory is O(n_rows * length), not O(events), whatever the longest history.
    """
    if len(rows) and not (rows[1:] >= rows[:-1]).all():
        order = np.argsort(rows, kind="stable")
        rows, values = rows[order], [v[order] for v in values]
    counts = np.bincount(rows, minlength=n_rows) if len(rows) else np.zeros(n_rows, dtype=np.int64)
    kept = np.minimum(counts, length)  # (n_rows,)
    small = np.int32 if max(len(rows), n_rows * length) < 2**31 else np.int64  # index width: halves the working memory
    row_of = np.repeat(np.arange(n_rows, dtype=small), kept)  # (kept events,)
    within = np.arange(len(row_of), dtype=small) - np.repeat((np.cumsum(kept) - kept).astype(small), kept)  # 0 = the row's oldest kept event
    source = np.repeat((np.cumsum(counts) - kept).astype(small), kept) + within  # its index in rows / values
    columns = np.repeat((length - kept).astype(small), kept) + within
    matrices = []
    for value in values:
        matrix = np.zeros((n_rows, length), dtype=np.int64)
        matrix[row_of, columns] = value[source]
        matrices.append(matrix)
    return matrices


def last_items(events: pl.DataFrame, row_of: pl.Expr, n_rows: int, length: int, value: str = "item") -> Tensor:
    """``(n_rows, length)`` matrix of the last ``length`` values of ``value`` per row, right-aligned.

    ``events`` must be in time order within each row; ``row_of`` maps an event to its matrix
    row. Memory is ``n_rows * length`` whatever the longest history.
    """
    placed = events.select(row=row_of.cast(pl.Int64), value=pl.col(value).cast(pl.Int64))
    (matrix,) = _right_aligned(placed["row"].to_numpy(), [placed["value"].to_numpy()], n_rows, length)
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
    ``positives_order`` and ``negatives_order`` say when each item of the two sequences came:
    a number that grows with time within a user (0 at padding), so that losses can tell which
    disliked items came before a liked one.
    Users are in code order; a user without any next-item label in any sequence is left out.
    """

    positives: Tensor
    negatives: Tensor
    history: Tensor
    history_positive: Tensor
    positives_order: Tensor
    negatives_order: Tensor

    @classmethod
    def from_events(cls, train: pl.DataFrame, max_len: int) -> "TrainSequences":
        """``train``: encoded events (user codes 0..U-1) in time order within each user."""
        users, items = train["user"].to_numpy(), train["item"].to_numpy()
        positive = train["positive"].to_numpy()
        n_rows = int(users.max()) + 1 if len(users) else 0
        width = max_len + 1
        order = np.arange(1, len(users) + 1, dtype=np.int64 if len(users) >= 2**31 else np.int32)  # events are in time order within each user
        liked, disliked = np.flatnonzero(positive), np.flatnonzero(~positive)
        positives, positives_order = _right_aligned(users[liked], [items[liked], order[liked]], n_rows, width)
        del liked
        negatives, negatives_order = _right_aligned(users[disliked], [items[disliked], order[disliked]], n_rows, width)
        del disliked, order
        history, history_sign = _right_aligned(users, [items, positive], n_rows, width)
        has_label = (positives[:, -2] > 0) | (negatives[:, -2] > 0) | (history[:, -2] > 0) if width > 1 else np.zeros(n_rows, dtype=bool)
        if has_label.all():  # no copies
            return cls(*(torch.from_numpy(m) for m in (positives, negatives, history, history_sign.astype(bool), positives_order, negatives_order)))
        return cls(
            positives=torch.from_numpy(positives[has_label]),
            negatives=torch.from_numpy(negatives[has_label]),
            history=torch.from_numpy(history[has_label]),
            history_positive=torch.from_numpy(history_sign[has_label].astype(bool)),
            positives_order=torch.from_numpy(positives_order[has_label]),
            negatives_order=torch.from_numpy(negatives_order[has_label]),
        )


@dataclass
class EvalSequences(TensorTable):
    """Per evaluated user: model inputs (last ``L`` items before the target), the seen items and the target.

    Inputs are the liked items (``positives``), the disliked ones (``negatives``) and the mixed
    ``history``, each the last ``L`` before the target.

    Seen items (every distinct item of the user's history, both signs) are kept flat:
    ``seen_items[seen_offsets[u]:seen_offsets[u + 1]]`` are user row ``u``'s, in item order, so
    their memory is the number of distinct (user, item) pairs. :meth:`take` turns them into the
    batch's ``seen``: a ``(B, S)`` LongTensor padded with 0, ``S`` the most seen items of a user
    *in that batch* (at least 1).
    """

    user: Tensor
    positives: Tensor
    negatives: Tensor
    history: Tensor
    seen_items: Tensor
    seen_offsets: Tensor
    target: Tensor
    target_positive: Tensor

    def __len__(self) -> int:
        return len(self.user)

    def take(self, rows: Tensor) -> dict[str, Tensor]:
        rows = torch.as_tensor(rows, dtype=torch.long)
        return {
            "user": self.user[rows],
            "positives": self.positives[rows],
            "negatives": self.negatives[rows],
            "history": self.history[rows],
            "seen": self.seen_matrix(rows),
            "target": self.target[rows],
            "target_positive": self.target_positive[rows],
        }

    def seen_matrix(self, rows: Tensor) -> Tensor:
        """``(B, S)`` seen items of ``rows``, left-aligned and padded with 0 to the batch's widest."""
        rows = torch.as_tensor(rows, dtype=torch.long)
        starts = self.seen_offsets[rows]
        counts = self.seen_offsets[rows + 1] - starts
        width = max(int(counts.max()) if len(rows) else 0, 1)
        column = torch.arange(width)
        inside = column[None, :] < counts[:, None]
        flat = torch.cat([self.seen_items, self.seen_items.new_zeros(1)])  # a 0 for the padded slots
        index = torch.where(inside, starts[:, None] + column[None, :], len(flat) - 1)
        return flat[index].long()

    @classmethod
    def from_events(cls, events: pl.DataFrame, max_len: int) -> "EvalSequences":
        """``events``: encoded events with ``is_target`` (one per user), in time order within each user."""
        is_target = events["is_target"].to_numpy()
        users, items = events["user"].to_numpy().astype(np.int64), events["item"].to_numpy().astype(np.int64)
        positive = events["positive"].to_numpy()
        order = np.argsort(users[is_target], kind="stable")
        target_users = users[is_target][order]
        n_users = len(target_users)
        history = ~is_target
        # matrix row of every history event: its user's position among the sorted target users
        rows = np.searchsorted(target_users, users[history]) if n_users else np.zeros(int(history.sum()), dtype=np.int64)
        known = rows < n_users
        known[known] = target_users[rows[known]] == users[history][known]
        rows, history_items, history_positive = rows[known], items[history][known], positive[history][known]
        (positives,) = _right_aligned(rows[history_positive], [history_items[history_positive]], n_users, max_len)
        (negatives,) = _right_aligned(rows[~history_positive], [history_items[~history_positive]], n_users, max_len)
        (mixed,) = _right_aligned(rows, [history_items], n_users, max_len)
        # distinct (row, item) pairs, sorted by row then item: the seen items in CSR form
        span = int(items.max()) + 1 if len(items) else 1
        pairs = np.sort(rows * span + history_items)  # (np.unique hashes first: several times slower here)
        if len(pairs):
            pairs = pairs[np.concatenate([[True], pairs[1:] != pairs[:-1]])]
        seen_rows, seen_items = pairs // span, pairs % span
        offsets = np.zeros(n_users + 1, dtype=np.int64)
        np.cumsum(np.bincount(seen_rows, minlength=n_users), out=offsets[1:])
        item_dtype = np.int32 if span < 2**31 else np.int64
        return cls(
            user=torch.from_numpy(target_users.copy()),
            positives=torch.from_numpy(positives),
            negatives=torch.from_numpy(negatives),
            history=torch.from_numpy(mixed),
            seen_items=torch.from_numpy(seen_items.astype(item_dtype)),
            seen_offsets=torch.from_numpy(offsets),
            target=torch.from_numpy(items[is_target][order].copy()),
            target_positive=torch.from_numpy(positive[is_target][order].copy()),
        )
