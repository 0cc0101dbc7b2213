"""The whole-history family (``family='whole_history'``): SASRec, SASRec_c and SASRec with unlikelihood.

One encoder reads the user's mixed history, liked and disliked items alike, and predicts every next item; ``beta``
adds SASRec_c's InfoNCE, ``unlikelihood_weight`` pushes disliked next items away instead of predicting them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from negseq.models.families.base import Family, shift
from negseq.models.losses import contrastive_loss, next_item_loss
from negseq.models.recommender import SequentialRecommender


@dataclass(frozen=True)
class WholeHistory:
    """SASRec's next-item loss over the mixed history (disliked next items get ``unlikelihood_weight``
    ``-log(1 - p)`` instead when it is > 0), plus ``beta`` times SASRec_c's InfoNCE."""

    beta: float = 0.0
    temperature: float = 1.0
    cosine: bool = False
    unlikelihood_weight: float = 0.0

    def __call__(self, model: SequentialRecommender, batch: dict[str, Tensor], sampled: dict[str, Any]) -> dict[str, Tensor]:
        history, liked = batch["history"], batch["history_positive"]  # (B, L + 1) each
        sequence, labels = shift(history)
        hidden = model.encode(sequence)  # (B, L, D)
        terms = {"loss_next": next_item_loss(hidden, labels, model.items.weight, ~liked[:, 1:], self.unlikelihood_weight, **sampled)}
        if self.beta:
            terms["loss_contrast"] = self.beta * self.infonce(model, hidden, history, liked)
        return terms

    def infonce(self, model: SequentialRecommender, hidden: Tensor, history: Tensor, liked: Tensor) -> Tensor:
        """SASRec_c: at each liked input position, the next liked item later in the sequence against the disliked inputs."""
        length = history.shape[1]  # L + 1
        real = history > 0
        positions = torch.arange(length, device=history.device).expand_as(history)
        liked_at = torch.where(liked & real, positions, length)  # (B, L + 1), `length` = no liked item
        next_liked_from = liked_at.flip(1).cummin(1).values.flip(1)  # (B, L + 1): first liked position >= t
        next_liked = next_liked_from[:, 1:]  # (B, L): first liked position > t, for inputs t = 0..L-1
        has_next = next_liked < length
        key_items = history.gather(1, next_liked.clamp(max=length - 1))  # (B, L)
        inputs, input_liked = history[:, :-1], (liked & real)[:, :-1]
        disliked_inputs = torch.where(real[:, :-1] & ~input_liked, inputs, 0)  # (B, L)
        return contrastive_loss(
            hidden, model.items(key_items), model.items(disliked_inputs), input_liked & has_next, disliked_inputs > 0, self.temperature, self.cosine
        )


class WholeHistoryFamily(Family):
    name = "whole_history"
    reads = "history"
    objective = WholeHistory
    labels_both_signs = True

    def model_input(self, batch: Mapping[str, Tensor]) -> Tensor:
        return batch["history"]

    def label(self, model: Mapping[str, Any]) -> str:
        if float(model["beta"] or 0):
            return "SASRec_c"
        return "SASRec+unlikelihood" if float(model["unlikelihood_weight"] or 0) else "SASRec"
