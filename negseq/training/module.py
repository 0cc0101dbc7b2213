"""NegSeqModule: the LightningModule glue for PNFRec, its ablations and the SASRec baselines.

Which encoders exist and which loss terms are on are constructor arguments, so each row of the
paper's table is a YAML file, not a subclass:

=================  ======================  =====  =====  ======================================
model              family                  alpha  beta   other
=================  ======================  =====  =====  ======================================
PNFRec             sign_separated          0.45   0.25
PNFRec CE+CE       sign_separated          0.45   0
PNFRec CE+contr.   sign_separated          0      0.25
SASRec_p           sign_separated          0      0
SASRec_p + unl.    positives_unlikelihood  0      0      unlikelihood_weight > 0
SASRec             whole_history           0      0
SASRec_c           whole_history           0      0.25   cosine, temperature 0.1
SASRec + unlikel.  whole_history           0      0      unlikelihood_weight > 0
Signed SASRec      signed                  0      0      (optional: unlikelihood_weight, beta, sign_weight)
=================  ======================  =====  =====  ======================================

Beyond the paper (each off by default): ``negative_scoring`` ranks with the negative encoder
too, ``dislike_demotion`` sinks items whose embedding is close to the user's newest dislikes, ``polarity_prior`` adds
each item's log like rate in training to every score, ``fusion`` lets the user representation read the negative encoder's state, and
``contrast_negatives`` chooses which disliked items a liked item is contrasted with.

The model is :class:`negseq.models.recommender.SequentialRecommender`, the losses are
:mod:`negseq.models.families`, ranking is :mod:`negseq.models.inference` (the one path serving takes too); this module checks the arguments,
builds those, runs the steps and logs the metrics under the names of :mod:`negseq.layout`. At test
it also asks how the ranking answers a counterfactual dislike of each user's first item
(:mod:`negseq.evaluation.responsiveness`), with the item neighbours its datamodule provides (``item_neighbours``).
"""

from __future__ import annotations

import inspect
import warnings
from typing import Any, Literal, Optional, get_args, get_origin, get_type_hints

import lightning as L
import torch
from torch import Tensor, nn

from negseq import layout
from negseq.data.catalog import STATE_KEY
from negseq.errors import ConfigError, NonFiniteLossError
from negseq.evaluation.metrics import MRR, NDCG, Coverage, HitRate
from negseq.evaluation.responsiveness import ListChange, NeighbourSuppression, with_dislike
from negseq.models import families, inference, ranking_weights
from negseq.models.ranking import nearest_items
from negseq.models.recommender import SequentialRecommender

FamilyName = Literal[tuple(families.FAMILIES)]  # the ``family`` values: one per module of negseq.models.families
ITEM_TABLE_NEIGHBOURS = 20  # m of item-table neighbours without a datamodule (FeedbackDataModule's ``neighbours`` default)
# a checkpoint must match these to load: they make the network (or, for the family, what it reads)
ARCHITECTURE = ("num_items", "dim", "max_len", "blocks", "heads", "family", "fusion")
# loss weights whose being > 0 makes a part of the network: alpha the negative encoder, sign_weight the sign head
PART_SWITCHES = ("alpha", "sign_weight")


def architecture_differences(saved: dict[str, Any], other: dict[str, Any]) -> list[str]:
    """The arguments that make the network on which ``other`` differs from ``saved`` (a checkpoint's); names missing from
    either are not compared. A switch's size is a loss weight: only whether it is 0 counts."""
    def differ(name: str) -> bool:
        return bool(saved[name]) != bool(other[name]) if name in PART_SWITCHES else saved[name] != other[name]
    return [name for name in (*ARCHITECTURE, *PART_SWITCHES) if name in saved and name in other and differ(name)]


def check_arguments(hp: dict[str, Any]) -> None:
    """Refuse arguments out of range, then what the model's family refuses (its parts and its losses' rules)."""
    for name, allowed in CHOICES.items():
        if hp[name] not in allowed:
            raise ConfigError(f"`{name}` must be one of {list(allowed)}, got {hp[name]!r}")
    for name in ("num_sampled", "score_block_items", "temperature", "k"):
        if hp[name] <= 0:
            raise ConfigError(f"`{name}` must be positive, got {hp[name]}")
    for name in ("ce_chunk_items", "hard_negative_weight", "sign_weight", "weight_decay", "negative_table_gradient"):
        if hp[name] < 0:
            raise ConfigError(f"`{name}` must be 0 (off) or positive, got {hp[name]}")
    if any(not isinstance(c, int) or c < 1 for c in hp["ks"]):
        raise ConfigError(f"`ks` must be positive integers, got {hp['ks']}")
    families.family(hp["family"]).check(hp)


def network(hp: dict[str, Any]) -> SequentialRecommender:
    """The network that NegSeqModule's arguments ``hp`` describe: the one the fit trains and the one serving loads."""
    return SequentialRecommender(
        hp["num_items"], hp["max_len"], hp["dim"], hp["blocks"], hp["heads"], hp["dropout"], negative_encoder=bool(hp["alpha"]),
        fusion=hp["fusion"] == "gated", negative_scoring=hp["negative_scoring"], dislike_demotion=hp["dislike_demotion"],
        polarity_prior=hp["polarity_prior"], sign_scoring=hp["sign_scoring"], demotion_window=hp["demotion_window"],
        demotion_decay=hp["demotion_decay"], identical_start=hp["identical_start"], signed=families.family(hp["family"]).signed_input,
        sign_head=bool(hp["sign_weight"]),
    )


def upgrade(checkpoint: dict[str, Any]) -> None:
    """Bring a checkpoint of an earlier version to today's keys, in place: the family saved as ``history`` (before 0.4.0)
    becomes ``family`` under today's name, weights saved before the network was its own module get its ``model.``
    prefix, ranking buffers saved before they existed their hyper-parameter's value (else 0)."""
    saved = checkpoint.get("hyper_parameters", {})
    if "history" in saved:
        saved["family"] = families.family(saved.pop("history")).name
    weights = checkpoint.get("state_dict", {})
    if "items.weight" in weights:
        checkpoint["state_dict"] = {f"model.{key}": value for key, value in weights.items()}
    if "state_dict" in checkpoint:
        ranking_weights.fill_missing(checkpoint)


class NegSeqModule(L.LightningModule):
    """Sequential recommender trained on positive and negative feedback.

    Args:
        num_items: catalogue size N (item ids 1..N, 0 is padding); linked from the data.
        num_train_items: distinct items in train, the Coverage@k denominator; linked from the data.
        max_len: sequence length L; linked from the data.
        family: the model family (:mod:`negseq.models.families`, one module each): ``sign_separated`` reads the user's
            liked items (PNFRec, its ablations, SASRec_p), in training and at evaluation, and the disliked ones apart;
            ``positives_unlikelihood`` reads the liked items and pushes the disliked ones away in training;
            ``whole_history`` reads the whole mixed history (SASRec, SASRec_c); ``signed`` reads the whole mixed
            history with each event's sign (item + sign embedding) and learns to predict the next liked item.
        history: deprecated since 0.4.0, the family's old name: ``positives`` is ``sign_separated``, ``all`` is
            ``whole_history``, ``signed`` is ``signed``. Given, it sets ``family``, with a warning.
        alpha: weight of CE_neg, the negative encoder's next-disliked-item loss (``sign_separated`` only).
            0 means no negative encoder at all.
        beta: weight of the contrastive term. With ``sign_separated``: the next liked item against all
            the user's disliked items (PNFRec). With ``whole_history``: InfoNCE at each liked position,
            the next liked item against the disliked items of the sequence (SASRec_c).
        temperature: divides the contrastive similarities (1 in PNFRec, 0.1 in SASRec_c).
        cosine: contrast cosine similarities instead of dot products (SASRec_c).
        unlikelihood_weight: with ``whole_history``, next items that were disliked get ``-w log(1 - p)``
            instead of cross-entropy (0 keeps plain next-item CE whatever the sign); with ``signed``
            they get it besides the liked items' cross-entropy (0: disliked next items are no label).
        sign_weight: with ``signed``, weight of the sign head's binary cross-entropy on each next
            event (is the next item liked?); 0 builds no head.
        dim: embedding and hidden size.
        blocks: transformer blocks per encoder.
        heads: attention heads.
        dropout: dropout rate.
        lr: Adam learning rate.
        weight_decay: decoupled weight decay (AdamW) of the weight matrices and embeddings (not of biases
            and layer norms); 0 (the paper) is plain Adam.
        k: cut-off of the ranking metrics and of the recommendations; names every metric (``val/ndcg_p@k``, ...).
        ks: further cut-offs whose metrics are reported besides ``k``'s (ranking once, to the largest).
        score_block_items: evaluation scores the catalogue this many items at a time (memory bound).
        softmax: ``full`` (the paper) computes the next-item cross-entropies over the whole
            catalogue; ``uniform`` and ``popularity`` over the label and ``num_sampled`` sampled
            items, popularity-sampled with the logQ correction (for large catalogues). The
            contrastive term is unchanged. Evaluation always ranks the full catalogue.
            Not with ``hard_negative_weight``: a sampled softmax's denominator is on another scale.
        num_sampled: candidates per step for a sampled softmax.
        ce_chunk_items: if > 0, the full-softmax losses hold at most ``positions x ce_chunk_items``
            logits at a time (same values; leaner, slower: see benchmarks/README.md).
        negative_scoring: lambda of negative-aware ranking, ``score = z_pos - lambda * z_neg``:
            ``z_neg`` is the negative encoder's logit of the item as the user's next *disliked* one,
            so items like those the user rejected sink. 0 (the paper) ranks with ``z_pos`` alone.
            ``--select_negative_scoring [..]`` picks it on validation; the weight used is the model's
            ``negative_scoring`` buffer, which the checkpoints carry.
        contrast_negatives: ``all`` (the paper and the authors' code) contrasts each next liked
            item with the disliked inputs of the user's training sequence: every disliked item but the
            newest, so a user with one training dislike gets no contrast; ``all_with_last`` with every
            disliked item including the newest; ``earlier`` only with the inputs disliked before it.
        hard_negative_weight: ``w > 0`` counts each of the user's disliked items ``1 + w`` times in
            the CE_pos softmax (hard negatives); 0 (the paper) counts them once, as any other item.
        negative_table_gradient: the share of CE_neg's gradient that reaches the shared item table (1, the paper: all;
            0: CE_neg trains the negative encoder only, and the table learns from the liked side). Needs ``alpha > 0``.
        fusion: ``gated`` adds to the positive encoder's state a gated projection of the negative
            encoder's state (at each position, the one after the last dislike before the label), so
            the user representation itself knows what the user rejected; ``none`` is the paper.
        dislike_demotion: lambda of similar-item demotion at ranking, ``score_j -= lambda * max(0, max_m cos(e_j, e_m))``
            over the user's last ``demotion_window`` disliked items m, cosines of the shared item table (any model).
            0 (the paper) demotes nothing. ``--select_dislike_demotion [..]`` picks it on validation; the weight used
            is the model's ``dislike_demotion`` buffer, which the checkpoints carry.
        polarity_prior: lambda of the item-polarity prior, ``score_j += lambda * log((liked_j + 1) / (events_j + 2))`` over
            the training events (any model): items users often reject sink for everyone. 0 (the paper) adds nothing.
            ``--select_polarity_prior [..]`` picks it on validation; the weight used is the model's ``polarity_prior``
            buffer, and the log-rates its ``item_polarity`` buffer, both in the checkpoints. Validation during the fit
            (the best checkpoint, early stopping) ranks with this value.
        sign_scoring: lambda of ranking with the sign head (``family='signed'``, ``sign_weight > 0``),
            ``score_j += lambda * w . (h * e_j)``: the head's logit that the user likes item j next, a personalised polarity.
            ``--select_sign_scoring [..]`` picks it on validation (the ``sign_scoring`` buffer). 0 ranks without the head.
        demotion_window: R, the newest disliked items that ``dislike_demotion`` reads.
        demotion_decay: gamma in (0, 1]: the r-th newest of those R demotes with weight ``gamma ** r`` (1: all alike), so
            a fresh dislike changes the list more than an old one.
        identical_start: the negative encoder starts from the positive encoder's initial weights, as in the authors'
            code; False (the default) draws them independently. Needs ``alpha > 0``.
        suppression_neighbours: the neighbours of a disliked item whose suppression ``neighbour_suppression@k`` measures:
            ``co_occurrence`` (the data's, by users in common: independent of the model, :mod:`negseq.data.neighbours`)
            or ``item_table`` (the model's own cosines, those ``Recommender.similar_items`` gives); ``--data.neighbours`` of them.
    """

    def __init__(
        self,
        num_items: int,
        num_train_items: int,
        max_len: int = 50,
        family: FamilyName = "sign_separated",
        alpha: float = 0.45,
        beta: float = 0.25,
        temperature: float = 1.0,
        cosine: bool = False,
        unlikelihood_weight: float = 0.0,
        sign_weight: float = 0.0,
        dim: int = 64,
        blocks: int = 2,
        heads: int = 1,
        dropout: float = 0.1,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        k: int = layout.DEFAULT_K,
        ks: list[int] = [],  # noqa: B006 (jsonargparse shows it as the default; never mutated)
        score_block_items: int = 2048,
        softmax: Literal["full", "uniform", "popularity"] = "full",
        num_sampled: int = 1024,
        ce_chunk_items: int = 0,
        negative_scoring: float = 0.0,
        contrast_negatives: Literal["all", "earlier", "all_with_last"] = "all",
        hard_negative_weight: float = 0.0,
        negative_table_gradient: float = 1.0,
        fusion: Literal["none", "gated"] = "none",
        dislike_demotion: float = 0.0,
        polarity_prior: float = 0.0,
        sign_scoring: float = 0.0,
        demotion_window: int = 5,
        demotion_decay: float = 1.0,
        identical_start: bool = False,
        suppression_neighbours: Literal["co_occurrence", "item_table"] = "co_occurrence",
        history: Optional[str] = None,
    ) -> None:
        super().__init__()
        if history is not None:
            warnings.warn(f"`history` is deprecated since 0.4.0: use `family` (history={history!r} is family={families.family(history).name!r})", DeprecationWarning, stacklevel=2)
        family = families.family(history if history is not None else family).name  # a 0.3.0 value under either key: today's name
        self.save_hyperparameters(ignore=["history"])
        hp = self.hparams
        check_arguments(hp)
        self.model = network(hp)
        self.objective = families.family(family).build_objective(hp)
        # item sampling distribution of the popularity-sampled softmax; set from the training data in setup()
        uniform = torch.full((num_items + 1,), 1.0 / num_items)
        uniform[0] = 0.0
        self.register_buffer("sampling_probs", uniform, persistent=False)
        self.cutoffs = layout.cutoffs(k, ks)
        self.metrics = nn.ModuleDict({stage: self._stage_metrics() for stage in layout.STAGES})
        self.responsiveness = nn.ModuleDict({stage: self._responsiveness_metrics() for stage in layout.STAGES})
        self.neighbour_source = None  # the datamodule whose item_neighbours the responsiveness metrics read; set in setup()
        self.popularity: Tensor | None = None  # (N + 1,) liked training events per item, the fallback's; from setup() or a checkpoint
        self.respond_in_validation = False  # the counterfactual dislike in validation too (a responsiveness-aware selection)

    def _stage_metrics(self) -> nn.ModuleDict:
        """One metric set per cutoff, keyed ``hr@k``, ..., ``coverage@k``."""
        metrics = {}
        for c in self.cutoffs:
            metrics.update({f"hr@{c}": HitRate(c), f"ndcg@{c}": NDCG(c), f"mrr@{c}": MRR(c)})
            metrics[f"coverage@{c}"] = Coverage(self.hparams.num_items, self.hparams.num_train_items)
        return nn.ModuleDict(metrics)

    def _responsiveness_metrics(self) -> nn.ModuleDict:
        """``list_change@k`` and ``neighbour_suppression@k`` per cutoff."""
        pairs = (("list_change", ListChange), ("neighbour_suppression", NeighbourSuppression))
        return nn.ModuleDict({f"{name}@{c}": metric(c) for c in self.cutoffs for name, metric in pairs})

    def _responds(self, stage: str) -> bool:
        return stage == "test" or (stage == "val" and self.respond_in_validation)

    # -- training --

    def loss_terms(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """The weighted parts of the training loss by name, and their sum as ``loss``."""
        terms = self.objective(self.model, batch, {**self._sample_candidates(), "chunk_items": self.hparams.ce_chunk_items})
        terms["loss"] = sum(terms.values())
        return terms

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
        if stage in ("test", "validate"):
            self.neighbour_source = datamodule  # its neighbour table is built on first use: only when the model responds
        catalog = getattr(datamodule, "catalog", None)
        if catalog is not None:  # the fallback's scores for users with an empty input, as serving has them (the checkpoint's catalogue)
            self.popularity = catalog.popularity
        if catalog is not None and stage == "fit":  # the prior's log like rates from the training events (later: the checkpoint's)
            self.model.item_polarity.copy_(ranking_weights.item_polarity(catalog.popularity, datamodule.item_counts))

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

    def rank_batch(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """Ranks of the batch's targets in the top ``max(cutoffs)`` (``inf`` beyond) and that top list ``(scores, item ids)``,
        by the one inference path (:func:`negseq.models.inference.rank`: users with an empty input get the popularity fallback)."""
        ranked = self._rank(batch)
        return ranked.ranks, ranked.scores, ranked.items

    def recommend_batch(self, batch: dict[str, Tensor]) -> Tensor:
        """``(B, max(cutoffs))`` item ids of the batch's top lists, best first."""
        return self._rank({name: value for name, value in batch.items() if name != "target"}).items

    def _rank(self, batch: dict[str, Tensor]) -> inference.Ranked:
        return inference.rank(self.model, batch, max(self.cutoffs), self.hparams.family, self.hparams.score_block_items, self.popularity)

    def respond_batch(self, batch: dict[str, Tensor], top_items: Tensor) -> tuple[Tensor, Tensor]:
        """The baseline B (``top_items``' first item excluded as seen, inputs unchanged) and the list L' after a dislike of it."""
        disliked = with_dislike(batch, top_items[:, 0])
        return self.recommend_batch({**batch, "seen": disliked["seen"]}), self.recommend_batch(disliked)

    def _shared_eval_step(self, batch: dict[str, Tensor], stage: str) -> None:
        ranks, _, top_items = self.rank_batch(batch)
        metrics = self.metrics[stage]
        for c in self.cutoffs:
            for name in layout.SIGNED_METRICS:
                metrics[f"{name}@{c}"].update(ranks, batch["target_positive"])
            metrics[f"coverage@{c}"].update(top_items[:, :c])
        if self._responds(stage):
            baseline, counterfactual = self.respond_batch(batch, top_items)
            neighbours = self.neighbours_of(top_items[:, 0])  # (B, m)
            responsiveness = self.responsiveness[stage]
            for c in self.cutoffs:
                responsiveness[f"list_change@{c}"].update(top_items, counterfactual)
                if neighbours is not None:
                    responsiveness[f"neighbour_suppression@{c}"].update(baseline, counterfactual, neighbours)

    def neighbours_of(self, items: Tensor) -> Tensor | None:
        """``(B, m)`` the ``suppression_neighbours`` of ``items`` (B,) (0: none), or None when there are none to measure:
        co-occurrence needs a datamodule that knows the training events (suppression then stays NaN)."""
        m = getattr(self.neighbour_source, "neighbours", ITEM_TABLE_NEIGHBOURS)
        if self.hparams.suppression_neighbours == "item_table":
            neighbours = nearest_items(self.model.items.weight, items, m, self.hparams.score_block_items)[1]
            return neighbours * (items[:, None] > 0)  # an empty slot has no neighbours
        table = getattr(self.neighbour_source, "item_neighbours", None)
        return None if table is None else table(items).to(items.device)

    def _log_stage(self, stage: str) -> None:
        metrics, values = self.metrics[stage], {}
        for c in self.cutoffs:
            for name in layout.SIGNED_METRICS:
                result = metrics[f"{name}@{c}"].compute()
                values[f"{stage}/{name}_p@{c}"] = result["pos"]
                values[f"{stage}/{name}_n@{c}"] = result["neg"]
                if name in layout.DELTA_METRICS:
                    values[f"{stage}/delta_{name}@{c}"] = result["delta"]
            values[f"{stage}/coverage@{c}"] = metrics[f"coverage@{c}"].compute()
        if self._responds(stage):
            values.update({f"{stage}/{name}": metric.compute() for name, metric in self.responsiveness[stage].items()})
            for metric in self.responsiveness[stage].values():
                metric.reset()
        self.log_dict(values, prog_bar=False)
        # compute() syncs states only for its result: the counts held here are this process's, so sum them over processes
        counted = metrics[f"hr@{self.hparams.k}"]
        self.log_dict({f"{stage}/n_users_pos": counted.n_pos, f"{stage}/n_users_neg": counted.n_neg}, prog_bar=False, sync_dist=True, reduce_fx="sum")
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
        """Each user's top-k (encoded ids, best first) and their held-out target's rank in it (``inf`` when absent)."""
        ranks, scores, items = self.rank_batch(batch)
        k = self.hparams.k
        inside = ranks <= k
        return {
            "user": batch["user"], "items": items[:, :k], "scores": scores[:, :k],
            "target": batch["target"], "target_positive": batch["target_positive"], "rank": torch.where(inside, ranks, torch.inf),
        }

    # -- checkpoints --

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        upgrade(checkpoint)
        weights = checkpoint.get("state_dict", {})
        if STATE_KEY in checkpoint:  # the catalogue's popularity: a loaded module (a notebook's too) falls back as serving does
            self.popularity = checkpoint[STATE_KEY]["popularity"]
        saved = dict(checkpoint.get("hyper_parameters", {}))
        # sizes from the weights themselves: load_from_checkpoint(..., num_items=...) overwrites the saved hyper-parameters
        if "model.items.weight" in weights:
            saved["num_items"], saved["dim"] = weights["model.items.weight"].shape[0] - 1, weights["model.items.weight"].shape[1]
        if "model.encoder.positions.weight" in weights:
            saved["max_len"] = weights["model.encoder.positions.weight"].shape[0]
        differs = architecture_differences(saved, self.hparams)
        if differs:
            trained = ", ".join(f"{name}={saved[name]}" for name in differs)
            here = ", ".join(f"{name}={self.hparams[name]}" for name in differs)
            raise ConfigError(
                f"checkpoint was trained with {trained} but this run has {here}: "
                "use the same data, filters and model settings as the run that wrote it"
            )

    def configure_optimizers(self) -> torch.optim.Optimizer:
        hp = self.hparams
        if not hp.weight_decay:
            return torch.optim.Adam(self.parameters(), lr=hp.lr)
        decayed = [p for p in self.parameters() if p.dim() > 1]
        kept = [p for p in self.parameters() if p.dim() <= 1]
        return torch.optim.AdamW([{"params": decayed, "weight_decay": hp.weight_decay}, {"params": kept, "weight_decay": 0.0}], lr=hp.lr)


# NegSeqModule's arguments that have a default, by name: what a ``model:`` section that leaves the key out gets
DEFAULTS = {name: parameter.default for name, parameter in inspect.signature(NegSeqModule).parameters.items() if parameter.default is not inspect.Parameter.empty}
# the allowed values of each argument annotated with a Literal, declared once by the annotation (the CLI's choices too);
# ``family`` is the family registry's to check, which also knows a family registered after this module
CHOICES = {name: get_args(hint) for name, hint in get_type_hints(NegSeqModule.__init__).items() if get_origin(hint) is Literal and name != "family"}
