"""The sign-separated family (``family='sign_separated'``): PNFRec, its ablations and SASRec_p.

The positive encoder reads the user's liked items and predicts the next liked one (CE_pos); with ``alpha`` > 0 a
negative encoder reads the disliked items and predicts the next disliked one (CE_neg), and ``beta`` contrasts each next
liked item with the user's disliked items. Evaluation and serving rank with the positive encoder's state.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from negseq.errors import ConfigError
from negseq.models.families.base import Family, shift
from negseq.models.losses import contrastive_loss, next_item_loss
from negseq.models.recommender import SequentialRecommender

ContrastNegatives = Literal["all", "earlier", "all_with_last"]


def newest_before(state_order: Tensor, label_order: Tensor) -> Tensor:
    """``(B, T)``: for each label, how many items of a left-padded sequence came before it, minus one (the newest such
    item's rank among the sequence's items; -1: none). ``state_order`` (B, M): when each item came (0 at padding);
    ``label_order`` (B, T): when each label came."""
    earlier = (state_order[:, None, :] < label_order[:, :, None]) & (state_order[:, None, :] > 0)  # (B, T, M)
    return earlier.sum(-1) - 1  # items are in time order, left-padded


def state_before(states: Tensor, state_order: Tensor, label_order: Tensor) -> Tensor:
    """``(B, T, D)``: for each label, the state at the newest position of ``states`` earlier than it (0 if none).

    ``states`` (B, M, D) are a left-padded sequence's hidden states and ``state_order`` (B, M)
    when each of its items came (0 at padding); ``label_order`` (B, T) when each label came.
    """
    return state_at(states, state_order, newest_before(state_order, label_order))


def state_at(states: Tensor, state_order: Tensor, newest: Tensor) -> Tensor:
    """``(B, T, D)``: the states of ``states`` (B, M, D) at the items ranked ``newest`` (B, T) among a left-padded
    sequence's items (:func:`newest_before`; -1: a zero state), ``state_order`` (B, M) 0 at padding."""
    offset = (state_order == 0).sum(-1, keepdim=True)  # (B, 1): padding columns on the left
    index = (offset + newest).clamp(min=0)
    picked = states.gather(1, index[..., None].expand(-1, -1, states.shape[-1]))  # (B, T, D)
    return picked * (newest >= 0)[..., None]


def scale_gradient(tensor: Tensor, share: float) -> Tensor:
    """``tensor`` itself in the forward pass, ``share`` times its gradient in the backward pass (1: unchanged, 0: detached)."""
    if share == 1:
        return tensor
    frozen = tensor.detach()
    return frozen + share * (tensor - frozen) if share else frozen


def hard_negative_log_mass(hidden: Tensor, negative_items: Tensor, negatives: Tensor, weight: float) -> Tensor:
    """``(B, T)``: ``log(w * sum_m exp(z_m))`` over the user's disliked items ``m``, ``-inf`` for a user with none.

    ``negative_items`` (B, M, D) are the embeddings of ``negatives`` (B, M), 0 at padding.
    """
    logits = torch.einsum("btd,bmd->btm", hidden, negative_items).float()  # (B, T, M)
    logits = logits.masked_fill(~(negatives > 0)[:, None, :], float("-inf"))
    return math.log(weight) + logits.logsumexp(dim=-1)


@dataclass(frozen=True)
class SignSeparated:
    """PNFRec's loss: ``CE_pos + alpha CE_neg + beta contrast`` on the sign-separated sequences.

    ``contrast_negatives``: which disliked items a next liked item is contrasted with.
    ``all`` (the paper, and the authors' code, which contrasts with the negative sequence's
    inputs): every disliked item of the training window but the newest, so a user with a single
    training dislike gets no contrast; ``all_with_last`` includes the newest one too;
    ``earlier``: only the inputs disliked before the liked item.
    ``hard_negative_weight`` ``w > 0`` counts each disliked input ``1 + w`` times in CE_pos's softmax.
    ``negative_table_gradient``: the share of CE_neg's gradient that reaches the shared item table, through the negative
    encoder's inputs and its softmax (1, the paper: all of it; 0: CE_neg trains the negative encoder only, so the
    table learns from the liked side alone).
    """

    alpha: float = 0.45
    beta: float = 0.25
    temperature: float = 1.0
    cosine: bool = False
    contrast_negatives: ContrastNegatives = "all"
    hard_negative_weight: float = 0.0
    negative_table_gradient: float = 1.0

    def __call__(self, model: SequentialRecommender, batch: dict[str, Tensor], sampled: dict[str, Any]) -> dict[str, Tensor]:
        items = model.items.weight
        labels = shift(batch["positives"])[1]  # (B, L)
        hidden = self.liked_states(model, batch)  # (B, L, D)
        negatives, negative_labels = shift(batch["negatives"])  # (B, L) each
        if self.contrast_negatives == "earlier":
            # when each label (B, T) and each disliked input (B, M) came: a dislike is "before" a label if earlier
            label_order, negative_order = batch["positives_order"][:, 1:], batch["negatives_order"][:, :-1]
        if model.negative_encoder is not None:
            negative_table = scale_gradient(items, self.negative_table_gradient)
            negative_hidden = model.encode(negatives, model.negative_encoder, table=negative_table)  # (B, L, D)
        hard = hard_negative_log_mass(hidden, model.items(negatives), negatives, self.hard_negative_weight) if self.hard_negative_weight else None
        terms = {"loss_pos": next_item_loss(hidden, labels, items, **sampled, extra_log_mass=hard)}
        if model.negative_encoder is not None:
            terms["loss_neg"] = self.alpha * next_item_loss(negative_hidden, negative_labels, negative_table, **sampled)
        if self.beta:
            contrasted = batch["negatives"] if self.contrast_negatives == "all_with_last" else negatives  # (B, M)
            negative_valid = contrasted > 0  # (B, M)
            if self.contrast_negatives == "earlier":
                negative_valid = negative_valid[:, None, :] & (negative_order[:, None, :] < label_order[:, :, None])  # (B, T, M)
            contrast = contrastive_loss(hidden, model.items(labels), model.items(contrasted), labels > 0, negative_valid, self.temperature, self.cosine)
            terms["loss_contrast"] = self.beta * contrast
        return terms

    @staticmethod
    def liked_states(model: SequentialRecommender, batch: dict[str, Tensor]) -> Tensor:
        """``(B, L, D)`` states that predict each next liked item: the positive encoder's, which with fusion read at each
        label the negative encoder's state at the newest dislike before it.

        That state comes from the newest ``L`` dislikes, the newest included, as ranking reads the user's last ``L``
        dislikes: CE_neg's inputs (``[:, :-1]``) leave the newest out, so a user with one training dislike would never
        feed the gate in training and always at test.
        """
        hidden = model.encode(shift(batch["positives"])[0])  # (B, L, D)
        if model.fusion is None:
            return hidden
        newest = batch["negatives"][:, 1:]  # (B, L)
        negative_hidden = model.encode(newest, model.negative_encoder)  # (B, L, D)
        return model.fusion(hidden, state_before(negative_hidden, batch["negatives_order"][:, 1:], batch["positives_order"][:, 1:]))


class SignSeparatedFamily(Family):
    name = "sign_separated"
    reads = "positives"
    objective = SignSeparated
    negative_encoder = True
    disliked_apart = True
    nothing_to_read = "liked item"

    def model_input(self, batch: Mapping[str, Tensor]) -> Tensor:
        return batch["positives"]

    def check(self, hp: Mapping[str, Any]) -> None:
        super().check(hp)
        if hp["negative_table_gradient"] != 1 and not hp["alpha"]:
            raise ConfigError(f"`negative_table_gradient` ({hp['negative_table_gradient']}) scales CE_neg's gradient: it needs `alpha` > 0")
        if hp["hard_negative_weight"] and hp["softmax"] != "full":
            raise ConfigError(
                f"`hard_negative_weight` needs softmax='full': with softmax={hp['softmax']!r} the sampled denominator is on another "
                "scale than the disliked items' extra mass (popularity: 1/Q of the label), so the weight would not mean what it says"
            )

    def label(self, model: Mapping[str, Any]) -> str:
        alpha, beta = float(model["alpha"] or 0), float(model["beta"] or 0)
        if alpha and beta:
            name = "PNFRec"
        elif alpha:
            name = "PNFRec CE+CE"
        else:
            name = "PNFRec CE+contrast" if beta else "SASRec_p"
        beyond = [
            "cosine contrast" if beta and model["cosine"] else "",
            "contrast with earlier dislikes" if beta and model["contrast_negatives"] != "all" else "",
            "hard negatives" if float(model["hard_negative_weight"] or 0) else "",
            f"{model['fusion']} fusion" if model["fusion"] != "none" else "",
            "negative scoring" if float(model["negative_scoring"] or 0) else "",
        ]
        return " + ".join([name, *filter(None, beyond)])
