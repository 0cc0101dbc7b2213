"""Ranking metrics split by the sign of the held-out target.

A user whose held-out item was liked feeds the true-positive metrics (HR_p, NDCG_p, MRR_p);
a user whose held-out item was disliked feeds the negative-promotion metrics (HR_n, NDCG_n,
MRR_n), which measure how readily the model recommends what the user then rejected.

Each metric is a pure function of the target's rank plus a thin torchmetrics class whose
states are sums (or a max-reduced bitmap for coverage): memory does not grow with the number
of users and the values are exact under DDP without gathering predictions. States are float32
(MPS has no float64; a float32 count is exact up to 2**24 users). A group with no user has no
mean: its metric and the Delta are NaN, never 0.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric

__all__ = [
    "hit_gain",
    "ndcg_gain",
    "mrr_gain",
    "GAINS",
    "HitRate",
    "NDCG",
    "MRR",
    "Coverage",
]


def hit_gain(ranks: Tensor, k: int) -> Tensor:
    """1 when the target is in the top ``k``, else 0."""
    return (ranks <= k).to(torch.float32)


def ndcg_gain(ranks: Tensor, k: int) -> Tensor:
    """``1 / log2(rank + 1)`` inside the top ``k`` (one relevant item, so IDCG = 1), else 0."""
    return torch.where(ranks <= k, 1.0 / torch.log2(ranks.clamp(max=k) + 1.0), torch.zeros_like(ranks))


def mrr_gain(ranks: Tensor, k: int) -> Tensor:
    """``1 / rank`` inside the top ``k``, else 0."""
    return torch.where(ranks <= k, 1.0 / ranks.clamp(max=k), torch.zeros_like(ranks))


GAINS = {"hr": hit_gain, "ndcg": ndcg_gain, "mrr": mrr_gain}  # by the names of layout.SIGNED_METRICS: paired statistics read them


class _SignedRankMetric(Metric):
    """Mean gain over users with a positive target, over users with a negative one, and their gap."""

    full_state_update = False
    higher_is_better = None  # higher is better for the positive part, lower for the negative part

    def __init__(self, k: int = 10, **kwargs) -> None:
        super().__init__(**kwargs)
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"`k` must be a positive integer, got {k!r}")
        self.k = k
        for name in ("gain_pos", "gain_neg", "n_pos", "n_neg"):
            self.add_state(name, default=torch.tensor(0.0), dist_reduce_fx="sum")

    @staticmethod
    def gain(ranks: Tensor, k: int) -> Tensor:
        raise NotImplementedError

    def update(self, ranks: Tensor, positive: Tensor) -> None:
        """Add users: ``ranks`` from :func:`negseq.models.ranking.ranks_in`, ``positive`` True where the target was liked."""
        if ranks.shape != positive.shape:
            raise ValueError(f"`ranks` and `positive` must have the same shape, got {tuple(ranks.shape)} and {tuple(positive.shape)}")
        gains = self.gain(ranks, self.k)
        positive = positive.bool()
        self.gain_pos += gains[positive].sum()
        self.gain_neg += gains[~positive].sum()
        self.n_pos += positive.sum()
        self.n_neg += (~positive).sum()

    def compute(self) -> dict[str, Tensor]:
        """``pos`` and ``neg`` means (NaN for a group with no user) and ``delta = pos - neg`` (NaN if either is)."""
        pos = torch.where(self.n_pos > 0, self.gain_pos / self.n_pos.clamp(min=1), torch.nan)
        neg = torch.where(self.n_neg > 0, self.gain_neg / self.n_neg.clamp(min=1), torch.nan)
        return {"pos": pos, "neg": neg, "delta": pos - neg}


class HitRate(_SignedRankMetric):
    """HR@k on positive targets (HR_p), on negative targets (HR_n), and Delta_HR = HR_p - HR_n.

    Example:
        >>> metric = HitRate(k=2)
        >>> metric.update(torch.tensor([1.0, 3.0, 2.0]), torch.tensor([True, True, False]))
        >>> {name: round(value.item(), 4) for name, value in metric.compute().items()}
        {'pos': 0.5, 'neg': 1.0, 'delta': -0.5}
    """

    gain = staticmethod(hit_gain)


class NDCG(_SignedRankMetric):
    """NDCG@k with one relevant item per user, split by target sign, and Delta_NDCG."""

    gain = staticmethod(ndcg_gain)


class MRR(_SignedRankMetric):
    """MRR@k (reciprocal rank, 0 beyond k), split by target sign, and their difference."""

    gain = staticmethod(mrr_gain)


class Coverage(Metric):
    """Distinct items recommended in anyone's top-k, divided by the number of items in train.

    The state is a bitmap over the catalogue reduced with ``max``: exact under DDP and
    independent of the number of users.
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, num_items: int, num_train_items: int, **kwargs) -> None:
        super().__init__(**kwargs)
        if num_items < 1:
            raise ValueError(f"`num_items` must be positive, got {num_items!r}")
        if num_train_items < 1:
            raise ValueError(f"`num_train_items` must be positive, got {num_train_items!r}")
        self.num_train_items = num_train_items
        # index 0 is padding and never counts
        self.add_state("recommended", default=torch.zeros(num_items + 1, dtype=torch.bool), dist_reduce_fx="max")

    def update(self, top_items: Tensor) -> None:
        """Mark the items of a ``(B, k)`` top-k matrix (item ids, 0 = no item) as recommended."""
        self.recommended[top_items.flatten()] = True

    def compute(self) -> Tensor:
        return self.recommended[1:].sum().float() / self.num_train_items
