"""Ranking the catalogue for user vectors: block-wise scores, exact top-k, and each target's rank.

An item's score is the dot product computed in fp64 and rounded once to fp32 (:func:`exact_scores`):
fp32 matmuls of different shapes, kernels or devices differ in the last bits, and the top-k must
not. Scoring every item that way would be slow, so a fast pass (an fp32 or bf16 matmul) picks
``k + EXTRA_CANDIDATES`` candidates, which are re-scored exactly; a bound on the fast pass's error
(:func:`score_error`) certifies that no other item can enter the top-k, and a row without that
certificate (near-ties at the cut) is scored exactly in full (:func:`certified_top_keys`).

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
EXTRA_CANDIDATES = 32  # re-scored beyond k: enough to certify ~every row at bf16 (benchmarks/README.md "Serving")
MIN_ROWS = 64  # users a whole-row matmul needs to beat item blocks (fewer reread the item table per few users)


def order_keys(scores: Tensor, item_ids: Tensor) -> Tensor:
    """int64 keys whose descending order is score descending, then item id ascending: exact, on any device.

    ``torch.topk`` orders exactly tied scores as its kernel happens to (differently on CPU and
    CUDA); on these keys it cannot tie. The high 32 bits are the fp32 score's bits made monotone,
    the low 32 bits the complement of the item id.
    """
    bits = scores.float().contiguous().view(torch.int32).to(torch.int64)
    monotone = torch.where(bits < 0, bits ^ _ID_BITS, bits)  # negative floats: larger magnitude, smaller key
    return (monotone << 32) | (_ID_BITS - item_ids)


def decode_keys(keys: Tensor) -> tuple[Tensor, Tensor]:
    """Scores and item ids back from :func:`order_keys`."""
    monotone = keys >> 32
    bits = torch.where(monotone < 0, monotone ^ _ID_BITS, monotone).to(torch.int32)
    return bits.view(torch.float32), _ID_BITS - (keys & 0xFFFFFFFF)


def score_error(dim: int, precision: str) -> float:
    """``eps`` with ``|s_approx - s| <= eps * (|u| |e_j| + max_r |d_r| + max |b|)`` for every item j of :func:`score_block`.

    ``s`` is the real-valued score ``u . e_j - max(0, max_r d_r . e_j / |e_j|) + b_j``. With unit roundoff ``rho``
    (2**-8 for bf16, 2**-24 for fp32), a score goes through at most six roundings (the two inputs to
    bf16, the matmul's output, the demotion term, the subtraction and the bias's addition) and two fp32 accumulations over
    ``dim + 4`` terms (the dot products, the normalisation), each a relative error of at most
    ``gamma = n * 2**-24 / (1 - n * 2**-24)`` (Higham, Accuracy and Stability of Numerical Algorithms, 3.1) of
    ``sum_i |u_i e_ji| <= |u| |e_j|`` (Cauchy-Schwarz) or of ``|d_r|``; hence ``(1 + rho)**6 (1 + gamma)**2 - 1``.
    """
    rho = {"fp32": 2.0**-24, "bf16": 2.0**-8}[precision]
    gamma = (dim + 4) * 2.0**-24 / (1 - (dim + 4) * 2.0**-24)
    return (1 + rho) ** 6 * (1 + gamma) ** 2 - 1


def score_block(
    users: Tensor, items: Tensor, seen: Tensor, start: int, stop: int, demote: Tensor | None = None, precision: str = "fp32",
    bias: Tensor | None = None,
) -> Tensor:
    """``(B, stop - start)`` scores of items ``start..stop-1`` (fp32, or bf16 with ``precision="bf16"``; error bound:
    :func:`score_error`); padding and ``seen`` items are ``-inf``.

    Args:
        users: ``(B, D)`` user vectors.
        items: ``(N + 1, D)`` item table (row 0 is padding).
        seen: ``(B, S)`` item ids that may not be recommended (0 = none).
        demote: ``(B, R, D)`` ``lambda`` times the unit vectors of items each user disliked (zero rows: none); an item's
            score then drops by ``max(0, max_r demote_r . e / |e|)``, lambda times its highest cosine to any of them.
        bias: ``(N + 1,)`` added to every user's score of each item (the item-polarity prior), or None.
    """
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[precision]
    with torch.autocast(device_type=users.device.type, enabled=False):
        block = users.to(dtype) @ items[start:stop].to(dtype).T  # (B, C)
        if demote is not None:
            unit = torch.nn.functional.normalize(items[start:stop].float(), dim=1)  # (C, D)
            block -= (demote.float() @ unit.T).amax(dim=1).clamp(min=0).to(dtype)  # (B, R, C) -> (B, C)
        if bias is not None:
            block += bias[start:stop].to(dtype)
    local = seen - start  # (B, S)
    inside = (local >= 0) & (local < stop - start) & (seen > 0)
    rows = torch.arange(len(seen), device=seen.device)[:, None]  # (B, 1)
    block.view(-1).index_fill_(0, (rows * (stop - start) + local)[inside], float("-inf"))  # (B, C) contiguous
    if start == 0:
        block[:, 0] = float("-inf")
    return block


def exact_scores(users: Tensor, items: Tensor, ids: Tensor, demote: Tensor | None = None, bias: Tensor | None = None) -> Tensor:
    """``(B, C)`` scores of items ``ids`` ``(B, C)`` computed in fp64 and rounded once to fp32.

    So an item's score (and the order of near-ties) does not depend on which kernel, block shape or
    device computed it: fp32 matmuls of different shapes differ in the last bits.
    """
    with torch.autocast(device_type=users.device.type, enabled=False):
        vectors = items[ids].double()  # (B, C, D)
        scores = (vectors @ users.double()[:, :, None])[..., 0]  # (B, C)
        if demote is not None:
            unit = torch.nn.functional.normalize(vectors, dim=2)  # (B, C, D)
            scores -= (unit @ demote.double().transpose(1, 2)).amax(dim=2).clamp(min=0)  # (B, C, R) -> (B, C)
        if bias is not None:
            scores += bias.double()[ids]
    return scores.float()


def certified_top_keys(
    users: Tensor, items: Tensor, approx: Tensor, first_id: int, k: int, slack: Tensor, demote: Tensor | None = None,
    bias: Tensor | None = None,
) -> Tensor:
    """Order keys of the exact top-k of a block (:func:`exact_scores`, then smaller id) from its approximate scores.

    The ``k + EXTRA_CANDIDATES`` best approximate scores are re-scored exactly. An item outside them
    has an approximate score at most the last candidate's, so an exact one at most that plus ``slack``
    ``(B,)`` (the error bound, :func:`score_error`); when that bound (rounded to fp32) is below the
    exact k-th score, no such item can enter the top-k, not even by a tie. Rows without that
    certificate (near-ties at the cut, rare) are scored exactly over the whole block.

    Args:
        approx: ``(B, C)`` approximate scores of items ``first_id .. first_id + C - 1``, ``-inf`` for excluded ones.
    """
    k = min(k, approx.shape[1])
    approx_top, positions = approx.topk(min(k + EXTRA_CANDIDATES, approx.shape[1]), dim=1)  # (B, k + m)
    ids = positions + first_id
    excluded = approx_top == float("-inf")
    exact = exact_scores(users, items, ids, demote, bias).masked_fill(excluded, float("-inf"))  # (B, k + m)
    keys = order_keys(exact, ids).topk(k, dim=1).values  # (B, k), best first
    kth = decode_keys(keys[:, -1])[0]  # (B,)
    outside = (approx_top[:, -1].double() + slack).float()  # (B,) no item outside the candidates scores above it
    certified = excluded[:, -1] | (positions.shape[1] == approx.shape[1]) | (outside < kth)
    if not certified.all():
        rows = (~certified).nonzero()[:, 0]
        every = torch.arange(first_id, first_id + approx.shape[1], device=approx.device).expand(len(rows), -1)  # (R, C)
        rescored = exact_scores(users[rows], items, every, None if demote is None else demote[rows], bias)
        rescored = rescored.masked_fill(approx[rows] == float("-inf"), float("-inf"))  # (R, C)
        keys[rows] = order_keys(rescored, every).topk(k, dim=1).values
    return keys


def candidate_precision(device: torch.device) -> str:
    """``bf16`` where bf16 matmuls are native (CUDA; a CPU with AVX512-BF16 or AMX, as oneDNN reports), else ``fp32``: the
    precision of :func:`top_k`'s candidate pass, which changes its speed, never its result."""
    if device.type == "cuda":
        return "bf16"
    native = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return "bf16" if device.type == "cpu" and torch.backends.mkldnn.is_available() and native is not None and native() else "fp32"


def top_k(
    users: Tensor, items: Tensor, seen: Tensor, k: int, block_items: int = 2048, demote: Tensor | None = None, precision: str | None = None,
    bias: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Top-``k`` ``(scores, item ids)``, each ``(B, k)`` best first: the exact scores (:func:`exact_scores`, plus ``bias``
    ``(N + 1,)`` per item when given), ties by smaller id. ``precision`` is the candidate pass's (:func:`certified_top_keys`), ``fp32`` or ``bf16``: the same result either
    way; by default :func:`candidate_precision`, the faster one on the users' device.

    A batch never holds more than ``B * block_items`` scores: whole rows of the catalogue for as
    many users as fit (one matmul and one top-k a row), else every user over ``block_items`` items at
    a time, their top-k merged. Slots with no recommendable item (a catalogue smaller than ``k``
    plus the seen items) get id 0 and score ``-inf``.
    """
    rows = min(len(users), len(users) * block_items // len(items))
    rows, width = (rows, len(items)) if rows >= min(len(users), MIN_ROWS) else (len(users), block_items)
    precision = precision or candidate_precision(users.device)
    slack = score_error(users.shape[1], precision) * _score_scale(users, items, demote, bias) if len(users) else users.new_empty(0)  # (B,)
    parts = []
    for first in range(0, len(users), max(rows, 1)):
        chunk = slice(first, first + rows)
        chunk_demote = None if demote is None else demote[chunk]
        top_keys = seen.new_empty(len(users[chunk]), 0)
        for start in range(0, len(items), width):
            stop = min(start + width, len(items))
            approx = score_block(users[chunk], items, seen[chunk], start, stop, chunk_demote, precision, bias)  # (b, C)
            block_keys = certified_top_keys(users[chunk], items, approx, start, k, slack[chunk], chunk_demote, bias)  # (b, <= k)
            candidates = torch.cat([top_keys, block_keys], dim=1)  # (b, <= 2k)
            top_keys = candidates.topk(min(k, candidates.shape[1]), dim=1).values  # (b, <= k), best first
        parts.append(top_keys)
    scores, ids = decode_keys(torch.cat(parts) if parts else seen.new_empty(0, min(k, len(items))))
    return scores, torch.where(torch.isfinite(scores), ids, 0)


def nearest_items(items: Tensor, codes: Tensor, k: int, block_items: int = 2048) -> tuple[Tensor, Tensor]:
    """``(C, k)`` cosines and ids of the ``k`` rows of the item table ``items`` ``(N + 1, D)`` nearest to each of ``codes``
    ``(C,)`` by cosine, the item itself and padding left out, in :func:`top_k`'s order (exact, the smaller id on a tie)."""
    unit = torch.nn.functional.normalize(items.float(), dim=1)  # (N + 1, D); the padding row stays 0
    return top_k(unit[codes], unit, codes[:, None], min(k, len(items) - 1), block_items)


def _score_scale(users: Tensor, items: Tensor, demote: Tensor | None, bias: Tensor | None = None) -> Tensor:
    """``(B,)`` ``|u| * max_j |e_j| + max_r |d_r| + max_j |b_j|`` in fp64, from fp32 norms taken 2**-10 above (their rounding error is
    below ``(D / 2 + 2) * 2**-24``)."""
    with torch.autocast(device_type=users.device.type, enabled=False):
        scale = users.float().norm(dim=1).double() * float(items.float().norm(dim=1).max())  # (B,)
        if demote is not None:
            scale = scale + demote.float().norm(dim=2).amax(dim=1).double()
        if bias is not None:
            scale = scale + float(bias.float().abs().max())
    return scale * (1 + 2.0**-10)


def ranks_in(top_items: Tensor, targets: Tensor) -> Tensor:
    """``(B,)`` float 1-based position of each target in its row of ``top_items`` (B, k); ``inf`` when absent.

    Ranks are exact up to k and only say "beyond k" above it, which is all a metric cut at k
    needs; a seen, padding or unknown target is never in the top-k, so it counts as a miss.
    """
    found = (top_items == targets[:, None]) & (targets[:, None] > 0)  # (B, k)
    positions = torch.arange(1, top_items.shape[1] + 1, device=top_items.device, dtype=torch.float32)  # (k,)
    return torch.where(found, positions, torch.inf).amin(dim=1)
