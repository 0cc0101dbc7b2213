"""Loss terms of PNFRec and its baselines, as pure functions of hidden states and item embeddings.

Every term is a mean over the positions that carry a label and is exactly 0 (never NaN) when a
batch has no such position, so a batch of users without negatives trains on CE_pos alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _mean(values: Tensor, anchor: Tensor) -> Tensor:
    """Mean of ``values``; an empty selection gives 0 still attached to the graph through ``anchor``."""
    return values.mean() if values.numel() else anchor.sum() * 0.0


def label_log_probs(hidden: Tensor, labels: Tensor, items: Tensor) -> Tensor:
    """Full-softmax log-probability of each label.

    Args:
        hidden: ``(P, D)`` hidden states at labelled positions only.
        labels: ``(P,)`` item ids in 1..N.
        items: ``(N + 1, D)`` item table; row 0 (padding) is never a candidate.
    """
    logits = hidden @ items[1:].T  # (P, N): logits only where a label exists
    return -F.cross_entropy(logits.float(), labels - 1, reduction="none")


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
    """
    labelled = labels > 0  # (B, T)
    if candidates is None:
        log_probs = label_log_probs(hidden[labelled], labels[labelled], items)  # (P,)
    else:
        log_probs = sampled_label_log_probs(hidden[labelled], labels[labelled], items, candidates, log_q)  # (P,)
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
        negative_valid: ``(B, M)`` bool, which negative keys exist (False at padding).
    """
    if cosine:
        queries, positive_keys, negative_keys = (F.normalize(x.float(), dim=-1) for x in (queries, positive_keys, negative_keys))
    positive = (queries * positive_keys).sum(-1).float() / temperature  # (B, T)
    negative = torch.einsum("btd,bmd->btm", queries, negative_keys).float() / temperature  # (B, T, M)
    negative = negative.masked_fill(~negative_valid[:, None, :], float("-inf"))
    logits = torch.cat([positive[..., None], negative], dim=-1)  # (B, T, 1 + M)
    per_query = torch.logsumexp(logits, dim=-1) - positive  # (B, T)
    return _mean(per_query[query_valid], queries)
