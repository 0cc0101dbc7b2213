"""One way from users' histories to ranked lists: the fit's evaluation and predictions, :class:`negseq.Recommender`,
``negseq recommend`` and the notebooks all rank through :func:`rank`, so the same history gives the same list whichever
path it comes by (the exported program documents the same steps for a caller outside negseq: :mod:`negseq.serving.export`).

The steps, in order:

1. The model input (:func:`model_input`): the model's ``family`` (:mod:`negseq.models.families`) chooses
   what the encoder reads: the liked items, the whole mixed history, or that history with disliked ids negated.
   Disliked items (``negatives``) also feed the negative encoder and the dislike demotion when the model uses them.
2. The fallback: a user whose model input is empty (nothing the encoder reads: no liked item for a ``positives``
   model, no event at all for the others) gets the items most often liked in training (``popularity``, score = that
   count) instead of the model's list, flagged in ``fallback``; without ``popularity`` every user is ranked by the model.
3. Candidates: every item but padding, the ``seen`` ones (each user's history, when excluded) and ``blocked`` ones;
   with ``allowed``, only those codes.
4. Exact top-k (:func:`negseq.models.ranking.top_k`): scores computed in fp64 and rounded once to fp32, the ranking weights the
   model holds (:mod:`negseq.models.ranking_weights`: the item-polarity prior as a per-item bias), ties by the smaller item
   code; a target's rank is its position there.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from negseq.models import families
from negseq.models.ranking import exact_scores, ranks_in, top_k

# users encoded and scored at a time per thread on a CPU: their activations (256 x 50 x 64 fp32, 3 MB a tensor) stay in
# the cache, which made the encoder 2.5x faster than a whole batch of 4,096 (benchmarks/README.md "Serving")
CPU_CHUNK_USERS = 256


def model_input(batch: dict[str, Tensor], family: str) -> Tensor:
    """``(B, L)`` the left-padded sequence the encoder reads, chosen by the model's ``family``."""
    return families.family(family).model_input(batch)


def empty_input(inputs: Tensor) -> Tensor:
    """``(B,)`` True where a left-padded model input holds no item (the users that get the fallback)."""
    return inputs[:, -1] == 0


@dataclass
class Ranked:
    """Top-k lists of a batch of users, best first; a slot without a recommendable item has id 0 and score ``-inf``."""

    scores: Tensor  # (B, k) float32
    items: Tensor  # (B, k) item codes
    fallback: Tensor  # (B,) bool: the popularity list, not the model's
    ranks: Optional[Tensor] = None  # (B,) each target's 1-based position in ``items`` (inf when absent), with targets


def candidates_seen(batch: dict[str, Tensor], exclude_seen: bool, blocked: Optional[Tensor]) -> Tensor:
    """``(B, S)`` codes no user of the batch may get: its seen items (when excluded) and the ``blocked`` codes (0 = none)."""
    seen = batch["seen"] if exclude_seen else batch["seen"].new_zeros(len(batch["seen"]), 1)
    if blocked is None or not len(blocked):
        return seen
    return torch.cat([seen, blocked.to(seen)[None, :].expand(len(seen), -1)], dim=1)


def rank(
    model: torch.nn.Module,
    batch: dict[str, Tensor],
    k: int,
    family: str,
    block_items: int = 2048,
    popularity: Optional[Tensor] = None,
    exclude_seen: bool = True,
    allowed: Optional[Tensor] = None,
    blocked: Optional[Tensor] = None,
) -> Ranked:
    """The top-``k`` of each user of ``batch`` (an :class:`negseq.data.sequences.EvalSequences` batch) by the steps above.

    Args:
        model: a :class:`negseq.models.recommender.SequentialRecommender` (eval mode for exact agreement).
        family: the model's family (:func:`model_input`).
        popularity: ``(N + 1,)`` the fallback's scores (liked training events per code); None: no fallback.
        allowed: ``(A,)`` sorted distinct codes, the only candidates; None: every item.
        blocked: ``(C,)`` codes never recommended.
        batch: with ``target``, the result holds each target's rank.
    """
    inputs = model_input(batch, family)  # (B, L)
    n_users = len(inputs)
    device = inputs.device
    seen = candidates_seen(batch, exclude_seen, blocked)  # (B, S)
    table, bias, codes = model.items.weight, model.item_bias(), None  # (N + 1, D), (N + 1,) or None
    if allowed is not None:  # rank the allowed rows only: seen codes become positions in them (0 = not a candidate anyway)
        codes = torch.cat([allowed.new_zeros(1), allowed.to(device)])  # (A + 1,) position -> code
        position = torch.zeros(model.num_items + 1, dtype=torch.long, device=device)
        position[codes] = torch.arange(len(codes), device=device)
        table, seen = table[codes], position[seen]
        bias = None if bias is None else bias[codes]
    width = min(k, len(table))
    scores = torch.full((n_users, width), float("-inf"), device=device)  # (B, k)
    items = torch.zeros(n_users, width, dtype=torch.long, device=device)  # (B, k)
    fallback = empty_input(inputs) if popularity is not None else torch.zeros(n_users, dtype=torch.bool, device=device)  # (B,)
    ranked = (~fallback).nonzero()[:, 0]  # (B_m,) users the model ranks
    if len(ranked):
        negatives = batch.get("negatives")
        negatives = None if negatives is None else negatives[ranked]
        demote = model.demotion(negatives)  # (B_m, R, D) or None
        users = model(inputs[ranked], negatives)  # (B_m, D)
        scores[ranked], items[ranked] = top_k(users, table, seen[ranked], width, block_items, demote, bias=bias)
    if fallback.any():
        counts = popularity.to(device)[codes if codes is not None else slice(None), None]  # (N + 1, 1): a one-dimensional "item table"
        ones = torch.ones(int(fallback.sum()), 1, device=device)  # (B_f, 1)
        scores[fallback], items[fallback] = top_k(ones, counts, seen[fallback], width, block_items)
    if codes is not None:
        items = codes[items]  # positions back to codes (position 0 is code 0: an empty slot)
    ranks = ranks_in(items, batch["target"]) if "target" in batch else None
    return Ranked(scores, items, fallback, ranks)


def score_items(model: torch.nn.Module, batch: dict[str, Tensor], items: Tensor, family: str, popularity: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
    """``(B, C)`` the exact scores :func:`rank` orders by of the codes ``items`` ``(B, C)`` (seen or not) and ``(B,)``
    the fallback flags: a user with an empty input gets the items' popularity instead, as :func:`rank` ranks them."""
    inputs = model_input(batch, family)
    negatives = batch.get("negatives")
    scores = exact_scores(model(inputs, negatives), model.items.weight, items, model.demotion(negatives), model.item_bias())  # (B, C)
    fallback = empty_input(inputs) if popularity is not None else torch.zeros(len(inputs), dtype=torch.bool, device=inputs.device)
    if fallback.any():
        scores[fallback] = popularity.to(scores)[items[fallback]]
    return scores, fallback


def rank_on_threads(model: torch.nn.Module, batch: dict[str, Tensor], k: int, family: str, block_items: int = 2048, precision: str = "fp32", **options) -> Ranked:
    """:func:`rank` of a large batch with the same result, faster: on a CPU, chunks of :data:`CPU_CHUNK_USERS` users on
    one thread each (torch's ops single-threaded meanwhile), the scores held at a time bounded as for the whole batch;
    ``precision="bf16"`` runs the encoder under bf16 autocast (its user vectors differ from fp32's in the last bits)."""
    n_users = len(batch["seen"])
    device = batch["seen"].device
    chunk, workers = (CPU_CHUNK_USERS, torch.get_num_threads()) if device.type == "cpu" else (max(n_users, 1), 1)
    budget = max(n_users, 1) * block_items // workers  # scores each worker may hold at a time
    slices = [slice(first, first + chunk) for first in range(0, n_users, chunk)] or [slice(0, 0)]

    def one(rows: slice) -> Ranked:  # inference mode and autocast are per thread
        with torch.inference_mode(), torch.autocast(device.type, torch.bfloat16, enabled=precision == "bf16"):
            part = {name: value[rows] for name, value in batch.items()}
            return rank(model, part, k, family, max(budget // max(len(part["seen"]), 1), 1), **options)

    with _one_thread_each(workers), ThreadPoolExecutor(workers) as pool:
        parts = list(pool.map(one, slices))
    return Ranked(*(torch.cat([getattr(part, name) for part in parts]) for name in ("scores", "items", "fallback")))


@contextmanager
def _one_thread_each(workers: int) -> Iterator[None]:
    """torch's ops single-threaded while ``workers`` > 1 threads each run their own chunk of users.

    Why: a chunk of 256 users is many small ops; splitting each op over the cores costs a
    synchronisation per op (and spinning threads when other processes hold the cores), while one
    chunk per core needs none.
    """
    threads = torch.get_num_threads()
    if workers > 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
