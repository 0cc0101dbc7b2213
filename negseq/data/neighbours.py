"""Nearest items by who interacted with them: a model-independent item similarity from the training events.

The similarity of two items is the cosine of their user-incidence vectors (1 where a training
user interacted with the item, liked or disliked, else 0). Both signs count: the neighbours of
an item are the items watched by the same people, which is what a dislike of it says something
about, and a mostly-disliked item (the kind a user dislikes) has few likes to compare on.
Neighbours are computed on demand for the items asked, a block at a time, as a sparse product:
memory is ``block x catalogue`` floats, so a 100k-item catalogue is fine. All they need is the
distinct training (user, item) pairs (:func:`training_pairs`), which the prepared-data cache keeps,
so that a cached run never reads the log again for them.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import torch
from torch import Tensor

from negseq.data.sequences import BLOCK_EVENTS, id_dtype, user_blocks


def training_pairs(train: pl.DataFrame) -> Tensor:
    """``(P, 2)`` the distinct (user, item) pairs of encoded training events, sorted; int32 when the codes fit.

    A block of users at a time (``train`` is in event order), written into one array of the events'
    length (a view of its first P rows is returned): no second copy of the pairs is ever made.
    """
    users, items = train["user"].to_numpy(), train["item"].to_numpy()
    span = int(items.max()) + 1 if len(items) else 1
    pairs = np.empty((len(users), 2), dtype=id_dtype(max(span, int(users.max()) + 1 if len(users) else 0)))
    filled = 0
    for start, end in user_blocks(users, BLOCK_EVENTS):
        keys = users[start:end].astype(np.int64)  # (block events,) user * span + item
        keys *= span
        keys += items[start:end]
        keys = pl.Series(keys).sort().to_numpy()  # (polars sorts integers about twice as fast as numpy here)
        keys = keys[np.concatenate([[True], keys[1:] != keys[:-1]])]
        pairs[filled : filled + len(keys), 0] = keys // span
        pairs[filled : filled + len(keys), 1] = keys % span
        filled += len(keys)
    return torch.from_numpy(pairs[:filled])


class ItemNeighbours:
    """``neighbours(items)`` -> ``(B, m)`` ids of each item's ``m`` most similar other items, most similar first
    (0 where an item has fewer than ``m`` items with a positive similarity, and for padding or unknown items).

    Args:
        pairs: ``(P, 2)`` distinct training (user, item) pairs (:func:`training_pairs`).
        num_items: catalogue size N (ids 1..N).
        m: neighbours per item.
        block_items: items whose similarities are held at once.
    """

    def __init__(self, pairs: Tensor, num_items: int, m: int = 20, block_items: int = 256) -> None:
        if m < 1:
            raise ValueError(f"`m` must be positive, got {m!r}")
        users, items = pairs[:, 0].long(), pairs[:, 1].long()  # (P,) each
        n_users = int(users.max()) + 1 if len(users) else 1
        ones = torch.ones(len(items))
        # (N + 1, U) incidence; its transpose (U, N + 1) is the right-hand side of every block's product
        self.by_item = torch.sparse_coo_tensor(torch.stack([items, users]), ones, (num_items + 1, n_users), check_invariants=False).coalesce()
        self.by_user = torch.sparse_coo_tensor(torch.stack([users, items]), ones, (n_users, num_items + 1), check_invariants=False).coalesce()
        self.norms = torch.zeros(num_items + 1).index_add_(0, items, ones).sqrt()  # (N + 1,): sqrt(users of the item)
        self.num_items, self.m, self.block_items = num_items, m, block_items

    @classmethod
    def from_events(cls, train: pl.DataFrame, num_items: int, m: int = 20, block_items: int = 256) -> "ItemNeighbours":
        """From encoded training events (columns ``user``, ``item``, in event order)."""
        return cls(training_pairs(train), num_items, m, block_items)

    def __call__(self, items: Tensor) -> Tensor:
        # outside inference mode: a sparse index_select inside it fails in torch 2.13 ("inplace update to inference
        # tensor") on catalogues of a few thousand items; the test loop runs in it
        with torch.inference_mode(False):
            return self._neighbours(items.detach().cpu().long()).to(items.device)

    def _neighbours(self, items: Tensor) -> Tensor:
        known = (items > 0) & (items <= self.num_items)
        safe = torch.where(known, items, 0)
        result = torch.zeros(len(items), self.m, dtype=torch.long)
        for start in range(0, len(items), self.block_items):
            block = safe[start : start + self.block_items]  # (b,)
            rows = self.by_item.index_select(0, block)  # (b, U) sparse
            common = torch.sparse.mm(rows, self.by_user).to_dense()  # (b, N + 1): users shared with every item
            cosine = common / (self.norms[block, None] * self.norms[None, :]).clamp(min=1e-12)  # (b, N + 1)
            cosine[torch.arange(len(block)), block] = 0.0  # an item is not its own neighbour
            cosine[:, 0] = 0.0
            values, ids = cosine.topk(min(self.m, cosine.shape[1]), dim=1)  # (b, m), most similar first
            result[start : start + len(block), : ids.shape[1]] = torch.where(values > 0, ids, 0)
        return torch.where(known[:, None], result, 0)
