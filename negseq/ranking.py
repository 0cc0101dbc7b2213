"""Exact top-k order by (score descending, item id ascending), block by block, on any device.

``torch.topk`` orders exactly tied scores as its kernel happens to (differently on CPU and
CUDA). Packing a score and an item id into one int64 key makes the order total, so the
recommendations, like the ranks (:func:`negseq.metrics.count_ahead`), do not depend on the device.
"""

from __future__ import annotations

import torch
from torch import Tensor

_ID_BITS = 0x7FFFFFFF


def order_keys(scores: Tensor, item_ids: Tensor) -> Tensor:
    """int64 keys whose descending order is score descending, then item id ascending: exact, on any device.

    ``torch.topk`` orders exactly tied scores as its kernel happens to (differently on CPU and
    CUDA); on these keys it cannot tie. The high 32 bits are the fp32 score's bits made monotone,
    the low 32 bits the complement of the item id.
    """
    bits = scores.float().contiguous().view(torch.int32).to(torch.int64)
    monotone = torch.where(bits < 0, bits ^ _ID_BITS, bits)  # negative floats: larger magnitude, smaller key
    return (monotone << 32) | (_ID_BITS - item_ids)


def block_top_keys(block: Tensor, first_id: int, k: int) -> Tensor:
    """Order keys of a block's top-k items by (score, then smaller id), exact even when scores tie.

    A float top-k is cheap; only rows where it had to choose among items tied with its k-th
    score (rare) are redone on keys of the whole row.
    """
    k = min(k, block.shape[1])
    item_ids = torch.arange(first_id, first_id + block.shape[1], device=block.device)
    scores, positions = block.topk(min(k + 1, block.shape[1]), dim=1)  # (B, k + 1): one more, to see a tie at the k-th
    keys = order_keys(scores[:, :k], item_ids[positions[:, :k]])
    ambiguous = scores[:, k] == scores[:, k - 1] if scores.shape[1] > k else torch.zeros(len(block), dtype=torch.bool, device=block.device)
    if ambiguous.any():  # the item after the k-th ties with it: more tied items than slots
        keys[ambiguous] = order_keys(block[ambiguous], item_ids).topk(k, dim=1).values
    return keys


def decode_keys(keys: Tensor) -> tuple[Tensor, Tensor]:
    """Scores and item ids back from :func:`order_keys`."""
    monotone = keys >> 32
    bits = torch.where(monotone < 0, monotone ^ _ID_BITS, monotone).to(torch.int32)
    return bits.view(torch.float32), _ID_BITS - (keys & 0xFFFFFFFF)
