"""SASRec_p + unlikelihood (``family='positives_unlikelihood'``): ranks as SASRec_p, trains away from the dislikes.

The encoder reads the user's liked items only, as SASRec_p, so it ranks (and serves) exactly like it; training adds the
"not to recommend" term of Wang et al. (RecSys 2023) on the sign-separated sequences: each disliked item pushes its
probability down, ``-w log(1 - p)``, under the state of the newest liked input before it. Dislikes thus shape the
item table and the encoder without being read at ranking time, the reverse of the polarity prior (read at ranking
time, not trained); a point for the HR_p/HR_n frontier. Also the worked example of a family added as one module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from negseq.errors import ConfigError
from negseq.models.families.base import Family, shift
from negseq.models.families.sign_separated import newest_before, state_at
from negseq.models.losses import next_item_loss
from negseq.models.recommender import SequentialRecommender


@dataclass(frozen=True)
class PushDislikedAway:
    """``CE_pos + w * mean over disliked items d of -log(1 - p(d | the newest liked state before d))``.

    A dislike that came before the user's first liked input has no state to push from and adds nothing; one after the
    newest liked input is pushed from the newest input's state (the encoder reads ``positives[:, :-1]``).
    """

    unlikelihood_weight: float = 1.0

    def __call__(self, model: SequentialRecommender, batch: dict[str, Tensor], sampled: dict[str, Any]) -> dict[str, Tensor]:
        inputs, labels = shift(batch["positives"])  # (B, L) each
        hidden = model.encode(inputs)  # (B, L, D)
        items = model.items.weight
        terms = {"loss_pos": next_item_loss(hidden, labels, items, **sampled)}
        disliked, disliked_order = batch["negatives"], batch["negatives_order"]  # (B, L + 1) each
        input_order = batch["positives_order"][:, :-1]  # (B, L): when each input came, 0 at padding
        newest = newest_before(input_order, disliked_order)  # (B, L + 1): the newest liked input before each dislike, -1: none
        pushed = (disliked > 0) & (newest >= 0)
        states = state_at(hidden, input_order, newest)  # (B, L + 1, D)
        terms["loss_unlikely"] = next_item_loss(states, torch.where(pushed, disliked, 0), items, pushed, self.unlikelihood_weight, **sampled)
        return terms


class PositivesUnlikelihoodFamily(Family):
    name = "positives_unlikelihood"
    reads = "positives"
    objective = PushDislikedAway
    labels_both_signs = True
    nothing_to_read = "liked item"

    def model_input(self, batch: Mapping[str, Tensor]) -> Tensor:
        return batch["positives"]

    def check(self, hp: Mapping[str, Any]) -> None:
        super().check(hp)
        if hp["beta"]:
            raise ConfigError(f"`beta` ({hp['beta']}) contrasts with a loss this family does not have: family='positives_unlikelihood' trains CE_pos and unlikelihood only")
        if not hp["unlikelihood_weight"]:
            raise ConfigError("family='positives_unlikelihood' needs `unlikelihood_weight` > 0 (without it, it is SASRec_p: family='sign_separated')")

    def label(self, model: Mapping[str, Any]) -> str:
        return "SASRec_p + unlikelihood"
