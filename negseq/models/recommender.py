"""The recommender as a plain ``nn.Module``: item table, causal encoders, optional gated fusion, user vectors.

One item table is shared by the positive encoder, the negative encoder (PNFRec's CE_neg) and
the output layer, so an item's score for a user is the dot product of the user vector with
the item's row. Training objectives (:mod:`negseq.models.families`) read the per-position states of
:meth:`SequentialRecommender.encode`; ranking (:mod:`negseq.models.inference`, :mod:`negseq.models.ranking`) reads the user
vectors of :meth:`SequentialRecommender.forward`, :attr:`SequentialRecommender.items` and :meth:`SequentialRecommender.demotion`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from negseq.errors import ConfigError
from negseq.models import ranking_weights
from negseq.models.encoder import CausalEncoder


def signed_history(history: Tensor, liked: Tensor) -> Tensor:
    """``(B, L)`` mixed history ids and their signs -> signed ids, a disliked item ``i`` as ``-i`` (what signed models read)."""
    return torch.where(liked, history, -history)


class GatedFusion(nn.Module):
    """``h + sigmoid(W_g [h; n]) * W_n n``: the positive state ``h`` reads the negative state ``n`` through a gate.

    ``W_n`` has no bias, so a user with no dislikes (``n = 0``) keeps ``h`` exactly.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gate = nn.Linear(2 * dim, dim)
        self.project = nn.Linear(dim, dim, bias=False)

    def forward(self, hidden: Tensor, negative_state: Tensor) -> Tensor:
        gate = torch.sigmoid(self.gate(torch.cat([hidden, negative_state], dim=-1)))
        return hidden + gate * self.project(negative_state)


class SequentialRecommender(nn.Module):
    """Item table + causal encoder(s) -> ``(B, D)`` user vectors that score every item by a dot product.

    Args:
        num_items: catalogue size N (item ids 1..N, 0 is padding).
        max_len: longest sequence an encoder reads.
        dim: size of the item table and of the encoders' states.
        blocks: transformer blocks per encoder.
        heads: attention heads.
        dropout: dropout rate.
        negative_encoder: build the negative encoder (reads the user's disliked items).
        fusion: the positive state reads the negative encoder's state through :class:`GatedFusion`.
        negative_scoring: lambda of ``score = z_pos - lambda * z_neg``; a buffer, so a checkpoint
            carries the weight the run ranked with (chosen on validation or given; :mod:`negseq.models.ranking_weights`).
        dislike_demotion: lambda of ``score_j -= lambda * max(0, max_m cos(e_j, e_m))`` over the user's last
            ``demotion_window`` disliked items m (the shared item table, no negative encoder needed); a buffer too.
        polarity_prior: lambda of ``score_j += lambda * item_polarity_j``, the item's log smoothed like rate in training
            (:func:`negseq.models.ranking_weights.item_polarity`, set from the training data; zeros until then); a buffer, as are
            the log-rates, so a checkpoint serves with the training counts and no log.
        demotion_window: R, how many of the newest disliked items demote their look-alikes.
        demotion_decay: gamma in (0, 1]: the r-th newest of them demotes with weight ``gamma ** r`` (the newest 1), so
            a fresh dislike moves the list more than old ones do; 1 weighs the R alike.
        identical_start: the negative encoder starts as a copy of the positive one (the authors' code); otherwise
            its weights are drawn independently.
        signed: the encoder reads signed ids (a disliked item ``i`` as ``-i``) and adds a learned sign embedding to
            each event's item embedding: one encoder over the whole mixed history that knows what was disliked.
        sign_head: a logistic head ``w . (h_t * e_j) + b``: does the user like item ``j`` if it comes next
            (a training signal of the signed family; ranking reads it with ``sign_scoring``).
        sign_scoring: lambda of ``score_j += lambda * w . (h * e_j)``, the sign head's logit (without its constant ``b``):
            the user vector becomes ``h * (1 + lambda * w)``; a buffer, as the other ranking weights.
    """

    def __init__(
        self,
        num_items: int,
        max_len: int,
        dim: int = 64,
        blocks: int = 2,
        heads: int = 1,
        dropout: float = 0.1,
        negative_encoder: bool = True,
        fusion: bool = False,
        negative_scoring: float = 0.0,
        dislike_demotion: float = 0.0,
        polarity_prior: float = 0.0,
        sign_scoring: float = 0.0,
        demotion_window: int = 5,
        demotion_decay: float = 1.0,
        identical_start: bool = False,
        signed: bool = False,
        sign_head: bool = False,
    ) -> None:
        super().__init__()
        ranking_weights.check(
            dict(negative_scoring=negative_scoring, fusion=fusion, identical_start=identical_start, dislike_demotion=dislike_demotion,
                 polarity_prior=polarity_prior, sign_scoring=sign_scoring, demotion_window=demotion_window, demotion_decay=demotion_decay),
            negative_encoder, sign_head=sign_head,
        )
        self.items = nn.Embedding(num_items + 1, dim, padding_idx=0)
        self.encoder = CausalEncoder(max_len, dim, blocks, heads, dropout)
        self.negative_encoder = CausalEncoder(max_len, dim, blocks, heads, dropout) if negative_encoder else None
        self.fusion = GatedFusion(dim) if fusion else None
        self.signs = nn.Embedding(2, dim) if signed else None  # 0 liked, 1 disliked
        self.sign_head = nn.Linear(dim, 1) if sign_head else None
        self.register_buffer("negative_scoring", torch.tensor(float(negative_scoring)))
        self.register_buffer("dislike_demotion", torch.tensor(float(dislike_demotion)))
        self.register_buffer("polarity_prior", torch.tensor(float(polarity_prior)))
        self.register_buffer("item_polarity", torch.zeros(num_items + 1))
        self.register_buffer("sign_scoring", torch.tensor(float(sign_scoring)))
        self.demotion_window = demotion_window
        self.demotion_decay = demotion_decay
        self._init_weights()
        if identical_start:
            self.negative_encoder.load_state_dict(self.encoder.state_dict())

    def _init_weights(self) -> None:
        """Xavier-normal matrices, as SASRec; the padding row stays zero."""
        for parameter in self.parameters():
            if parameter.dim() > 1:
                nn.init.xavier_normal_(parameter)
        with torch.no_grad():
            self.items.weight[0].zero_()

    @property
    def num_items(self) -> int:
        return self.items.num_embeddings - 1

    def demotion(self, negatives: Tensor | None, weight: float | None = None) -> Tensor | None:
        """``(B, R, D)`` ``dislike_demotion`` times ``demotion_decay ** age`` times the unit vectors of each user's last R
        disliked items (age 0 the newest; zero rows for padding), what :func:`negseq.models.ranking.score_block` demotes by;
        ``None`` when the weight is 0. ``weight`` (a Python number, so that ``torch.export`` sees a constant) replaces the buffer."""
        weight = float(self.dislike_demotion) if weight is None else weight
        if not weight:
            return None
        if negatives is None:
            raise ConfigError("dislike_demotion needs the users' disliked items (batch key 'negatives')")
        window = negatives[:, -self.demotion_window :]  # (B, R), left-padded: the newest last
        age = torch.arange(window.shape[1] - 1, -1, -1, device=window.device, dtype=torch.float32)  # (R,)
        recency = self.demotion_decay**age  # (R,)
        return weight * recency[None, :, None] * nn.functional.normalize(self.items(window).float(), dim=-1)

    def item_bias(self, weight: float | None = None) -> Tensor | None:
        """``(N + 1,)`` what the prior adds to every user's score of each item, ``polarity_prior * item_polarity``; ``None``
        when the weight is 0. ``weight`` (a Python number) replaces the buffer, as in :meth:`demotion`."""
        weight = float(self.polarity_prior) if weight is None else weight
        return weight * self.item_polarity if weight else None

    def encode(self, sequences: Tensor, encoder: CausalEncoder | None = None, last_only: bool = False, table: Tensor | None = None) -> Tensor:
        """``(B, T)`` left-padded item ids -> ``(B, T, D)`` hidden states (``(B, 1, D)``, the newest, with ``last_only``).

        A signed model reads signed ids (``-i``: item ``i`` disliked), see :func:`signed_history`. ``table`` replaces the
        item table's weight (the same values with a scaled gradient, :func:`negseq.models.families.sign_separated.scale_gradient`).
        """
        ids = sequences.abs()
        embedded = self.items(ids) if table is None else nn.functional.embedding(ids, table, padding_idx=0)
        if self.signs is not None:
            embedded = embedded + self.signs((sequences < 0).long())
        return (encoder or self.encoder)(embedded, sequences != 0, last_only)

    def forward(self, positives: Tensor, negatives: Tensor | None = None) -> Tensor:
        """``(B, D)`` fp32 user vectors from ``(B, L)`` left-padded histories: the hidden state at the newest position.

        With fusion or negative scoring, ``negatives`` (the user's last disliked items) feed the
        negative encoder; ``h_pos - lambda * h_neg`` scores every item as ``z_pos - lambda * z_neg``.
        """
        return self.user_vectors(positives, negatives, float(self.negative_scoring), float(self.sign_scoring))

    def user_vectors(self, positives: Tensor, negatives: Tensor | None, weight: float, sign_weight: float = 0.0) -> Tensor:
        """:meth:`forward` with the negative-scoring and sign-scoring weights as Python numbers, so that ``torch.export``
        sees constants."""
        hidden = self.encode(positives, last_only=True)[:, -1]  # (B, D)
        if sign_weight:  # + lambda * the sign head's logit of each item, w . (h * e) = (w * h) . e
            hidden = hidden * (1 + sign_weight * self.sign_head.weight[0])
        if self.fusion is None and not weight:
            return hidden.float()
        if negatives is None:
            raise ConfigError("fusion and negative_scoring need the users' disliked items (batch key 'negatives')")
        negative_state = self.encode(negatives, self.negative_encoder, last_only=True)[:, -1] * (negatives[:, -1:] > 0)  # (B, D), 0: no dislikes
        if self.fusion is not None:
            hidden = self.fusion(hidden, negative_state)
        return hidden.float() - weight * negative_state.float()
