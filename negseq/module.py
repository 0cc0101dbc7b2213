"""NegSeqModule: one LightningModule for PNFRec, its ablations and the SASRec baselines.

Which encoders exist and which loss terms are on are constructor arguments, so each row of the
paper's table is a YAML file, not a subclass:

=================  ===========  =====  =====  ======================================
model              history      alpha  beta   other
=================  ===========  =====  =====  ======================================
PNFRec             positives    0.45   0.25
PNFRec CE+CE       positives    0.45   0
PNFRec CE+contr.   positives    0      0.25
SASRec_p           positives    0      0
SASRec             all          0      0
SASRec_c           all          0      0.25   cosine, temperature 0.1
SASRec + unlikel.  all          0      0      unlikelihood_weight > 0
=================  ===========  =====  =====  ======================================

Beyond the paper (each off by default): ``negative_scoring`` ranks with the negative encoder
too, ``fusion`` lets the user representation read the negative encoder's state, and
``contrast_negatives: earlier`` contrasts each liked item only with what was disliked before it.
"""

from __future__ import annotations

import math
import random
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from torch import Tensor, nn

from negseq.errors import ConfigError, NonFiniteLossError
from negseq.losses import contrastive_loss, next_item_loss
from negseq.metrics import MRR, NDCG, Coverage, HitRate, count_ahead
from negseq.models.encoder import CausalEncoder
from negseq.ranking import block_top_keys, decode_keys

STAGES = ("val", "test")


def _shift(sequences: Tensor) -> tuple[Tensor, Tensor]:
    """``(B, L + 1)`` left-padded ids -> inputs ``[:, :-1]`` and next-item labels ``[:, 1:]``.

    A label whose input position is padding is dropped (set to 0): the first item of a sequence
    has no preceding item to predict it from, so a sequence of one item gives no label.
    """
    inputs = sequences[:, :-1]
    return inputs, torch.where(inputs > 0, sequences[:, 1:], 0)


def _state_before(states: Tensor, state_order: Tensor, label_order: Tensor) -> Tensor:
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


class NegSeqModule(L.LightningModule):
    """Sequential recommender trained on positive and negative feedback.

    Args:
        num_items: catalogue size N (item ids 1..N, 0 is padding); linked from the data.
        num_train_items: distinct items in train, the Coverage@k denominator; linked from the data.
        max_len: sequence length L; linked from the data.
        history: ``positives`` reads the user's liked items (PNFRec family, SASRec_p), in training
            and at evaluation; ``all`` reads the whole mixed history (SASRec, SASRec_c).
        alpha: weight of CE_neg, the negative encoder's next-disliked-item loss (``positives`` only).
            0 means no negative encoder at all.
        beta: weight of the contrastive term. With ``positives``: the next liked item against all
            the user's disliked items (PNFRec). With ``all``: InfoNCE at each liked position,
            the next liked item against the disliked items of the sequence (SASRec_c).
        temperature: divides the contrastive similarities (1 in PNFRec, 0.1 in SASRec_c).
        cosine: contrast cosine similarities instead of dot products (SASRec_c).
        unlikelihood_weight: with ``all``, next items that were disliked get ``-w log(1 - p)``
            instead of cross-entropy (0 keeps plain next-item CE whatever the sign).
        dim: embedding and hidden size.
        blocks: transformer blocks per encoder.
        heads: attention heads.
        dropout: dropout rate.
        lr: Adam learning rate.
        k: cut-off of the ranking metrics and of the recommendations.
        score_block_items: evaluation scores the catalogue this many items at a time (memory bound).
        softmax: ``full`` (the paper) computes the next-item cross-entropies over the whole
            catalogue; ``uniform`` and ``popularity`` over the label and ``num_sampled`` sampled
            items, popularity-sampled with the logQ correction (for large catalogues). The
            contrastive term is unchanged. Evaluation always ranks the full catalogue.
        num_sampled: candidates per step for a sampled softmax.
        ce_chunk_items: if > 0, the full-softmax losses hold at most ``positions x ce_chunk_items``
            logits at a time (same values; leaner, slower: see benchmarks/README.md).
        negative_scoring: lambda of negative-aware ranking, ``score = z_pos - lambda * z_neg``:
            ``z_neg`` is the negative encoder's logit of the item as the user's next *disliked* one,
            so items like those the user rejected sink. 0 (the paper) ranks with ``z_pos`` alone.
            ``python -m negseq.fit --select_negative_scoring [..]`` picks it on validation.
        contrast_negatives: ``all`` (the paper) contrasts each next liked item with every disliked
            item of the user's training sequence; ``earlier`` only with those disliked before it.
        hard_negative_weight: ``w > 0`` counts each of the user's disliked items ``1 + w`` times in
            the CE_pos softmax (hard negatives); 0 (the paper) counts them once, as any other item.
        fusion: ``gated`` adds to the positive encoder's state a gated projection of the negative
            encoder's state (at each position, the one after the last dislike before the label), so
            the user representation itself knows what the user rejected; ``none`` is the paper.
    """

    def __init__(
        self,
        num_items: int,
        num_train_items: int,
        max_len: int = 50,
        history: Literal["positives", "all"] = "positives",
        alpha: float = 0.45,
        beta: float = 0.25,
        temperature: float = 1.0,
        cosine: bool = False,
        unlikelihood_weight: float = 0.0,
        dim: int = 64,
        blocks: int = 2,
        heads: int = 1,
        dropout: float = 0.1,
        lr: float = 1e-3,
        k: int = 10,
        score_block_items: int = 2048,
        softmax: Literal["full", "uniform", "popularity"] = "full",
        num_sampled: int = 1024,
        ce_chunk_items: int = 0,
        negative_scoring: float = 0.0,
        contrast_negatives: Literal["all", "earlier"] = "all",
        hard_negative_weight: float = 0.0,
        fusion: Literal["none", "gated"] = "none",
    ) -> None:
        super().__init__()
        if history not in ("positives", "all"):
            raise ConfigError(f"`history` must be 'positives' or 'all', got {history!r}")
        if history == "all" and alpha:
            raise ConfigError(f"`alpha` ({alpha}) needs a negative encoder, which only history='positives' has")
        if history == "positives" and unlikelihood_weight:
            raise ConfigError("`unlikelihood_weight` applies to history='all', where next items of both signs are labels")
        if softmax not in ("full", "uniform", "popularity"):
            raise ConfigError(f"`softmax` must be 'full', 'uniform' or 'popularity', got {softmax!r}")
        if ce_chunk_items < 0:
            raise ConfigError(f"`ce_chunk_items` must be 0 (off) or positive, got {ce_chunk_items}")
        if num_sampled < 1:
            raise ConfigError(f"`num_sampled` must be positive, got {num_sampled}")
        if score_block_items < 1:
            raise ConfigError(f"`score_block_items` must be positive, got {score_block_items}")
        if temperature <= 0:
            raise ConfigError(f"`temperature` must be positive, got {temperature}")
        if contrast_negatives not in ("all", "earlier"):
            raise ConfigError(f"`contrast_negatives` must be 'all' or 'earlier', got {contrast_negatives!r}")
        if hard_negative_weight < 0:
            raise ConfigError(f"`hard_negative_weight` must be 0 (off) or positive, got {hard_negative_weight}")
        if hard_negative_weight and history != "positives":
            raise ConfigError("`hard_negative_weight` applies to history='positives', whose CE_pos has the user's disliked items apart")
        if fusion not in ("none", "gated"):
            raise ConfigError(f"`fusion` must be 'none' or 'gated', got {fusion!r}")
        for name, value in (("negative_scoring", negative_scoring), ("fusion", fusion != "none")):
            if value and not alpha:
                raise ConfigError(f"`{name}` reads the negative encoder, which needs history='positives' and alpha > 0")
        self.save_hyperparameters()
        self.items = nn.Embedding(num_items + 1, dim, padding_idx=0)
        self.encoder = CausalEncoder(max_len, dim, blocks, heads, dropout)
        self.negative_encoder = CausalEncoder(max_len, dim, blocks, heads, dropout) if alpha else None
        self.fusion = GatedFusion(dim) if fusion == "gated" else None
        self._init_weights()
        # item sampling distribution of the popularity-sampled softmax; set from the training data in setup()
        uniform = torch.full((num_items + 1,), 1.0 / num_items)
        uniform[0] = 0.0
        self.register_buffer("sampling_probs", uniform, persistent=False)
        self.metrics = nn.ModuleDict({stage: self._stage_metrics() for stage in STAGES})

    def _init_weights(self) -> None:
        """Xavier-normal matrices, as SASRec; the padding row stays zero."""
        for name, parameter in self.named_parameters():
            if parameter.dim() > 1:
                nn.init.xavier_normal_(parameter)
        with torch.no_grad():
            self.items.weight[0].zero_()

    def _stage_metrics(self) -> nn.ModuleDict:
        k = self.hparams.k
        return nn.ModuleDict(
            {"hr": HitRate(k), "ndcg": NDCG(k), "mrr": MRR(k), "coverage": Coverage(self.hparams.num_items, self.hparams.num_train_items)}
        )

    # -- representations --

    def encode(self, sequences: Tensor, encoder: CausalEncoder | None = None, last_only: bool = False) -> Tensor:
        """``(B, T)`` left-padded item ids -> ``(B, T, D)`` hidden states (``(B, 1, D)``, the newest, with ``last_only``)."""
        return (encoder or self.encoder)(self.items(sequences), sequences > 0, last_only)

    def _user_vectors(self, sequences: Tensor, negatives: Tensor | None = None) -> Tensor:
        """``(B, D)`` fp32 user representations: the hidden state at the newest position.

        With fusion or negative scoring, ``negatives`` (the user's last disliked items) feed the
        negative encoder; ``h_pos - lambda * h_neg`` scores every item as ``z_pos - lambda * z_neg``.
        """
        hidden = self.encode(sequences, last_only=True)[:, -1]
        if self.fusion is None and not self.hparams.negative_scoring:
            return hidden.float()
        if negatives is None:
            raise ConfigError("fusion and negative_scoring need the users' disliked items (batch key 'negatives')")
        negative_state = self.encode(negatives, self.negative_encoder, last_only=True)[:, -1] * (negatives[:, -1:] > 0)  # 0: no dislikes
        if self.fusion is not None:
            hidden = self.fusion(hidden, negative_state)
        return hidden.float() - self.hparams.negative_scoring * negative_state.float()

    def _score_block(self, users: Tensor, seen: Tensor, start: int, stop: int) -> Tensor:
        """``(B, stop - start)`` fp32 scores of items ``start..stop-1``; padding and ``seen`` items are ``-inf``."""
        with torch.autocast(device_type=users.device.type, enabled=False):
            # fp32 so that bf16 rounding does not create ties among thousands of items
            block = users @ self.items.weight[start:stop].float().T  # (B, C)
        local = seen - start  # (B, S)
        inside = (local >= 0) & (local < stop - start) & (seen > 0)
        rows = torch.arange(len(seen), device=seen.device)[:, None].expand_as(seen)
        block[rows[inside], local[inside]] = float("-inf")
        if start == 0:
            block[:, 0] = float("-inf")
        return block

    def score(self, sequences: Tensor, seen: Tensor, negatives: Tensor | None = None) -> Tensor:
        """``(B, N + 1)`` fp32 scores of every item; padding and ``seen`` items are ``-inf``."""
        return self._score_block(self._user_vectors(sequences, negatives), seen, 0, self.hparams.num_items + 1)

    def rank_and_recommend(
        self, sequences: Tensor, seen: Tensor, targets: Tensor, negatives: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Each target's rank (as :func:`target_ranks`) and the top-k ``(scores, item ids)``, block by block.

        The catalogue is scored ``score_block_items`` items at a time, so a batch never holds
        more than ``B * score_block_items`` scores; slots with no recommendable item get id 0.
        Every metric is cut at ``k``, so a row stops counting once ``k`` items are ahead of its
        target: ranks up to ``k`` are exact, a rank above ``k`` is only a lower bound.
        """
        users = self._user_vectors(sequences, negatives)  # (B, D)
        n_items, block_size, k = self.hparams.num_items + 1, self.hparams.score_block_items, self.hparams.k
        in_catalogue = (targets > 0) & (targets < n_items)
        safe_targets = torch.where(in_catalogue, targets, 0)
        target_scores = (users * self.items.weight[safe_targets].float()).sum(-1)  # (B,)
        rankable = in_catalogue & ~(seen == targets[:, None]).any(dim=1)
        ahead = torch.zeros_like(targets)
        top_keys = targets.new_empty(len(users), 0)
        for start in range(0, n_items, block_size):
            stop = min(start + block_size, n_items)
            block = self._score_block(users, seen, start, stop)  # (B, C)
            counting = (rankable & (ahead < k)).nonzero()[:, 0]  # rows whose target may still be in the top k
            ahead.index_add_(0, counting, count_ahead(block[counting], target_scores[counting], safe_targets[counting], first_id=start))
            block_keys = block_top_keys(block, start, k)  # (B, <= k)
            candidates = torch.cat([top_keys, block_keys], dim=1)  # (B, <= 2k)
            top_keys = candidates.topk(min(k, candidates.shape[1]), dim=1).values  # (B, k), best first
        top_scores, top_items = decode_keys(top_keys)
        ranks = torch.where(rankable, 1.0 + ahead.float(), torch.full_like(target_scores, float("inf")))
        return ranks, top_scores, torch.where(torch.isfinite(top_scores), top_items, 0)

    # -- training --

    def loss_terms(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """The weighted parts of the training loss by name, and their sum as ``loss``."""
        hp = self.hparams
        items = self.items.weight
        sampled = {**self._sample_candidates(), "chunk_items": hp.ce_chunk_items}
        if hp.history == "positives":
            sequence, labels = _shift(batch["positives"])
            hidden = self.encode(sequence)
            negatives, negative_labels = _shift(batch["negatives"])
            if self.fusion is not None or hp.contrast_negatives == "earlier":
                # when each label (B, T) and each disliked input (B, M) came: a dislike is "before" a label if earlier
                label_order, negative_order = batch["positives_order"][:, 1:], batch["negatives_order"][:, :-1]
            if self.negative_encoder is not None:
                negative_hidden = self.encode(negatives, self.negative_encoder)
                if self.fusion is not None:
                    hidden = self.fusion(hidden, _state_before(negative_hidden, negative_order, label_order))
            hard_negatives = self._hard_negative_log_mass(hidden, negatives) if hp.hard_negative_weight else None
            terms = {"loss_pos": next_item_loss(hidden, labels, items, **sampled, extra_log_mass=hard_negatives)}
            if self.negative_encoder is not None:
                terms["loss_neg"] = hp.alpha * next_item_loss(negative_hidden, negative_labels, items, **sampled)
            if hp.beta:
                negative_valid = negatives > 0  # (B, M): the paper, every disliked item of the sequence
                if hp.contrast_negatives == "earlier":
                    negative_valid = negative_valid[:, None, :] & (negative_order[:, None, :] < label_order[:, :, None])  # (B, T, M)
                contrast = contrastive_loss(
                    hidden, self.items(labels), self.items(negatives), labels > 0, negative_valid, hp.temperature, hp.cosine
                )
                terms["loss_contrast"] = hp.beta * contrast
        else:
            sequence, labels = _shift(batch["history"])
            liked = batch["history_positive"]
            hidden = self.encode(sequence)
            disliked_next = ~liked[:, 1:]
            terms = {"loss_next": next_item_loss(hidden, labels, items, disliked_next, hp.unlikelihood_weight, **sampled)}
            if hp.beta:
                terms["loss_contrast"] = hp.beta * self._history_infonce(hidden, batch["history"], liked)
        terms["loss"] = sum(terms.values())
        return terms

    def _hard_negative_log_mass(self, hidden: Tensor, negatives: Tensor) -> Tensor:
        """``(B, T)``: ``log(w * sum_m exp(z_m))`` over the user's disliked inputs ``m``, ``-inf`` for a user with none."""
        logits = torch.einsum("btd,bmd->btm", hidden, self.items(negatives)).float()  # (B, T, M)
        logits = logits.masked_fill(~(negatives > 0)[:, None, :], float("-inf"))
        return math.log(self.hparams.hard_negative_weight) + logits.logsumexp(dim=-1)

    def _sample_candidates(self) -> dict[str, Tensor]:
        """Candidates of a sampled softmax, drawn once per step and shared by the batch (none for the full softmax)."""
        hp = self.hparams
        if hp.softmax == "full":
            return {}
        if hp.softmax == "uniform":  # a constant Q cancels out: no correction
            return {"candidates": torch.randint(1, hp.num_items + 1, (hp.num_sampled,), device=self.device)}
        candidates = torch.multinomial(self.sampling_probs, hp.num_sampled, replacement=True)
        return {"candidates": candidates, "log_q": self.sampling_probs.clamp(min=1e-12).log()}

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if self.hparams.softmax == "popularity" and stage == "fit" and datamodule is not None:
            counts = datamodule.item_counts.to(self.sampling_probs)
            self.sampling_probs.copy_(counts / counts.sum())

    def _history_infonce(self, hidden: Tensor, history: Tensor, liked: Tensor) -> Tensor:
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
            hidden,
            self.items(key_items),
            self.items(disliked_inputs),
            input_liked & has_next,
            disliked_inputs > 0,
            self.hparams.temperature,
            self.hparams.cosine,
        )

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        terms = self.loss_terms(batch)
        if not torch.isfinite(terms["loss"]):
            parts = ", ".join(f"{name}={value.item():.4g}" for name, value in terms.items())
            raise NonFiniteLossError(
                f"non-finite training loss at epoch {self.current_epoch + 1}, step {self.global_step} (batch {batch_idx}): {parts}; "
                "lower --model.lr or try --trainer.precision 32-true"
            )
        batch_size = len(next(iter(batch.values())))
        self.log("train/loss", terms["loss"], prog_bar=True, on_step=True, on_epoch=True, batch_size=batch_size)
        self.log_dict({f"train/{name}": value for name, value in terms.items() if name != "loss"}, on_step=False, on_epoch=True, batch_size=batch_size)
        return terms["loss"]

    # -- evaluation --

    def _input(self, batch: dict[str, Tensor]) -> Tensor:
        return batch["positives"] if self.hparams.history == "positives" else batch["history"]

    def _rank_batch(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        return self.rank_and_recommend(self._input(batch), batch["seen"], batch["target"], batch.get("negatives"))

    def _shared_eval_step(self, batch: dict[str, Tensor], stage: str) -> None:
        ranks, _, top_items = self._rank_batch(batch)
        metrics = self.metrics[stage]
        for name in ("hr", "ndcg", "mrr"):
            metrics[name].update(ranks, batch["target_positive"])
        metrics["coverage"].update(top_items)

    def _log_stage(self, stage: str) -> None:
        metrics = self.metrics[stage]
        k = self.hparams.k
        values = {}
        for name in ("hr", "ndcg", "mrr"):
            result = metrics[name].compute()
            values[f"{stage}/{name}_p@{k}"] = result["pos"]
            values[f"{stage}/{name}_n@{k}"] = result["neg"]
            if name != "mrr":
                values[f"{stage}/delta_{name}@{k}"] = result["delta"]
        values[f"{stage}/coverage@{k}"] = metrics["coverage"].compute()
        self.log_dict(values, prog_bar=False)
        # compute() syncs states only for its result: the counts held here are this process's, so sum them over processes
        counts = {f"{stage}/n_users_pos": metrics["hr"].n_pos.float(), f"{stage}/n_users_neg": metrics["hr"].n_neg.float()}
        self.log_dict(counts, prog_bar=False, sync_dist=True, reduce_fx="sum")
        for metric in metrics.values():
            metric.reset()

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._shared_eval_step(batch, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._shared_eval_step(batch, "test")

    def on_validation_epoch_end(self) -> None:
        self._log_stage("val")

    def on_test_epoch_end(self) -> None:
        self._log_stage("test")

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        """Top-k recommendations (encoded ids) for each user of the batch, and the held-out target's rank and sign.

        ``rank`` is exact up to ``k`` and ``inf`` for a target that cannot be ranked (as in the metrics);
        a rank above ``k`` is only a lower bound.
        """
        ranks, scores, items = self._rank_batch(batch)
        return {
            "user": batch["user"], "items": items, "scores": scores,
            "target": batch["target"], "target_positive": batch["target_positive"], "rank": ranks,
        }

    # -- checkpoints --

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # random states, so that a resumed fit shuffles and drops out exactly as an uninterrupted one
        # stored as tensors and plain tuples, so the checkpoint still loads with weights_only=True
        kind, keys, position, has_gauss, cached = np.random.get_state()
        numpy_state = (kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached)
        checkpoint["rng_states"] = {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():  # dropout on a GPU draws from the current device's generator
            checkpoint["rng_states"]["cuda"] = torch.cuda.get_rng_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = dict(checkpoint.get("hyper_parameters", {}))
        weights = checkpoint.get("state_dict", {})
        # sizes from the weights themselves: load_from_checkpoint(..., num_items=...) overwrites the saved hyper-parameters
        if "items.weight" in weights:
            saved["num_items"], saved["dim"] = weights["items.weight"].shape[0] - 1, weights["items.weight"].shape[1]
        if "encoder.positions.weight" in weights:
            saved["max_len"] = weights["encoder.positions.weight"].shape[0]
        for name in ("num_items", "dim", "max_len"):
            if name in saved and saved[name] != self.hparams[name]:
                raise ConfigError(
                    f"checkpoint was trained with {name}={saved[name]} but this run has {name}={self.hparams[name]}: "
                    "use the same data, filters and model settings as the run that wrote it"
                )
        states = checkpoint.get("rng_states")
        if states and self._trainer is not None and self.trainer.state.fn == "fit":  # no trainer: load_from_checkpoint
            torch.set_rng_state(states["torch"])
            kind, keys, position, has_gauss, cached = states["numpy"]
            np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached))
            random.setstate(states["python"])
            if "cuda" in states and torch.cuda.is_available():
                torch.cuda.set_rng_state(states["cuda"])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
