"""Ranking the catalogue for user vectors: block-wise scores, exact top-k, and each target's rank.

``torch.topk`` orders exactly tied scores as its kernel happens to (differently on CPU and
CUDA). Packing a score and an item id into one int64 key makes the order total (score
descending, item id ascending), so the recommendations and the ranks do not depend on the device.
A target's rank is its position in those same recommendations, so a target in the exported
top-k always counts at the rank it is shown at.
"""

from __future__ import annotations

import torch
from torch import Tensor

_ID_BITS = 0x7FFFFFFF
TIE_TOLERANCE = 1e-5


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


def count_ahead(scores: Tensor, target_scores: Tensor, targets: Tensor, first_id: int = 0) -> Tensor:
    """Items of a block of the catalogue ranked before each row's target: a higher score, or a tied score and a smaller id.

    Scores within ``TIE_TOLERANCE`` (relative, at least absolute) of the target's are ties: the
    same dot product computed by two kernels (a block matmul, a per-row dot) or two devices can
    differ in the last bits, and the rank must not depend on that.

    Args:
        scores: ``(B, C)`` scores of items ``first_id .. first_id + C - 1``.
        target_scores: ``(B,)`` score of each row's target.
        targets: ``(B,)`` target item ids; the target itself is never counted.
    """
    item_ids = torch.arange(first_id, first_id + scores.shape[1], device=scores.device)[None, :]  # (1, C)
    target_scores, targets = target_scores[:, None], targets[:, None]  # (B, 1)
    tolerance = TIE_TOLERANCE * target_scores.abs().clamp(min=1.0)  # (B, 1)
    # ahead: a score above the tie band, or, for a smaller id, at or above its bottom (the largest float below it, so ">"
    # means ">="). The target itself (its id is not smaller) is never counted. One comparison against a per-item bar
    # and an int32 count: this pass is memory-bound, and count_nonzero would widen the mask to int64 first.
    above_band = target_scores + tolerance
    from_band = torch.nextafter(target_scores - tolerance, torch.tensor(float("-inf"), device=scores.device))
    bar = torch.where(item_ids < targets, from_band, above_band)  # (B, C)
    return (scores > bar).sum(dim=1, dtype=torch.int32).long()


def score_block(users: Tensor, items: Tensor, seen: Tensor, start: int, stop: int, demote: Tensor | None = None) -> Tensor:
    """``(B, stop - start)`` fp32 scores of items ``start..stop-1``; padding and ``seen`` items are ``-inf``.

    Args:
        users: ``(B, D)`` user vectors.
        items: ``(N + 1, D)`` item table (row 0 is padding).
        seen: ``(B, S)`` item ids that may not be recommended (0 = none).
        demote: ``(B, R, D)`` ``lambda`` times the unit vectors of items each user disliked (zero rows: none); an item's
            score then drops by ``max(0, max_r demote_r . e / |e|)``, lambda times its highest cosine to any of them.
    """
    with torch.autocast(device_type=users.device.type, enabled=False):
        # fp32 so that bf16 rounding does not create ties among thousands of items
        block = users.float() @ items[start:stop].float().T  # (B, C)
        if demote is not None:
            unit = torch.nn.functional.normalize(items[start:stop].float(), dim=1)  # (C, D)
            block -= (demote.float() @ unit.T).amax(dim=1).clamp(min=0)  # (B, R, C) -> (B, C)
    local = seen - start  # (B, S)
    inside = (local >= 0) & (local < stop - start) & (seen > 0)
    rows = torch.arange(len(seen), device=seen.device)[:, None].expand_as(seen)
    block[rows[inside], local[inside]] = float("-inf")
    if start == 0:
        block[:, 0] = float("-inf")
    return block


def top_k(users: Tensor, items: Tensor, seen: Tensor, k: int, block_items: int = 2048, demote: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Top-``k`` ``(scores, item ids)``, each ``(B, k)`` best first, scoring ``block_items`` items at a time
    (``demote``: see :func:`score_block`).

    A batch never holds more than ``B * block_items`` scores; slots with no recommendable item
    (a catalogue smaller than ``k`` plus the seen items) get id 0 and score ``-inf``.
    """
    top_keys = seen.new_empty(len(users), 0)
    for start in range(0, len(items), block_items):
        stop = min(start + block_items, len(items))
        block_keys = block_top_keys(score_block(users, items, seen, start, stop, demote), start, k)  # (B, <= k)
        candidates = torch.cat([top_keys, block_keys], dim=1)  # (B, <= 2k)
        top_keys = candidates.topk(min(k, candidates.shape[1]), dim=1).values  # (B, <= k), best first
    scores, ids = decode_keys(top_keys)
    return scores, torch.where(torch.isfinite(scores), ids, 0)


def ranks_in(top_items: Tensor, targets: Tensor) -> Tensor:
    """``(B,)`` float 1-based position of each target in its row of ``top_items`` (B, k); ``inf`` when absent.

    Ranks are exact up to k and only say "beyond k" above it, which is all a metric cut at k
    needs; a seen, padding or unknown target is never in the top-k, so it counts as a miss.
    """
    found = (top_items == targets[:, None]) & (targets[:, None] > 0)  # (B, k)
    positions = torch.arange(1, top_items.shape[1] + 1, device=top_items.device, dtype=torch.float32)  # (k,)
    return torch.where(found, positions, torch.inf).amin(dim=1)


def rank_and_recommend(
    users: Tensor, items: Tensor, seen: Tensor, targets: Tensor, k: int, block_items: int = 2048, demote: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Each target's rank (:func:`ranks_in`) and the top-k ``(scores, item ids)`` of user vectors ``(B, D)`` over ``items``."""
    scores, top_items = top_k(users, items, seen, k, block_items, demote)
    return ranks_in(top_items, targets), scores, top_items
