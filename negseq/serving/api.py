"""Recommendations from a trained model in the training log's original ids: for one history, many, or every user of a log.

A checkpoint is all :class:`Recommender` needs: the weights, the ranking weights chosen on validation (the model's
buffers, :mod:`negseq.models.ranking_weights`) and the item catalogue (:mod:`negseq.data.catalog`: ids, popularity, titles,
how the log was read). Logs are read, validated and signed by the data layer with the training run's settings; each
history (nothing held out) becomes the tensors evaluation reads (:class:`EvalSequences`, whose target is the padding
id 0: none), and :func:`negseq.models.inference.rank` ranks them as the fit's test did: the same history gives the same list.

A user with an empty model input (no known liked item for a model that reads liked items, no known event for the others: an
"unknown user") gets, with ``on_unknown_user="popular"``, the items most often liked in training (score = that count),
seen items excluded, flagged in the ``fallback`` column; ``"skip"`` leaves them out, ``"error"`` refuses them.
"""

from __future__ import annotations

import json
import logging
import tempfile
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Optional

import numpy as np
import polars as pl
import torch

from negseq.data import ids
from negseq.data.catalog import STATE_KEY, Catalog
from negseq.data.reading import FRAME, as_polars, read_events
from negseq.data.sequences import EvalSequences
from negseq.errors import ConfigError, DataError
from negseq.models import families, inference
from negseq.models.ranking import nearest_items
from negseq.models.recommender import SequentialRecommender
from negseq.serving.histories import History, Id, histories_frame, item_series
from negseq.training import checkpoints
from negseq.training.module import NegSeqModule

log = logging.getLogger("negseq")

RECOMMENDATION_COLUMNS = ("user_id", "item_id", "rank", "score", "fallback")
PRECISIONS = ("fp32", "bf16")  # of the encoder (:class:`Recommender`)
UNKNOWN_USERS = ("popular", "skip", "error")  # what recommend calls do with a user whose model input is empty
FIT_LOG = "log.parquet"  # a frame handed to :meth:`Recommender.fit`, written into its run directory


class Recommender:
    """A trained model with its catalogue: top-k in original ids for any history, many histories, or every user of a log.

    Every recommend call takes ``items_allowed`` (only these items are candidates; an unknown one is an error) and
    ``items_blocked`` (never these; unknown ones are ignored), ``exclude_seen`` and ``on_unknown_user``
    (:data:`UNKNOWN_USERS`).

    Args:
        model: the trained network (eval mode), on the device to score on.
        catalog: the item vocabulary, popularity and reading settings of its training log.
        family: the model's family, which says what it reads (:func:`negseq.models.inference.model_input`):
            ``sign_separated`` (liked items; disliked ones feed its negative encoder when it has one), ``whole_history``
            (the whole mixed history), ``signed``, ``positives_unlikelihood`` (liked items).
        block_items: scores held at a time per user of a batch (memory: ``users x block_items`` scores).
        precision: ``fp32``, or ``bf16`` to run the encoder under bf16 autocast: faster on a CPU with bf16 instructions
            (1.2x here), but its user vectors differ from fp32's in the last bits, so a near-tie in the top-k can swap
            (benchmarks/README.md "Serving" measures how often). The catalogue's top-k for a user vector is exact either way.
        history: deprecated since 0.4.0, the family's old name (``positives``, ``all``, ``signed``).
    """

    def __init__(
        self, model: SequentialRecommender, catalog: Catalog, family: str = "sign_separated", block_items: int = 2048, precision: str = "fp32",
        history: Optional[str] = None,
    ) -> None:
        if precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
        if history is not None:
            warnings.warn("Recommender(history=...) is deprecated since 0.4.0: use family=...", DeprecationWarning, stacklevel=2)
        self.model = model.eval()
        self.catalog = catalog
        self.family = families.family(history if history is not None else family).name
        self.block_items = block_items
        self.precision = precision
        self.run_dir: Optional[Path] = None  # the run directory of :meth:`fit` or :meth:`load`

    @property
    def history(self) -> str:
        """Deprecated since 0.4.0: the model's :attr:`family`."""
        warnings.warn("Recommender.history is deprecated since 0.4.0: use Recommender.family", DeprecationWarning, stacklevel=2)
        return self.family

    @classmethod
    def load(cls, source: str | Path, map_location: Any = None, precision: str = "fp32") -> "Recommender":
        """From a run directory or a ``.ckpt`` file; ``map_location`` (default CPU) is the device to score on."""
        checkpoint = checkpoints.read(source, map_location or "cpu")
        if STATE_KEY not in checkpoint:
            raise ConfigError(f"{checkpoints.checkpoint_path(source)}: the checkpoint holds no item catalogue (written by an older negseq); refit the run to serve it")
        model, hp = checkpoints.load_network(checkpoint)
        device = next(iter(checkpoint["state_dict"].values())).device
        recommender = cls(model.to(device), Catalog.from_state(checkpoint[STATE_KEY]), hp["family"], hp["score_block_items"], precision)
        recommender.run_dir = Path(source) if Path(source).is_dir() else None
        return recommender

    @classmethod
    def from_module(cls, module: NegSeqModule, datamodule, precision: str = "fp32") -> "Recommender":
        """From a NegSeqModule in memory and the FeedbackDataModule it was trained on (its catalogue); the module's
        network is served as it is (put in eval mode), no checkpoint needed."""
        return cls(module.model, datamodule.catalog, module.hparams.family, module.hparams.score_block_items, precision)

    @classmethod
    def fit(
        cls, log: "str | Path | pl.DataFrame | pl.LazyFrame", config: "str | Path | Sequence[str | Path] | None" = None,
        run_dir: "str | Path | None" = None, overrides: Optional[dict[str, Any]] = None, precision: str = "fp32",
    ) -> "Recommender":
        """Fit as ``negseq fit`` does (choose on validation, test, write the run's files) and serve the result.

        Args:
            log: a log file (any ``--data.path``), or a polars or pandas frame with the columns of a Parquet log (``user_id,
                item_id, rating, timestamp``, or those the config or ``overrides`` name), written to ``RUN/log.parquet``.
            config: one YAML file or a list, composed in order as ``--config A --config B`` composes them.
            run_dir: where the run's files go; default a new temporary directory (``.run_dir`` of the result).
            overrides: dotted keys and values, as the command line's flags: ``{"model.alpha": 0.45, "trainer.max_epochs": 20}``.
        """
        from negseq.training.cli import fit  # the training CLI: loaded only to train

        run_dir = Path(run_dir) if run_dir is not None else Path(tempfile.mkdtemp(prefix="negseq-fit-"))
        configs = [] if config is None else [config] if isinstance(config, (str, Path)) else list(config)
        log = as_polars(log)
        if isinstance(log, (pl.DataFrame, pl.LazyFrame)):
            run_dir.mkdir(parents=True, exist_ok=True)
            log.lazy().sink_parquet(run_dir / FIT_LOG)
            log = run_dir / FIT_LOG
        elif not isinstance(log, (str, Path)):
            raise DataError(f"Recommender.fit: log must be a file path or a polars or pandas frame, got {type(log).__name__}")
        args = [arg for path in configs for arg in ("--config", str(path))] + ["--data.path", str(log)]
        for key, value in (overrides or {}).items():
            args += [f"--{key}", value if isinstance(value, str) else json.dumps(value)]
        try:
            fit([*args, "--run_dir", str(run_dir)])
        except SystemExit as stopped:  # the command line's parser refused an argument (its message is printed above)
            raise ConfigError(f"Recommender.fit: the configuration was refused (exit {stopped.code}; the parser's message is above): {args}") from None
        return cls.load(run_dir, precision=precision)

    @property
    def device(self) -> torch.device:
        return self.model.items.weight.device

    # -- one history --

    def recommend(
        self,
        liked: Sequence[Id] = (),
        disliked: Sequence[Id] = (),
        k: int = 10,
        exclude_seen: bool = True,
        history: Optional[History] = None,
        items_allowed: Optional[Iterable[Id]] = None,
        items_blocked: Optional[Iterable[Id]] = None,
        on_unknown_user: str = "popular",
    ) -> pl.DataFrame:
        """``item_id, score, rank, fallback`` (best first) for one user's history, in original ids.

        ``liked`` and ``disliked`` are in time order, oldest first. A ``family="whole_history"`` or ``"signed"`` model reads
        one mixed sequence, so their interleaving matters: pass ``history=[(item, liked), ...]`` in time order (it
        replaces ``liked``/``disliked``); without it the disliked items are taken as older than the liked ones.
        Unknown items are ignored (and counted in the log); a history the model reads nothing of is an unknown user.
        """
        if history is None:
            for name, items in (("liked", liked), ("disliked", disliked)):
                if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
                    raise DataError(f"recommend: {name} must be a list of item ids, got {type(items).__name__}")
            history = [(item, False) for item in disliked] + [(item, True) for item in liked]
        frame = self.recommend_many([history], k, exclude_seen, items_allowed, items_blocked, on_unknown_user, name="recommend")
        return frame.select("item_id", "score", "rank", "fallback")

    def score(self, history: History, items: Sequence[Id]) -> pl.DataFrame:
        """``item_id, score, fallback``: the model's scores of the candidate ``items`` (in their order, seen or not) for one
        history: the scores :meth:`recommend` ranks by, e.g. to re-rank a first stage's candidates. An unknown user's
        scores are the items' popularity (``fallback`` true); an unknown item is an error."""
        events, _ = histories_frame([history], self.catalog.item_ids.dtype, "score")
        codes = self._codes(items, "score: items")
        batch = self._batch(self._known(events, "score", require_known=False)[0], 1)
        with torch.inference_mode(), torch.autocast(self.device.type, torch.bfloat16, enabled=self.precision == "bf16"):
            scores, fallback = inference.score_items(self.model, batch, codes.to(self.device)[None], self.family, self.catalog.popularity)
        return pl.DataFrame({
            "item_id": self.catalog.item_ids.gather(pl.Series(codes.numpy() - 1)),
            "score": scores[0].float().cpu().numpy(),
            "fallback": np.repeat(bool(fallback[0]), len(codes)),
        })

    def similar_items(self, item_ids: Sequence[Id], k: int = 10) -> pl.DataFrame:
        """``item_id, similar_item_id, rank, score``: each item's ``k`` nearest items by the cosine of the shared item
        table (the item itself left out; exact scores, ties by the smaller code, as every ranking here): the neighbours
        whose suppression ``--model.suppression_neighbours item_table`` measures."""
        _check_positive(k=k)
        codes = self._codes(item_ids, "similar_items")
        with torch.inference_mode():
            scores, similar = nearest_items(self.model.items.weight, codes.to(self.device), k, self.block_items)
        keep = (similar > 0).flatten().cpu()
        width = similar.shape[1]
        return pl.DataFrame({
            "item_id": self.catalog.item_ids.gather(pl.Series((codes.repeat_interleave(width)[keep] - 1).numpy())),
            "similar_item_id": self.catalog.item_ids.gather(pl.Series((similar.flatten().cpu()[keep] - 1).numpy())),
            "rank": torch.arange(1, width + 1).repeat(len(codes))[keep].numpy().astype(np.int32),
            "score": scores.flatten().cpu()[keep].numpy(),
        })

    # -- many histories --

    def recommend_many(
        self,
        histories: "Sequence[History] | pl.DataFrame",
        k: int = 10,
        exclude_seen: bool = True,
        items_allowed: Optional[Iterable[Id]] = None,
        items_blocked: Optional[Iterable[Id]] = None,
        on_unknown_user: str = "popular",
        name: str = "recommend_many",
    ) -> pl.DataFrame:
        """``user_id, item_id, rank, score, fallback`` for many histories in one batched call.

        ``histories``: a list of ``[(item, liked), ...]`` lists in time order (``user_id`` is the list position), or a
        polars (or pandas) frame ``user_id, item_id, liked`` in time order per user (users in order of first appearance).
        """
        _check_positive(k=k)
        events, user_ids = histories_frame(histories, self.catalog.item_ids.dtype, name)
        events, _ = self._known(events, name, require_known=False)
        return self._recommend(events, user_ids, k, exclude_seen, items_allowed, items_blocked, on_unknown_user, name)

    # -- every user of a log --

    def recommend_log(self, source: str | Path | pl.DataFrame, k: int = 20, **options: Any) -> pl.DataFrame:
        """``user_id, item_id, rank, score, fallback`` for every user of a log from their whole history (options: :meth:`iter_log`)."""
        return pl.concat(list(self.iter_log(source, k, **options)))

    def iter_log(
        self,
        source: str | Path | pl.DataFrame,
        k: int = 20,
        exclude_seen: bool = True,
        users: Optional[Iterable[Id]] = None,
        known_only: bool = False,
        batch_size: int = 4096,
        progress: bool = False,
        items_allowed: Optional[Iterable[Id]] = None,
        items_blocked: Optional[Iterable[Id]] = None,
        on_unknown_user: str = "popular",
        **reading: Any,
    ) -> Iterator[pl.DataFrame]:
        """:meth:`recommend_log` in frames of ``batch_size`` users (at least one frame), so that memory stays bounded by the batch.

        Args:
            source: a log file (read as the training log was: same format detection, columns and
                threshold, each overridable in ``reading``) or a polars (or pandas) frame with the training log's columns.
            users: only these user ids (absent ones are counted in the log).
            known_only: leave out users with no item the model knows (else they are unknown users).
            progress: show a progress bar over the batches.
            reading: ``format``, ``user_col``, ``item_col``, ``feedback_col``, ``time_col``, ``threshold``.
        """
        _check_positive(k=k, batch_size=batch_size)
        _check_choice(on_unknown_user)
        candidates = self._candidates(items_allowed, items_blocked)
        events, name = self._read(source, reading)
        events, user_ids = self._users_to_serve(events, name, users, known_only, on_unknown_user)
        if user_ids.len() == 0:
            yield self._decode(pl.DataFrame(schema=_CODES_SCHEMA), user_ids)
            return
        for first, chunk in _user_batches(events, user_ids.len(), batch_size, progress):
            batch_ids = user_ids.slice(first, min(batch_size, user_ids.len() - first))
            yield self._recommend(chunk, batch_ids, k, exclude_seen, *candidates, on_unknown_user, name, checked=True)

    def _users_to_serve(
        self, events: pl.DataFrame, name: str, users: Optional[Iterable[Id]], known_only: bool, on_unknown_user: str
    ) -> tuple[pl.DataFrame, pl.Series]:
        """The events of the users asked for (all: None), each with its ``user_code`` (0, 1, ... in log order), and the
        users' ids; with ``known_only``, only the users with an item the model knows."""
        if users is not None:
            wanted = pl.Series(list(users)).cast(events["user"].dtype, strict=False)
            events = events.filter(pl.col("user").is_in(wanted.implode()))
            absent = wanted.len() - events["user"].n_unique()
            if absent:
                log.warning("%s: %d of the %d requested users are not in the log", name, absent, wanted.len())
        events = events.with_columns(user_code=pl.col("user").rle_id().cast(pl.Int64))  # events come grouped by user (event order)
        user_ids = events["user"].unique(maintain_order=True).alias("user_id")
        events, n_known_users = self._known(events, name, require_known=True)
        if known_only:
            user_ids = events["user"].unique(maintain_order=True).alias("user_id")
            events = events.with_columns(user_code=pl.col("user").rle_id().cast(pl.Int64))
        elif n_known_users < user_ids.len():
            log.info("%s: %d users have no item the model knows: unknown users (%s)", name, user_ids.len() - n_known_users, on_unknown_user)
        return events, user_ids

    def _read(self, source: str | Path | pl.DataFrame, reading: dict) -> tuple[pl.DataFrame, str]:
        """Signed events (``user``, ``item``, ``positive``, in event order) read with the training log's settings.

        Read by the data layer's one reader (:func:`negseq.data.reading.read_events`: the same checks,
        messages and sign as training): only the used columns are read and compact codes held. A frame
        is read as the training log's format (Zvuk plays summed per session) with its column names.
        """
        unknown = set(reading) - set(self.catalog.reading)
        if unknown:
            raise ConfigError(f"unknown reading options {sorted(unknown)}; expected some of {sorted(self.catalog.reading)}")
        settings = {**self.catalog.reading, **{key: value for key, value in reading.items() if value is not None}}
        source = as_polars(source)
        if isinstance(source, (pl.DataFrame, pl.LazyFrame)):
            names = {f"{role}_col": settings.get(f"{role}_col") or self.catalog.columns[role] for role in ("user", "item", "feedback", "time")}
            settings = {**settings, **names, "format": self.catalog.log_format, "has_header": True, "separator": None}
        events = read_events(source, **settings, require_positive=False)
        return events.decoded().select("user", "item", "positive"), FRAME if isinstance(source, (pl.DataFrame, pl.LazyFrame)) else str(source)

    def _known(self, events: pl.DataFrame, name: str, require_known: bool) -> tuple[pl.DataFrame, int]:
        """``events`` with item codes, unknown items dropped (counted in the log), and the number of users with a known item."""
        codes = self.catalog.codes(events["item"], name)
        known = codes.is_not_null()
        n_unknown = events.height - int(known.sum())
        if n_unknown:
            unknown_items = events.filter(~known)["item"]
            log.warning("%s: ignored %d events of %d items the model does not know", name, n_unknown, unknown_items.n_unique())
            if require_known and n_unknown == events.height:
                raise DataError(
                    f"{name}: none of its {unknown_items.n_unique()} items is known to the model (e.g. {unknown_items[0]!r}; the model's "
                    f"ids are like {self.catalog.item_ids[0]!r}); expected a log with the training log's item ids"
                )
        events = events.with_columns(item=codes).filter(known)
        return events, events["user"].n_unique()

    # -- ranking encoded histories --

    def _codes(self, values: Iterable[Id], name: str) -> torch.Tensor:
        """``(C,)`` codes of item ids that must all be known (an unknown one is a DataError naming it)."""
        ids = item_series(values, self.catalog.item_ids.dtype, name)
        codes = self.catalog.codes(ids, name)
        if codes.null_count():
            unknown = ids.filter(codes.is_null())
            raise DataError(
                f"{name}: {unknown.len()} of the {ids.len()} items are not known to the model (e.g. {unknown[0]!r}; its ids are like "
                f"{self.catalog.item_ids[0]!r}); expected items of the training log"
            )
        return torch.from_numpy(codes.to_numpy().astype(np.int64))

    def _candidates(self, allowed: Optional[Iterable[Id]], blocked: Optional[Iterable[Id]]) -> tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
        """Sorted distinct codes of ``items_allowed`` (all known, at least one) and the known codes of ``items_blocked``."""
        allowed_codes = blocked_codes = None
        if allowed is not None:
            allowed_codes = self._codes(allowed, "items_allowed").unique()  # sorted
            if not len(allowed_codes):
                raise DataError("items_allowed is empty: no item could be recommended; pass None to allow every item")
        if blocked is not None:
            ids = item_series(blocked, self.catalog.item_ids.dtype, "items_blocked")
            codes = self.catalog.codes(ids, "items_blocked")
            if codes.null_count():
                log.info("items_blocked: %d of its %d items are not known to the model (never recommended anyway)", codes.null_count(), ids.len())
            blocked_codes = torch.from_numpy(codes.drop_nulls().unique().to_numpy().astype(np.int64))
        return allowed_codes, blocked_codes

    def _recommend(
        self, events: pl.DataFrame, user_ids: pl.Series, k: int, exclude_seen: bool, allowed: Any, blocked: Any, on_unknown_user: str, name: str,
        checked: bool = False,
    ) -> pl.DataFrame:
        """Recommendations of encoded ``events`` (``user`` 0..U-1 rows of ``user_ids``, ``item`` codes), unknown users
        handled as ``on_unknown_user`` says; ``allowed``/``blocked`` as given (ids) or, when ``checked``, codes."""
        if not checked:
            _check_choice(on_unknown_user)
            allowed, blocked = self._candidates(allowed, blocked)
        ranked = self._rank_codes(events, user_ids.len(), k, exclude_seen, allowed, blocked)
        if on_unknown_user != "popular" and ranked["fallback"].any():
            unknown = user_ids.gather(ranked.filter("fallback")["user"].unique(maintain_order=True))
            if on_unknown_user == "error":
                raise DataError(
                    f"{name}: {unknown.len()} users have nothing the model reads (e.g. user {unknown[0]!r}: no known "
                    f"{families.family(self.family).nothing_to_read}); on_unknown_user='error' (use 'popular' or 'skip')"
                )
            ranked = ranked.filter(~pl.col("fallback"))
        return self._decode(ranked, user_ids)

    def _batch(self, events: pl.DataFrame, n_users: int) -> dict[str, torch.Tensor]:
        """The evaluation batch of users 0..n_users-1 from encoded events, their whole history as input (target: none)."""
        no_target = pl.DataFrame({"user": pl.int_range(n_users, eager=True, dtype=pl.Int64), "item": 0, "positive": True, "is_target": True})
        events = events.select("user", "item", "positive").with_columns(is_target=pl.lit(False))
        sequences = EvalSequences.from_events(pl.concat([events, no_target], how="vertical_relaxed"), self.catalog.max_len)
        batch = sequences.take(torch.arange(n_users))
        return {name: value.to(self.device) for name, value in batch.items() if name not in ("target", "target_positive")}

    @torch.inference_mode()
    def _rank_codes(self, events: pl.DataFrame, n_users: int, k: int, exclude_seen: bool, allowed: Any, blocked: Any) -> pl.DataFrame:
        """Top-k of users 0..n_users-1 from their encoded events (``user``, ``item`` codes, ``positive``, in time order):
        ``user, code, rank, score, fallback``; slots without a recommendable item are left out."""
        batch = self._batch(events, n_users)
        ranked = inference.rank_on_threads(
            self.model, batch, k, self.family, self.block_items, self.precision,
            popularity=self.catalog.popularity, exclude_seen=exclude_seen, allowed=allowed, blocked=blocked,
        )
        width = ranked.items.shape[1]
        ranks = torch.arange(1, width + 1).expand(n_users, width)
        keep = (ranked.items > 0).flatten().cpu()
        return pl.DataFrame({
            "user": torch.arange(n_users).repeat_interleave(width)[keep].numpy(),
            "code": ranked.items.flatten().cpu()[keep].numpy(),
            "rank": ranks.flatten()[keep].numpy().astype(np.int32),
            "score": ranked.scores.flatten().cpu()[keep].numpy().astype(np.float32),
            "fallback": ranked.fallback.repeat_interleave(width).cpu()[keep].numpy(),
        }, schema=_CODES_SCHEMA)

    def _decode(self, frame: pl.DataFrame, user_ids: pl.Series) -> pl.DataFrame:
        """Chunk-local user rows and item codes back to original ids."""
        return frame.select(
            user_id=ids.decode(frame["user"], user_ids),
            item_id=ids.decode(frame["code"], self.catalog.item_ids, 1),
            rank="rank", score="score", fallback="fallback",
        )


def _user_batches(events: pl.DataFrame, n_users: int, batch_size: int, progress: bool) -> Iterator[tuple[int, pl.DataFrame]]:
    """``(first user code, its batch's events with ``user`` 0-based in the batch)`` for each ``batch_size`` users."""
    codes = events["user_code"].to_numpy()
    starts = range(0, n_users, batch_size)
    if progress:
        # imported here: with rich.console loaded, jsonargparse (4.53) parses an int | float flag such as
        # --data.sample_users 150 as 150.0, which Recommender.fit's command line would then refuse
        from rich.progress import track
    for first in track(starts, description=f"recommending for {n_users} users", transient=True) if progress else starts:
        start, stop = np.searchsorted(codes, [first, min(first + batch_size, n_users)])
        yield first, events.slice(int(start), int(stop - start)).with_columns(user=pl.col("user_code") - first)


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if value < 1:
            raise ConfigError(f"{name} must be at least 1, got {value}")


def _check_choice(on_unknown_user: str) -> None:
    if on_unknown_user not in UNKNOWN_USERS:
        raise ConfigError(f"on_unknown_user must be one of {list(UNKNOWN_USERS)}, got {on_unknown_user!r}")


_CODES_SCHEMA = {"user": pl.Int64, "code": pl.Int64, "rank": pl.Int32, "score": pl.Float32, "fallback": pl.Boolean}
