"""The definition of a target's rank, by sorting the whole row of scores: the oracle of the ranking tests (negseq ranks
block by block and stops counting past k; this sorts everything)."""

from __future__ import annotations

import numpy as np
import torch


def sorted_ranks(scores, targets) -> torch.Tensor:
    """``(B,)`` float 1-based place of each target in its row of ``scores`` ``(B, N)`` ordered by score descending then
    id ascending, ``-inf`` entries left out; inf for a target outside ``[0, N)`` or scored ``-inf``."""
    scores, targets = np.asarray(scores, dtype=np.float64), np.asarray(targets)
    n_items = scores.shape[1]
    out = np.full(len(targets), np.inf)
    for row, (s, t) in enumerate(zip(scores, targets)):
        if t < 0 or t >= n_items or not np.isfinite(s[t]):
            continue
        order = np.lexsort((np.arange(n_items), -s))  # the last key is the first: -score, then id
        order = order[np.isfinite(s[order])]
        out[row] = 1 + int(np.nonzero(order == t)[0][0])
    return torch.from_numpy(out).float()


def served_scores(model, positives: torch.Tensor, seen: torch.Tensor, negatives: torch.Tensor | None = None) -> torch.Tensor:
    """``(B, N + 1)`` the exact scores serving ranks a sign-separated model's users by (:func:`negseq.models.inference.score_items`
    over the whole catalogue), ``-inf`` at padding and at the ``seen`` codes (0: none): the full matrix the block-wise
    ranking must agree with."""
    from negseq.models import inference

    batch = {"positives": positives, **({} if negatives is None else {"negatives": negatives})}
    codes = torch.arange(model.num_items + 1).expand(len(positives), -1)
    scores, _ = inference.score_items(model, batch, codes, "positives")
    scores[:, 0] = float("-inf")
    return scores.scatter(1, seen, float("-inf"))
