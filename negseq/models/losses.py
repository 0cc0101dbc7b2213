"""Loss terms of PNFRec and its baselines, as pure functions of hidden states and item embeddings.

Every term is a mean over the positions that carry a label and is exactly 0 (never NaN) when a
batch has no such position, so a batch of users without negatives trains on CE_pos alone.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

_EXP_SAFE = 80.0  # exp(x) and sums of such terms stay finite and normal in fp32 for |x| + log(terms) <= 80 (limit ~88.7)


def _mean(values: Tensor, anchor: Tensor) -> Tensor:
    """Mean of ``values``; an empty selection gives 0 still attached to the graph through ``anchor``."""
    return values.mean() if values.numel() else anchor.sum() * 0.0


def label_log_probs(hidden: Tensor, labels: Tensor, items: Tensor, chunk_items: int = 0) -> Tensor:
    """Full-softmax log-probability of each label (:class:`LabelLogProbs`).

    Args:
        hidden: ``(P, D)`` hidden states at labelled positions only.
        labels: ``(P,)`` item ids in 1..N.
        items: ``(N + 1, D)`` item table; row 0 (padding) is never a candidate.
        chunk_items: if > 0, never hold more than ``P x chunk_items`` logits: the same values,
            less memory, one more matmul. 0 holds the ``(P, N)`` logits once.
    """
    catalogue = items[1:]
    return LabelLogProbs.apply(hidden, catalogue, labels - 1, chunk_items or len(catalogue), _matmul_dtype(hidden.device.type))


def _matmul_dtype(device_type: str) -> torch.dtype:
    """bf16 under bf16 autocast, as a plain ``hidden @ items.T`` would be; else fp32.

    Only bf16 (fp32's exponent range): under fp16, ``exp`` of the kept logits could overflow.
    """
    if torch.is_autocast_enabled(device_type) and torch.get_autocast_dtype(device_type) == torch.bfloat16:
        return torch.bfloat16
    return torch.float32


def _bucket(rows: int) -> int:
    """``rows`` rounded up to a multiple of 1/16 of the power of two below it: 16 sizes an octave, <= 6.25 % more."""
    step = 1 << max(rows.bit_length() - 5, 0)
    return -(-rows // step) * step


def _pad_rows(tensor: Tensor, rows: int) -> Tensor:
    return tensor if len(tensor) == rows else F.pad(tensor, (0, 0, 0, rows - len(tensor)))


class LabelLogProbs(torch.autograd.Function):
    """``log softmax(hidden @ items.T)[label]``, fused, over the catalogue in chunks.

    The backward pass uses ``d log p_y / d logit_j = [j = y] - softmax_j`` directly. With one
    chunk the forward pass turns the logits in place into ``exp(logit - shift)`` (the row max,
    or 0 when a bound on the logits shows none is needed) and keeps them: the softmax up to its
    row sums. Unlike
    ``cross_entropy`` this writes no ``(P, N)`` log-softmax output, no zero-filled ``(P, N)``
    gradient and no second ``(P, N)`` tensor (this matters on memory-bound CPUs); the backward
    pass applies the per-row factors to the ``(P, D)`` operands of its matmuls, so it makes no
    pass over the ``(P, N)`` tensor either. With several
    chunks the forward pass keeps a running logsumexp and the backward pass recomputes each
    chunk's logits: memory ``P x chunk`` instead of ``P x N``, at the price of one more matmul.

    ``dtype`` is that of the three ``(P, N)`` matmuls and of the kept ``exp`` values: fp32, or
    bf16 under bf16 autocast (as autocast would run ``hidden @ items.T``; half the bytes, and
    CPUs with bf16 units run these matmuls several times faster). Row sums, logsumexp, the
    label's logit and the gradients' accumulation stay fp32, as ``cross_entropy`` under autocast.
    In bf16 the positions are padded with zero rows to :func:`_bucket` sizes: oneDNN compiles a
    bf16 matmul for every new shape (~20 ms on a CPU, more than the matmul), and the number of
    labelled positions changes with every batch.
    """

    @staticmethod
    def forward(ctx, hidden: Tensor, items: Tensor, labels: Tensor, chunk: int, dtype: torch.dtype) -> Tensor:
        with torch.autocast(device_type=hidden.device.type, enabled=False):
            rows = len(hidden)
            hidden32, items32 = hidden.float(), items.float()
            ctx.padded = rows if dtype == torch.float32 else _bucket(rows)
            hidden_mm, items_mm = _pad_rows(hidden.to(dtype), ctx.padded), items.to(dtype)
            ctx.chunk, ctx.dtype, ctx.unnormalised = chunk, dtype, None
            if chunk >= len(items):
                logits = hidden_mm @ items_mm.T  # (P, N), P padded
                # |logit| <= |h| max|e| (Cauchy-Schwarz): when that keeps exp and its row sums inside fp32's (and bf16's)
                # normal range, the row max, two passes over (P, N), need not be subtracted (trained PNFRec: bound ~7)
                bound = hidden32.norm(dim=1).max() * items32.norm(dim=1).max() + math.log(len(items)) if rows else 0.0
                if bound > _EXP_SAFE:
                    top = logits.amax(dim=1, keepdim=True)  # (P, 1)
                    logits.sub_(top)
                    top = top[:rows, 0].float()
                else:
                    top = hidden32.new_zeros(rows)
                unnormalised = logits.exp_()  # (P, N) in place: softmax x row sum
                sums = unnormalised[:rows].sum(dim=1).float()  # (P,); bf16 sums accumulate in fp32 and round once (sum(dtype=) is ~10x slower)
                logsumexp = top + sums.log()
                ctx.unnormalised, ctx.row_sums = unnormalised, sums
            else:
                logsumexp = hidden32.new_full((rows,), float("-inf"))
                for start in range(0, len(items), chunk):
                    chunk_logits = (hidden_mm @ items_mm[start : start + chunk].T)[:rows].float()
                    logsumexp = torch.logaddexp(logsumexp, chunk_logits.logsumexp(dim=1))
            ctx.save_for_backward(hidden, items, labels, logsumexp)
            label_logits = (hidden_mm[:rows].float() * items_mm[labels].float()).sum(-1)  # the matmul's own inputs
            return label_logits - logsumexp

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        hidden, items, labels, logsumexp = ctx.saved_tensors
        with torch.autocast(device_type=hidden.device.type, enabled=False):
            rows, padded, dtype = len(hidden), ctx.padded, ctx.dtype
            hidden32, items32, items_mm = hidden.float(), items.float(), items.to(dtype)
            grad_hidden = (grad_output[:, None] * items32[labels]).clone()  # the label's own logit
            grad_items = torch.zeros_like(items32).index_add_(0, labels, grad_output[:, None] * hidden32)
            # d/d logits = -softmax x grad: the per-row factor is applied to the (P, D) operands, never to the (P, N) softmax
            row_factor = (grad_output if ctx.unnormalised is None else grad_output / ctx.row_sums)[:, None]  # (P, 1)
            scaled_hidden = _pad_rows((hidden32 * row_factor).to(dtype), padded)  # padding rows: 0, no gradient
            if ctx.unnormalised is None:  # the chunks' logits are recomputed from these
                hidden_mm, shift = _pad_rows(hidden.to(dtype), padded), _pad_rows(logsumexp[:, None], padded)
            for start in range(0, len(items), ctx.chunk):
                chunk = items_mm[start : start + ctx.chunk]  # (C, D)
                if ctx.unnormalised is not None:  # exp(logit - shift) = softmax x row sum
                    softmax = ctx.unnormalised
                else:
                    softmax = (hidden_mm @ chunk.T).float().sub_(shift).exp_().to(dtype)  # (P, C)
                grad_hidden -= (softmax @ chunk)[:rows].float() * row_factor
                grad_items[start : start + ctx.chunk] -= (softmax.T @ scaled_hidden).float()
        return grad_hidden.to(hidden.dtype), grad_items.to(items.dtype), None, None, None


def sampled_label_log_probs(hidden: Tensor, labels: Tensor, items: Tensor, candidates: Tensor, log_q: Tensor | None = None) -> Tensor:
    """Log-probability of each label in a softmax over the label and ``S`` sampled candidate items.

    The candidates are shared by all positions; one equal to a position's own label is left
    out there (an accidental hit). With ``log_q`` (log sampling probability of every item id),
    each logit is corrected by ``- log Q(item)`` so that popularity sampling still estimates the
    full softmax (Bengio & Senecal 2008; Yi et al. 2019); uniform sampling needs no correction.

    Args:
        hidden: ``(P, D)`` hidden states at labelled positions.
        labels: ``(P,)`` item ids in 1..N.
        items: ``(N + 1, D)`` item table.
        candidates: ``(S,)`` sampled item ids in 1..N.
        log_q: ``(N + 1,)`` log sampling probabilities, or None for uniform sampling.
    """
    positive = (hidden * items[labels]).sum(-1).float()  # (P,)
    sampled = (hidden @ items[candidates].T).float()  # (P, S)
    if log_q is not None:
        positive = positive - log_q[labels]
        sampled = sampled - log_q[candidates][None, :]
    sampled = sampled.masked_fill(candidates[None, :] == labels[:, None], float("-inf"))
    return positive - torch.logsumexp(torch.cat([positive[:, None], sampled], dim=1), dim=1)


def next_item_loss(
    hidden: Tensor,
    labels: Tensor,
    items: Tensor,
    disliked: Tensor | None = None,
    unlikelihood_weight: float = 0.0,
    candidates: Tensor | None = None,
    log_q: Tensor | None = None,
    chunk_items: int = 0,
    extra_log_mass: Tensor | None = None,
) -> Tensor:
    """Cross-entropy of the next item at every position with a label (label id > 0).

    With ``disliked`` (bool, same shape as ``labels``) and ``unlikelihood_weight > 0``, positions
    whose next item was disliked instead contribute ``-w * log(1 - p(item))``: the model is
    pushed away from what the user rejected rather than towards it (unlikelihood training).

    Args:
        hidden: ``(B, T, D)`` encoder output.
        labels: ``(B, T)`` next-item ids, 0 where there is no label.
        items: ``(N + 1, D)`` item table.
        candidates: sampled item ids: a sampled softmax (:func:`sampled_label_log_probs`) instead of the full one.
        log_q: with ``candidates``, log sampling probabilities for the logQ correction.
        chunk_items: full softmax in catalogue chunks of this size (see :func:`label_log_probs`).
        extra_log_mass: ``(B, T)`` log of mass added to each position's softmax denominator
            (``-inf``: none), e.g. extra copies of the user's disliked items as hard negatives.
    """
    labelled = labels > 0  # (B, T)
    if candidates is None:
        log_probs = label_log_probs(hidden[labelled], labels[labelled], items, chunk_items)  # (P,)
    else:
        log_probs = sampled_label_log_probs(hidden[labelled], labels[labelled], items, candidates, log_q)  # (P,)
    if extra_log_mass is not None:
        label_logits = (hidden[labelled] * items[labels[labelled]]).sum(-1).float()  # log p = z_y - log Z, so log Z = z_y - log p
        log_probs = label_logits - torch.logaddexp(label_logits - log_probs, extra_log_mass[labelled].float())
    if disliked is None or unlikelihood_weight == 0.0:
        return _mean(-log_probs, hidden)
    away = disliked[labelled]
    # log(1 - p) with p = exp(log p), clamped so that p -> 1 gives a large finite penalty
    unlikelihood = -torch.log1p(-log_probs.exp().clamp(max=1.0 - 1e-6))
    return _mean(torch.where(away, unlikelihood_weight * unlikelihood, -log_probs), hidden)


def contrastive_loss(
    queries: Tensor,
    positive_keys: Tensor,
    negative_keys: Tensor,
    query_valid: Tensor,
    negative_valid: Tensor,
    temperature: float = 1.0,
    cosine: bool = False,
) -> Tensor:
    """``-log(exp(s+) / (exp(s+) + sum_m exp(s_m)))`` per valid query, averaged over valid queries.

    With ``cosine=False, temperature=1`` this is PNFRec's contrast of the next liked item
    against all of the user's disliked items; with ``cosine=True, temperature=0.1`` it is
    SASRec_c's InfoNCE. Computed with logsumexp, so it cannot overflow; a user with no valid
    negative gives 0 for each of their queries.

    Args:
        queries: ``(B, T, D)`` hidden states.
        positive_keys: ``(B, T, D)`` embedding of each query's positive item.
        negative_keys: ``(B, M, D)`` embeddings of each user's negative items.
        query_valid: ``(B, T)`` bool, which queries count.
        negative_valid: ``(B, M)`` bool, which negative keys exist (False at padding), or
            ``(B, T, M)``: which negative keys count for each query.
    """
    if cosine:
        queries, positive_keys, negative_keys = (F.normalize(x.float(), dim=-1) for x in (queries, positive_keys, negative_keys))
    positive = (queries * positive_keys).sum(-1).float() / temperature  # (B, T)
    negative = torch.einsum("btd,bmd->btm", queries, negative_keys).float() / temperature  # (B, T, M)
    if negative_valid.dim() == 2:
        negative_valid = negative_valid[:, None, :]
    negative = negative.masked_fill(~negative_valid, float("-inf"))
    logits = torch.cat([positive[..., None], negative], dim=-1)  # (B, T, 1 + M)
    per_query = torch.logsumexp(logits, dim=-1) - positive  # (B, T)
    return _mean(per_query[query_valid], queries)
