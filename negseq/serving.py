"""Recommendations from a saved model in the training log's original ids: for one history, or for every user of a log.

A checkpoint is all :class:`Recommender` needs: the weights, the negative-scoring weight chosen
on validation (the model's ``negative_scoring`` buffer) and the item catalogue
(:mod:`negseq.data.catalog`: ids, popularity, titles, how the log was read). Logs are read,
validated and signed by the data layer with the training run's settings; each user's whole
history (nothing held out) becomes the tensors evaluation reads (:class:`EvalSequences`, whose
target is the padding id 0: none), and :mod:`negseq.ranking` ranks the catalogue block by block
with exact top-k keys, as the fit's test did.

A user with no known liked item gets the fallback: the items most often liked in training
(score = that count), seen items excluded, flagged in the ``fallback`` column.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import polars as pl
import torch
from rich.progress import track

from negseq import layout
from negseq.data.catalog import STATE_KEY, Catalog
from negseq.data.reading import FRAME, read_events
from negseq.data.sequences import EvalSequences
from negseq.errors import ConfigError, DataError
from negseq.models.recommender import SequentialRecommender, model_input
from negseq.module import NegSeqModule
from negseq.ranking import top_k

log = logging.getLogger("negseq")

Id = Union[int, str]  # an original user or item id
RECOMMENDATION_COLUMNS = ("user_id", "item_id", "rank", "score", "fallback")
PRECISIONS = ("fp32", "bf16")  # of the encoder (:class:`Recommender`)
# users encoded and scored at a time on a CPU: their activations (256 x 50 x 64 fp32, 3 MB a tensor) stay in the cache,
# which made the encoder 2.5x faster than a whole batch of 4,096 (benchmarks/README.md "Serving")
CPU_CHUNK_USERS = 256


def checkpoint_path(source: str | Path) -> Path:
    """The checkpoint of a run directory (``checkpoints/best.ckpt``: the one the fit tested with, or the last epoch's
    after ``--data.split none``), or ``source`` itself when it is a file."""
    path = Path(source)
    if path.is_file():
        return path
    best = path / layout.CHECKPOINT_DIR / layout.BEST_CHECKPOINT
    if not best.is_file():
        raise ConfigError(f"{path}: no {layout.CHECKPOINT_DIR}/{layout.BEST_CHECKPOINT}; expected the directory of a finished fit or a .ckpt file")
    return best


class Recommender:
    """A trained model with its catalogue: top-k in original ids for any history, or for every user of a log.

    Args:
        model: the trained network (eval mode), on the device to score on.
        catalog: the item vocabulary, popularity and reading settings of its training log.
        history: ``positives`` (the model reads liked items; disliked ones feed its negative
            encoder when it has one) or ``all`` (the whole mixed history, in time order).
        block_items: scores held at a time per user of a batch (memory: ``users x block_items`` scores).
        precision: ``fp32``, or ``bf16`` to run the encoder under bf16 autocast: faster on a CPU with bf16 instructions
            (1.2x here), but its user vectors differ from fp32's in the last bits, so a near-tie in the top-k can swap
            (benchmarks/README.md "Serving" measures how often). The catalogue's top-k for a user vector is exact either way.
    """

    def __init__(
        self, model: SequentialRecommender, catalog: Catalog, history: str = "positives", block_items: int = 2048, precision: str = "fp32"
    ) -> None:
        if precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
        self.model = model.eval()
        self.catalog = catalog
        self.history = history
        self.block_items = block_items
        self.precision = precision

    @classmethod
    def load(cls, source: str | Path, map_location: Any = None, precision: str = "fp32") -> "Recommender":
        """From a run directory or a ``.ckpt`` file; ``map_location`` (default CPU) is the device to score on."""
        path = checkpoint_path(source)
        checkpoint = torch.load(path, map_location=map_location or "cpu", weights_only=True)
        if STATE_KEY not in checkpoint:
            raise ConfigError(f"{path}: the checkpoint holds no item catalogue (written by an older negseq); refit the run to serve it")
        accepted = inspect.signature(NegSeqModule).parameters
        module = NegSeqModule(**{name: value for name, value in checkpoint["hyper_parameters"].items() if name in accepted})
        module.on_load_checkpoint(checkpoint)
        module.load_state_dict(checkpoint["state_dict"])
        device = next(iter(checkpoint["state_dict"].values())).device
        return cls(module.model.to(device), Catalog.from_state(checkpoint[STATE_KEY]), module.hparams.history, module.hparams.score_block_items, precision)

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
        history: Optional[Sequence[tuple[Id, bool]]] = None,
    ) -> pl.DataFrame:
        """``item_id, score, rank`` (best first) for one user's history, in original ids.

        ``liked`` and ``disliked`` are in time order, oldest first. A ``history="all"`` model reads
        one mixed sequence, so their interleaving matters: pass ``history=[(item, liked), ...]`` in
        time order (it replaces ``liked``/``disliked``); without it the disliked items are taken as
        older than the liked ones. Unknown items are ignored (and counted in the log); with no
        known liked item the result is the popularity fallback.
        """
        _check_positive(k=k)
        if history is None:
            history = [(item, False) for item in disliked] + [(item, True) for item in liked]
        items = [item for item, _ in history]
        try:
            ids = pl.Series("item", items, dtype=None if items else self.catalog.item_ids.dtype, strict=True)
        except (TypeError, pl.exceptions.PolarsError) as error:
            raise DataError(f"recommend: item ids must all be integers or all strings, as the model's ({self.catalog.item_ids.dtype}): {error}") from None
        raw = pl.DataFrame({"user": pl.Series([0] * len(items), dtype=pl.Int64), "item": ids, "positive": [bool(sign) for _, sign in history]})
        events, _ = self._known(raw, "recommend", require_known=False)
        frame = self._recommend_codes(events.with_columns(user=pl.lit(0, dtype=pl.Int64)), 1, k, exclude_seen)
        return self._decode(frame, pl.Series("user_id", [0])).select("item_id", "score", "rank")

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
        **reading: Any,
    ) -> Iterator[pl.DataFrame]:
        """:meth:`recommend_log` in frames of ``batch_size`` users (at least one frame), so that memory stays bounded by the batch.

        Args:
            source: a log file (read as the training log was: same format detection, columns and
                threshold, each overridable in ``reading``) or a polars frame with the training log's columns.
            users: only these user ids (absent ones are counted in the log).
            known_only: leave out users with no item the model knows (else they get the fallback).
            progress: show a progress bar over the batches.
            reading: ``format``, ``user_col``, ``item_col``, ``feedback_col``, ``time_col``, ``threshold``.
        """
        _check_positive(k=k, batch_size=batch_size)
        events, name = self._read(source, reading)
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
            log.info("%s: %d users have no item the model knows: popularity fallback", name, user_ids.len() - n_known_users)
        if user_ids.len() == 0:
            yield self._decode(pl.DataFrame(schema=_CODES_SCHEMA), user_ids)
            return
        codes = events["user_code"].to_numpy()
        starts = range(0, user_ids.len(), batch_size)
        for first in track(starts, description=f"recommending for {user_ids.len()} users", transient=True) if progress else starts:
            last = min(first + batch_size, user_ids.len())
            start, stop = np.searchsorted(codes, [first, last])
            chunk = events.slice(int(start), int(stop - start)).with_columns(user=pl.col("user_code") - first)
            yield self._decode(self._recommend_codes(chunk, last - first, k, exclude_seen), user_ids.slice(first, last - first))

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

    @torch.inference_mode()
    def _recommend_codes(self, events: pl.DataFrame, n_users: int, k: int, exclude_seen: bool) -> pl.DataFrame:
        """Top-k of users 0..n_users-1 from their encoded events (``user``, ``item`` codes, ``positive``, in time order):
        ``user, code, rank, score, fallback``; slots without a recommendable item are left out."""
        no_target = pl.DataFrame({"user": pl.int_range(n_users, eager=True, dtype=pl.Int64), "item": 0, "positive": True, "is_target": True})
        events = events.select("user", "item", "positive").with_columns(is_target=pl.lit(False))
        sequences = EvalSequences.from_events(pl.concat([events, no_target], how="vertical_relaxed"), self.catalog.max_len)
        batch = {name: value.to(self.device) for name, value in sequences.take(torch.arange(n_users)).items()}
        inputs = model_input(batch, self.history)  # (B, L)
        seen = batch["seen"] if exclude_seen else torch.zeros(n_users, 1, dtype=torch.long, device=self.device)  # (B, S)
        fallback = batch["positives"][:, -1] == 0  # (B,) no known liked item
        width = min(k, self.catalog.num_items + 1)
        scores = torch.full((n_users, width), float("-inf"), device=self.device)  # (B, k)
        codes = torch.zeros(n_users, width, dtype=torch.long, device=self.device)  # (B, k)
        ranked = (~fallback).nonzero()[:, 0]  # (B_m,) users the model ranks
        chunk, workers = (CPU_CHUNK_USERS, torch.get_num_threads()) if self.device.type == "cpu" else (n_users, 1)
        budget = n_users * self.block_items // workers  # scores each worker may hold at a time

        def rank(rows: torch.Tensor) -> None:  # (b,) users, ranked by one worker (inference mode and autocast are per thread)
            with torch.inference_mode(), torch.autocast(self.device.type, torch.bfloat16, enabled=self.precision == "bf16"):
                scores[rows], codes[rows] = self.model.recommend(inputs[rows], seen[rows], k, batch["negatives"][rows], budget // len(rows))

        with _one_thread_each(workers), ThreadPoolExecutor(workers) as pool:
            list(pool.map(rank, [ranked[first : first + chunk] for first in range(0, len(ranked), chunk)]))
        if fallback.any():
            popularity = self.catalog.popularity.to(self.device)[:, None]  # (N + 1, 1): a one-dimensional "item table"
            ones = torch.ones(int(fallback.sum()), 1, device=self.device)  # (B_f, 1)
            scores[fallback], codes[fallback] = top_k(ones, popularity, seen[fallback], k, self.block_items)
        ranks = torch.arange(1, width + 1, device=self.device).expand(n_users, width)
        keep = (codes > 0).flatten().cpu()
        return pl.DataFrame({
            "user": torch.arange(n_users).repeat_interleave(width)[keep].numpy(),
            "code": codes.flatten().cpu()[keep].numpy(),
            "rank": ranks.flatten().cpu()[keep].numpy().astype(np.int32),
            "score": scores.flatten().cpu()[keep].numpy().astype(np.float32),
            "fallback": fallback.repeat_interleave(width).cpu()[keep].numpy(),
        }, schema=_CODES_SCHEMA)

    def _decode(self, frame: pl.DataFrame, user_ids: pl.Series) -> pl.DataFrame:
        """Chunk-local user rows and item codes back to original ids."""
        return frame.select(
            user_id=user_ids.gather(frame["user"]),
            item_id=self.catalog.item_ids.gather(frame["code"] - 1),
            rank="rank", score="score", fallback="fallback",
        )


@contextmanager
def _one_thread_each(workers: int) -> Iterator[None]:
    """torch's ops single-threaded while ``workers`` > 1 threads each run their own chunk of users.

    Why: a chunk of 256 users is many small ops; splitting each op over the cores costs a
    synchronisation per op (and spinning threads when other processes hold the cores), while one
    chunk per core needs none.
    """
    threads = torch.get_num_threads()
    if workers > 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if value < 1:
            raise ConfigError(f"{name} must be at least 1, got {value}")


_CODES_SCHEMA = {"user": pl.Int64, "code": pl.Int64, "rank": pl.Int32, "score": pl.Float32, "fallback": pl.Boolean}
