"""Training objectives: batch + model -> the weighted loss terms by name.

Two families, each a small frozen dataclass called as ``objective(model, batch, sampled)``:

- :class:`SignSeparated` (PNFRec, its ablations, SASRec_p): the positive encoder reads liked
  items and predicts the next liked one (CE_pos), the negative encoder reads disliked items and
  predicts the next disliked one (``alpha`` CE_neg), and each next liked item is contrasted with
  the user's disliked items (``beta``).
- :class:`WholeHistory` (SASRec, SASRec_c, unlikelihood): one encoder reads the mixed history
  and predicts every next item; ``beta`` adds SASRec_c's InfoNCE.
- :class:`SignedHistory` (the signed family): one encoder reads the mixed history with each
  event's sign, predicts the next *liked* item, and may push disliked next items away
  (unlikelihood), contrast each next liked item with the user's disliked items (``beta``) and
  predict the sign of the next event (``sign_weight``).

``sampled`` holds the sampled-softmax candidates of this step (empty for the full softmax) and
the chunk size; the numeric kernels live in :mod:`negseq.losses`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from negseq.losses import contrastive_loss, next_item_loss
from negseq.models.recommender import SequentialRecommender, signed_history

ContrastNegatives = Literal["all", "earlier", "all_with_last"]


def shift(sequences: Tensor) -> tuple[Tensor, Tensor]:
    """``(B, L + 1)`` left-padded ids -> inputs ``[:, :-1]`` and next-item labels ``[:, 1:]``.

    A label whose input position is padding is dropped (set to 0): the first item of a sequence
    has no preceding item to predict it from, so a sequence of one item gives no label.
    """
    inputs = sequences[:, :-1]
    return inputs, torch.where(inputs > 0, sequences[:, 1:], 0)


def state_before(states: Tensor, state_order: Tensor, label_order: Tensor) -> Tensor:
    """``(B, T, D)``: for each label, the state at the newest position of ``states`` earlier than it (0 if none).

    ``states`` (B, M, D) are a left-padded sequence's hidden states and ``state_order`` (B, M)
    when each of its items came (0 at padding); ``label_order`` (B, T) when each label came.
    """
    earlier = (state_order[:, None, :] < label_order[:, :, None]) & (state_order[:, None, :] > 0)  # (B, T, M)
    newest = earlier.sum(-1) - 1  # (B, T): items are in time order, left-padded
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
