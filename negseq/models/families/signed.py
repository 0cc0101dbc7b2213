"""The signed family (``family='signed'``): one encoder reads the mixed history with each event's sign.

It predicts the next *liked* item, and may push disliked next items away (unlikelihood), contrast each next liked item
with the user's disliked items (``beta``) and predict the sign of the next event with a head (``sign_weight``) that
ranking may read (``sign_scoring``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from negseq.models.families.base import Family, shift
from negseq.models.losses import contrastive_loss, next_item_loss
from negseq.models.recommender import SequentialRecommender, signed_history


@dataclass(frozen=True)
class SignedHistory:
    """The signed family's loss over the mixed history read with its signs (:func:`negseq.models.recommender.signed_history`).

    Next-item CE on liked next items only (the ranking goal: the next liked item); with
    ``unlikelihood_weight`` ``w > 0`` a disliked next item adds ``-w log(1 - p)`` (a "not to
    recommend" term); ``beta`` contrasts each next liked item with the disliked items of the
    user's training window, as PNFRec's contrast does; ``sign_weight`` adds the binary
    cross-entropy of the model's sign head on each next event (liked or not, given its item).
    """

    beta: float = 0.0
    temperature: float = 1.0
    cosine: bool = False
    unlikelihood_weight: float = 0.0
    sign_weight: float = 0.0

    def __call__(self, model: SequentialRecommender, batch: dict[str, Tensor], sampled: dict[str, Any]) -> dict[str, Tensor]:
        history, liked = batch["history"], batch["history_positive"]  # (B, L + 1) each
        inputs = signed_history(history, liked)[:, :-1]  # (B, L)
        _, labels = shift(history)  # next items of either sign, 0: none
        next_liked = liked[:, 1:]
        liked_labels = torch.where(next_liked, labels, 0)
        hidden = model.encode(inputs)  # (B, L, D)
        items = model.items.weight
        if self.unlikelihood_weight:
            terms = {"loss_next": next_item_loss(hidden, labels, items, ~next_liked, self.unlikelihood_weight, **sampled)}
        else:
            terms = {"loss_next": next_item_loss(hidden, liked_labels, items, **sampled)}
        if self.beta:
            disliked_inputs = torch.where(inputs < 0, -inputs, 0)  # (B, L)
            contrast = contrastive_loss(
                hidden, model.items(liked_labels), model.items(disliked_inputs), liked_labels > 0, disliked_inputs > 0, self.temperature, self.cosine
            )
            terms["loss_contrast"] = self.beta * contrast
        if self.sign_weight:
            labelled = labels > 0
            logits = model.sign_head(hidden[labelled] * model.items(labels[labelled])).squeeze(-1).float()  # (P,)
            terms["loss_sign"] = self.sign_weight * torch.nn.functional.binary_cross_entropy_with_logits(logits, next_liked[labelled].float())
        return terms


class SignedFamily(Family):
    name = "signed"
    reads = "history with disliked codes negated"
    objective = SignedHistory
    signed_input = True
    labels_both_signs = True
    sign_head = True

    def model_input(self, batch: Mapping[str, Tensor]) -> Tensor:
        return signed_history(batch["history"], batch["history_positive"])

    def label(self, model: Mapping[str, Any]) -> str:
        parts = [
            "unlikelihood" if float(model["unlikelihood_weight"] or 0) else "",
            "contrast" if float(model["beta"] or 0) else "",
            "sign head" if float(model["sign_weight"] or 0) else "",
            "sign scoring" if float(model["sign_scoring"] or 0) else "",
        ]
        return " + ".join(["Signed SASRec", *filter(None, parts)])
