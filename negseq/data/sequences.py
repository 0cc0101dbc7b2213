"""Dense, left-padded sequence tensors built once per split.

Every sequence keeps time order and only its most recent items, right-aligned: the newest
item is in the last column and padding (id 0) fills the left. Batches are then plain row
slices of these tensors; nothing per example is built in Python.

Memory is bounded by what is kept: ``users x (max_len + 1)`` per training matrix, and for the
items a user has seen (which are all kept, to filter them out of the ranking) one flat array of
distinct (user, item) pairs with per-user offsets. No matrix is as wide as the longest history.
Ids are stored as int32 when they fit (half of int64) and widened per batch; the tensors are
built a block of users at a time, so the working memory is that of a block, not of the log.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import polars as pl
import torch
from torch import Tensor

BLOCK_EVENTS = 2_000_000  # training events turned into matrix rows at once: bounds the working memory beyond the matrices


def id_dtype(largest: int) -> type:
    """The narrowest of int32 and int64 that holds ids (or positions) up to ``largest``: stored tensors are half as big."""
    return np.int32 if largest < 2**31 else np.int64


def widened(tensor: Tensor) -> Tensor:
    """A stored int32 tensor as the int64 a batch carries (embedding lookups take int32, but losses' targets and gathers need int64)."""
    return tensor.long() if tensor.dtype == torch.int32 else tensor


def _right_aligned(rows: np.ndarray, values: list[np.ndarray], n_rows: int, length: int, dtypes: list) -> list[np.ndarray]:
    """For each array in ``values``, the ``(n_rows, length)`` matrix (of the matching ``dtypes``) of each row's last ``length`` values, right-aligned.

    ``rows[e]`` is the matrix row of event ``e``; events of one row are in time order, and rows
    may interleave (a stable sort groups them). Only the kept events are indexed: the working
    memory is O(n_rows * length), not O(events), whatever the longest history.
    """
    if len(rows) and not (rows[1:] >= rows[:-1]).all():
        order = np.argsort(rows, kind="stable")
        rows, values = rows[order], [v[order] for v in values]
    counts = np.bincount(rows, minlength=n_rows) if len(rows) else np.zeros(n_rows, dtype=np.int64)
    kept = np.minimum(counts, length)  # (n_rows,)
    small = id_dtype(max(len(rows), n_rows * length))  # index width: halves the working memory
    within = np.arange(int(kept.sum()), dtype=small) - np.repeat((np.cumsum(kept) - kept).astype(small), kept)  # 0 = the row's oldest kept event
    source = np.repeat((np.cumsum(counts) - kept).astype(small), kept) + within  # (kept events,) its index in rows / values
    cell = np.repeat((np.arange(n_rows, dtype=small) * length + (length - kept)).astype(small), kept) + within  # its flat index in a matrix
    del within
    matrices = []
    for value, dtype in zip(values, dtypes):
        matrix = np.zeros((n_rows, length), dtype=dtype)
        matrix.reshape(-1)[cell] = value[source]
        matrices.append(matrix)
    return matrices


@dataclass
class TensorTable:
    """Equal-length tensors indexed by row; ``take`` gathers a batch of rows from all of them."""

    def __len__(self) -> int:
        return len(getattr(self, fields(self)[0].name))

    def take(self, rows: Tensor) -> dict[str, Tensor]:
        return {f.name: widened(getattr(self, f.name)[rows]) for f in fields(self)}


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
        """``train``: encoded events (user codes 0..U-1) in time order within each user.

        Matrices are int32 (bool for the sign) when the ids fit, and are filled a block of users
        at a time, so the working memory beyond them is that of ``BLOCK_EVENTS`` events.
        """
        users, items = train["user"].to_numpy(), train["item"].to_numpy()
        positive = train["positive"].to_numpy()
        n_rows = int(users.max()) + 1 if len(users) else 0
        width = max_len + 1
        ids, positions = id_dtype(int(items.max()) if len(items) else 0), id_dtype(len(users) + 1)
        dtypes = {"positives": ids, "negatives": ids, "history": ids, "history_positive": bool, "positives_order": positions, "negatives_order": positions}
        matrices = {name: np.zeros((n_rows, width), dtype=dtype) for name, dtype in dtypes.items()}
        for start, end in user_blocks(users, BLOCK_EVENTS):
            first = int(users[start:end].min())
            rows = (users[start:end] - first).astype(np.int64 if end - start >= 2**31 else np.int32)  # (block events,) row in the block
            n_block = int(rows.max()) + 1
            within = slice(first, first + n_block)
            order = np.arange(start + 1, end + 1, dtype=positions)  # grows with time within a user: events are in time order
            block_items, liked = items[start:end], positive[start:end]
            for sign, mask in (("positives", liked), ("negatives", ~liked)):
                matrices[sign][within], matrices[f"{sign}_order"][within] = _right_aligned(
                    rows[mask], [block_items[mask], order[mask]], n_block, width, [ids, positions]
                )
            del order
            matrices["history"][within], matrices["history_positive"][within] = _right_aligned(rows, [block_items, liked], n_block, width, [ids, bool])
        if width > 1:
            has_label = (matrices["positives"][:, -2] > 0) | (matrices["negatives"][:, -2] > 0) | (matrices["history"][:, -2] > 0)
        else:
            has_label = np.zeros(n_rows, dtype=bool)
        if not has_label.all():  # copies: only when some user has no label
            matrices = {name: matrix[has_label] for name, matrix in matrices.items()}
        return cls(**{name: torch.from_numpy(matrix) for name, matrix in matrices.items()})


def user_blocks(users: np.ndarray, block_events: int) -> list[tuple[int, int]]:
    """``(start, end)`` event ranges of about ``block_events`` events, each holding whole users.

    ``users`` sorted (event order): ranges cut at user boundaries; otherwise one range of all events.
    """
    if len(users) == 0:
        return []
    if len(users) <= block_events or not (users[1:] >= users[:-1]).all():
        return [(0, len(users))]
    cuts = np.unique(np.searchsorted(users, users[block_events::block_events], side="left"))  # first event of the user at each multiple
    bounds = [0, *(int(cut) for cut in cuts if cut > 0), len(users)]
    return list(zip(bounds[:-1], bounds[1:]))


@dataclass
class EvalSequences(TensorTable):
    """Per evaluated user: model inputs (last ``L`` items before the target), the seen items and the target.

    Inputs are the liked items (``positives``), the disliked ones (``negatives``) and the mixed
    ``history`` with the sign of each of its items (``history_positive``), each the last ``L`` before the target.

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
    history_positive: Tensor
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
            "positives": widened(self.positives[rows]),
            "negatives": widened(self.negatives[rows]),
            "history": widened(self.history[rows]),
            "history_positive": self.history_positive[rows],
            "seen": self.seen_matrix(rows),
            "target": widened(self.target[rows]),
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
        """``events``: encoded events with ``is_target`` (one per user), in time order within each user.

        Built a block of users at a time (see :meth:`TrainSequences.from_events`); matrices are int32 when the ids fit.
        """
        is_target, positive = events["is_target"].to_numpy(), events["positive"].to_numpy()
        users, items = events["user"].to_numpy(), events["item"].to_numpy()
        ids = id_dtype(int(items.max()) if len(items) else 0)
        blocks = [
            _eval_block(users[start:end], items[start:end], positive[start:end], is_target[start:end], max_len, ids)
            for start, end in user_blocks(users, BLOCK_EVENTS) or [(0, 0)]
        ]
        counts = [np.diff(block["seen_offsets"]) for block in blocks]
        blocks = [{name: part for name, part in block.items() if name != "seen_offsets"} for block in blocks]
        offsets = np.zeros(sum(len(count) for count in counts) + 1, dtype=np.int64)
        np.cumsum(np.concatenate(counts), out=offsets[1:])
        columns = {name: np.concatenate([block.pop(name) for block in blocks]) for name in list(blocks[0])}
        return cls(**{name: torch.from_numpy(column) for name, column in columns.items()}, seen_offsets=torch.from_numpy(offsets))


def _eval_block(users: np.ndarray, items: np.ndarray, positive: np.ndarray, is_target: np.ndarray, max_len: int, ids: type) -> dict[str, np.ndarray]:
    """:class:`EvalSequences`' arrays for events holding all events of their users (``seen_offsets`` from 0)."""
    order = np.argsort(users[is_target], kind="stable")
    target_users = users[is_target][order].astype(np.int64)
    n_users = len(target_users)
    history = ~is_target
    history_users, history_items, history_positive = users[history], items[history], positive[history]
    # matrix row of every history event: its user's position among the sorted target users
    rows = np.searchsorted(target_users, history_users).astype(id_dtype(n_users)) if n_users else np.zeros(len(history_users), dtype=np.int32)
    known = rows < n_users
    known[known] = target_users[rows[known]] == history_users[known]
    del history_users
    if not known.all():  # events of users without a target
        rows, history_items, history_positive = rows[known], history_items[known], history_positive[known]
    del known
    (positives,) = _right_aligned(rows[history_positive], [history_items[history_positive]], n_users, max_len, [ids])
    disliked = ~history_positive
    (negatives,) = _right_aligned(rows[disliked], [history_items[disliked]], n_users, max_len, [ids])
    del disliked
    mixed, mixed_positive = _right_aligned(rows, [history_items, history_positive], n_users, max_len, [ids, bool])
    # distinct (row, item) pairs, sorted by row then item: the seen items in CSR form
    span = int(items.max()) + 1 if len(items) else 1
    pairs = rows.astype(np.int64)  # (history events,) row * span + item, built and sorted in place
    del rows
    pairs *= span
    pairs += history_items
    pairs.sort()  # (np.unique hashes first: several times slower here)
    if len(pairs):
        pairs = pairs[np.concatenate([[True], pairs[1:] != pairs[:-1]])]
    offsets = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(pairs // span, minlength=n_users), out=offsets[1:])
    np.remainder(pairs, span, out=pairs)
    return {
        "user": target_users,
        "positives": positives,
        "negatives": negatives,
        "history": mixed,
        "history_positive": mixed_positive,
        "seen_items": pairs.astype(id_dtype(span)),
        "seen_offsets": offsets,
        "target": items[is_target][order].astype(ids),
        "target_positive": positive[is_target][order],
    }
