"""Does a dislike change what the user sees? Counterfactual responsiveness metrics (Wang et al., RecSys 2023).

For each test user, L is the model's top-k and i1 = L[0]. A counterfactual dislike of i1 is
appended as the user's newest event, exactly as a real one would enter the inputs
(:func:`with_dislike`: the disliked sequence and the mixed history get i1 at their end, the seen
items get i1), and the model ranks again: L'. The baseline B ranks with unchanged inputs and i1
only excluded as seen, so B - L' is what the dislike itself changed, not the removal of i1.

- :class:`ListChange`: mean over users of ``|(L \\ {i1}) \\ L'| / (k - 1)``, the share of the rest of
  the original top-k that leaves it. 0: the dislike moved nothing out; 1: the whole list was replaced.
- :class:`NeighbourSuppression`: ``sum_u (M_B(u) - M_L'(u)) / sum_u M_B(u)`` with ``M_X(u)`` the
  reciprocal-rank mass ``sum 1/rank_X(j)`` of the items ``j`` of list X that are among i1's m nearest
  neighbours in a model-independent item similarity (:mod:`negseq.data.neighbours`). 0: the neighbours
  keep their places (or a list reshuffled at random, which moves neighbours in and out alike); 1: every
  neighbour left the top-k; negative: the dislike pulled neighbours in.

Both have sum states only: exact under DDP, constant memory in the number of users.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric

__all__ = ["append_newest", "with_dislike", "list_change", "neighbour_mass", "ListChange", "NeighbourSuppression"]


def append_newest(sequences: Tensor, items: Tensor) -> Tensor:
    """``(B, L)`` left-padded sequences with ``items`` (B,) as the newest entry: every row shifts left by one."""
    return torch.cat([sequences[:, 1:], items[:, None].to(sequences)], dim=1)


def with_dislike(batch: dict[str, Tensor], items: Tensor) -> dict[str, Tensor]:
    """The batch after each user disliked ``items`` (B,) as their newest event: whatever a model reads sees it."""
    changed = dict(batch)
    changed["negatives"] = append_newest(batch["negatives"], items)
    changed["history"] = append_newest(batch["history"], items)
    if "history_positive" in batch:  # the sign of each history event (a signed model reads it): the new one is a dislike
        changed["history_positive"] = append_newest(batch["history_positive"], torch.zeros_like(items, dtype=torch.bool))
    changed["seen"] = torch.cat([batch["seen"], items[:, None].to(batch["seen"])], dim=1)
    return changed


def list_change(original: Tensor, counterfactual: Tensor) -> tuple[Tensor, Tensor]:
    """Per user, the share of ``original[:, 1:]`` (B, k) missing from ``counterfactual`` (B, k), and whether it is defined.

    Empty slots (id 0) do not count; a user whose original list holds fewer than two items has no share (``False``).
    """
    rest = original[:, 1:]  # (B, k - 1): the top-k without the disliked item
    present = rest > 0
    left = present & ~(rest[:, :, None] == counterfactual[:, None, :]).any(dim=2)  # (B, k - 1)
    counted = present.sum(dim=1)
    defined = (counted > 0) & (original[:, 0] > 0)
    return left.sum(dim=1) / counted.clamp(min=1), defined


def neighbour_mass(lists: Tensor, neighbours: Tensor) -> Tensor:
    """``(B,)`` sum of ``1 / rank`` over the items of ``lists`` (B, k) that are in the row's ``neighbours`` (B, m; 0 = none)."""
    is_neighbour = ((lists[:, :, None] == neighbours[:, None, :]) & (neighbours[:, None, :] > 0)).any(dim=2)  # (B, k)
    reciprocal = 1.0 / torch.arange(1, lists.shape[1] + 1, device=lists.device, dtype=torch.float32)  # (k,)
    return (is_neighbour.float() * reciprocal).sum(dim=1)


class ListChange(Metric):
    """``test/list_change@k``: mean share of the original top-k (the disliked first item excluded) that leaves it.

    Example:
        >>> metric = ListChange(k=3)
        >>> metric.update(torch.tensor([[5, 1, 2], [5, 1, 2]]), torch.tensor([[1, 2, 3], [3, 4, 1]]))
        >>> round(metric.compute().item(), 4)
        0.25
    """

    full_state_update = False
    higher_is_better = None  # responsiveness, not quality: a list may change for good or bad reasons

    def __init__(self, k: int = 10, **kwargs) -> None:
        super().__init__(**kwargs)
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"`k` must be a positive integer, got {k!r}")  # k = 1 leaves no list to change: NaN
        self.k = k
        self.add_state("change", default=torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("n_users", default=torch.tensor(0.0), dist_reduce_fx="sum")

    def update(self, original: Tensor, counterfactual: Tensor) -> None:
        """``original`` L and ``counterfactual`` L', item ids ``(B, >= k)`` best first; their first ``k`` columns count."""
        share, defined = list_change(original[:, : self.k], counterfactual[:, : self.k])
        self.change += share[defined].sum()
        self.n_users += defined.sum()

    def compute(self) -> Tensor:
        return torch.where(self.n_users > 0, self.change / self.n_users.clamp(min=1), torch.nan)


class NeighbourSuppression(Metric):
    """``test/neighbour_suppression@k``: the share of the baseline's reciprocal-rank mass on the disliked item's
    neighbours that the counterfactual list no longer has (NaN when no baseline list holds a neighbour).

    Example:
        >>> metric = NeighbourSuppression(k=3)
        >>> metric.update(torch.tensor([[7, 8, 9]]), torch.tensor([[9, 1, 2]]), torch.tensor([[7, 9]]))
        >>> round(metric.compute().item(), 4)  # (1 + 1/3 - 1) / (1 + 1/3)
        0.75
    """

    full_state_update = False
    higher_is_better = None

    def __init__(self, k: int = 10, **kwargs) -> None:
        super().__init__(**kwargs)
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"`k` must be a positive integer, got {k!r}")
        self.k = k
        self.add_state("baseline_mass", default=torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("counterfactual_mass", default=torch.tensor(0.0), dist_reduce_fx="sum")

    def update(self, baseline: Tensor, counterfactual: Tensor, neighbours: Tensor) -> None:
        """``baseline`` B and ``counterfactual`` L' item ids ``(B, >= k)``; ``neighbours`` (B, m) of each user's disliked item."""
        self.baseline_mass += neighbour_mass(baseline[:, : self.k], neighbours).sum()
        self.counterfactual_mass += neighbour_mass(counterfactual[:, : self.k], neighbours).sum()

    def compute(self) -> Tensor:
        lost = self.baseline_mass - self.counterfactual_mass
        return torch.where(self.baseline_mass > 0, lost / self.baseline_mass.clamp(min=1e-12), torch.nan)
