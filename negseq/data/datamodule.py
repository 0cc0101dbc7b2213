"""The LightningDataModule: the only place that knows about files, columns, thresholds and splits."""

from __future__ import annotations

import logging
from dataclasses import asdict
from functools import cached_property, partial
from importlib import resources
from pathlib import Path
from typing import Optional, Union

import lightning as L
import polars as pl
import torch
import torch.distributed as dist
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset

from negseq.data import cache as prepared_cache
from negseq.data import ids, reading, splits
from negseq.data.cache import DataTensors
from negseq.data.catalog import Catalog, aligned_titles
from negseq.data.formats import FORMATS
from negseq.data.neighbours import ItemNeighbours, training_pairs
from negseq.data.sequences import EvalSequences, TensorTable, TrainSequences
from negseq.data.titles import item_titles
from negseq.data.validation import MISSING_TIME, MissingTime
from negseq.errors import DataError

log = logging.getLogger("negseq")


def embedded_ratings() -> Path:
    """The ml-latest-small ratings shipped with the package (GroupLens licence in the same folder)."""
    return Path(str(resources.files("negseq.data") / "ml_latest_small" / "ratings.csv.gz"))


def _counts_per_item(events: pl.DataFrame, num_items: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N + 1,)`` float64 each: events per item id, and liked events per item id (0 for padding and for items without one)."""
    counts = events.group_by("item").agg(pl.len().alias("events"), pl.col("positive").sum().alias("liked"))
    index = torch.from_numpy(counts["item"].cast(pl.Int64).to_numpy(writable=True))
    result = []
    for column in ("events", "liked"):
        per_item = torch.zeros(num_items + 1, dtype=torch.float64)
        per_item[index] = torch.from_numpy(counts[column].cast(pl.Float64).to_numpy(writable=True))
        result.append(per_item)
    return result[0], result[1]


class _Rows(Dataset):
    """Batches are row slices of a :class:`TensorTable`, fetched in one indexing call per batch."""

    def __init__(self, table: TensorTable) -> None:
        self.table = table

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, index: int) -> dict:
        return self.__getitems__([index])

    def __getitems__(self, indices: list[int]) -> dict:
        return self.table.take(torch.as_tensor(indices))


def _identity(batch: dict) -> dict:
    return batch


class FeedbackDataModule(L.LightningDataModule):
    """Paired positive/negative sequences for training; history, seen items and target for evaluation.

    Args:
        path: interaction log (CSV, TSV, Parquet, MovieLens ``ratings.dat``/``ratings.csv``, Amazon
            review JSON lines, Kion ``interactions.csv``, ``zvuk-interactions.parquet``), or for
            ``split="presplit"`` a directory with train/validation/test parquet files. Default: the
            embedded ml-latest-small ratings.
        format: ``auto`` (from the file name), ``csv``, ``tsv``, ``parquet``, ``movielens``, ``amazon``,
            ``kion`` or ``zvuk`` (see :mod:`negseq.data.formats`).
        user_col: user id column; default depends on the format (``user_id``; ``userId`` for MovieLens,
            ``reviewerID`` for Amazon).
        item_col: item id column (``item_id``; ``movieId``, ``asin``, ``track_id``).
        feedback_col: feedback value column (``rating``; ``overall``, ``watched_pct``, ``play_duration``).
        time_col: timestamp column (``timestamp``; ``unixReviewTime``, ``last_watch_dt``, ``datetime``):
            numbers, dates or ISO 8601 strings (``2011-11-05``, ``2011-11-05 13:04:00``).
        has_header: ``false`` for delimited text without a header line (``csv``, ``tsv``): its columns are
            then ``column_1``, ``column_2``, ... by position from 1, and the ``*_col`` options name the four used ones.
        separator: the field separator of delimited text (one character); default the format's
            (``,`` for csv, a tab for tsv).
        missing_time: an event with an empty timestamp stops the run with a DataError naming the file,
            the column and the count (``error``), or is dropped and counted in the log (``drop``).
        threshold: feedback >= threshold is positive, below it negative (a Boolean feedback column is its
            own sign: true = liked, and the threshold is not used). ``None`` (``--data.threshold
            null``): the format's own default: 4 for MovieLens and generic files, 5 for Amazon, 50
            (watched percent) for Kion, 30 (seconds) for Zvuk. The default 4.0 is MovieLens' scale;
            the shipped configs of each dataset set their threshold explicitly.
        split: ``leave_last_out`` (each user's last event held out), ``temporal`` (the paper's
            global 0.9-quantile cut), ``presplit`` (files prepared elsewhere) or ``none`` (every
            event trains, nothing is held out: the model to serve, fitted for a fixed number of epochs).
        holdout: which users ``leave_last_out`` evaluates. ``half_users`` (the paper, and every
            published table so far): users are split 50/50 (``split_seed``) into validation and test
            users, each holding out their last event. ``every_user`` (the common SASRec
            leave-one-out, about twice the test users, for decisions with more power): every user
            with 3 or more events is a test user (target: the last event) and a validation user
            (target: the event before it); training has the events before both.
        max_len: sequence length L; training keeps the last L + 1 items of each sequence.
        min_item_users: keep items with at least this many distinct users (not for presplit).
        min_user_items: then keep users with at least this many distinct items (not for presplit).
        split_seed: seed of the 50/50 validation/test user split.
        validation_targets: ``positive`` (the paper) validates on the users whose held-out item is
            liked only; ``all`` keeps the users with a disliked target too, so that validation
            also reports HR_n and Delta (needed to choose ``--model.negative_scoring`` on
            validation). The positive-target validation users, hence early stopping on
            ``val/ndcg_p@10``, and the test users are the same either way.
        batch_size: users per training step. 64 on ml-latest-small (610 users: 10 steps an epoch) reaches
            the validation quality of 128 in fewer epochs, and 128 that of the paper's 500 in half the
            epochs (benchmarks/README.md); the paper used 500 on ML-1M (6,040 users): raise it for
            logs with many thousands of users.
        eval_batch_size: users per validation/test/predict batch.
        num_workers: DataLoader workers (batches are tensor slices: 0 is usually fastest). Before Python 3.12 a forked
            worker can deadlock as it starts while another thread exits (CPython gh-112275): keep 0 there.
        sample_users: keep only this many users (an int), or this fraction of them (a float in
            (0, 1)), chosen at the scan by a hash of the user id seeded with ``sample_seed``: the same
            users on every run and machine (for one polars version). ``None``: every user.
        sample_seed: seed of the user sample.
        cache: write the prepared tensors and vocabularies once (``cache_dir/<key>/``, keyed by
            these arguments and the input file's size, time and first and last MiB) and
            memory-map them in every later run and process; ``false``: prepare in memory each time.
        cache_dir: where cache entries go; default ``$NEGSEQ_CACHE_DIR``, else ``runs/.cache``
            (``$NEGSEQ_RUNS_DIR/.cache``).
        neighbours: m, the nearest items (by users in common in train, :mod:`negseq.data.neighbours`) of a
            disliked item whose suppression ``test/neighbour_suppression@k`` measures.
    """

    def __init__(
        self,
        path: Optional[str] = None,
        format: str = "auto",
        user_col: Optional[str] = None,
        item_col: Optional[str] = None,
        feedback_col: Optional[str] = None,
        time_col: Optional[str] = None,
        has_header: bool = True,
        separator: Optional[str] = None,
        missing_time: MissingTime = "error",
        threshold: Optional[float] = 4.0,
        split: splits.SplitName = "leave_last_out",
        holdout: splits.Holdout = "half_users",
        max_len: int = 50,
        min_item_users: int = 5,
        min_user_items: int = 5,
        split_seed: int = 42,
        validation_targets: splits.ValidationTargets = "positive",
        batch_size: int = 64,
        eval_batch_size: int = 1000,
        num_workers: int = 0,
        sample_users: Optional[Union[int, float]] = None,
        sample_seed: int = 0,
        cache: bool = True,
        cache_dir: Optional[str] = None,
        neighbours: int = 20,
    ) -> None:
        super().__init__()
        if split not in splits.SPLITS:
            raise DataError(f"unknown split {split!r}; expected one of {list(splits.SPLITS)}")
        if validation_targets not in splits.VALIDATION_TARGETS:
            raise DataError(f"unknown validation_targets {validation_targets!r}; expected one of {list(splits.VALIDATION_TARGETS)}")
        if holdout not in splits.HOLDOUTS:
            raise DataError(f"unknown holdout {holdout!r}; expected one of {list(splits.HOLDOUTS)}")
        if holdout != "half_users" and split != "leave_last_out":
            raise DataError(f"holdout {holdout!r} applies to split 'leave_last_out', not {split!r}; drop --data.holdout or use --data.split leave_last_out")
        if missing_time not in MISSING_TIME:
            raise DataError(f"unknown missing_time {missing_time!r}; expected one of {list(MISSING_TIME)}")
        if max_len < 1:
            raise DataError(f"max_len must be at least 1, got {max_len}")
        if neighbours < 1:
            raise DataError(f"neighbours must be at least 1, got {neighbours}")
        self.path = Path(path) if path else embedded_ratings()
        self.columns = dict(
            format=format, user_col=user_col, item_col=item_col, feedback_col=feedback_col, time_col=time_col,
            has_header=has_header, separator=separator, missing_time=missing_time,
        )
        self.threshold = threshold
        self.split_name = split
        self.holdout = holdout
        self.max_len = max_len
        self.min_item_users = min_item_users
        self.min_user_items = min_user_items
        self.split_seed = split_seed
        self.validation_targets = validation_targets
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.sample_users = sample_users
        self.sample_seed = sample_seed
        self.cache = cache
        self.cache_dir = Path(cache_dir) if cache_dir else None
        if sample_users is not None and split == "presplit":
            raise DataError("sample_users does not apply to split='presplit' (its files are already split); sample them before")
        self.neighbours = neighbours
        self._frame: Optional[pl.LazyFrame] = None

    @classmethod
    def from_frame(cls, frame: "pl.DataFrame | pl.LazyFrame", **kwargs) -> "FeedbackDataModule":
        """A DataModule over a log already in memory: ``frame`` (polars, or pandas) has the columns of a file of ``format``
        (default ``parquet``: ``user_id, item_id, rating, timestamp``; ``zvuk``: its plays), other
        arguments as the constructor. Nothing is cached (there is no file to key it on)."""
        data = cls(**{**kwargs, "path": None})
        data._frame = reading.as_polars(frame).lazy()
        data.path = Path(reading.FRAME)
        return data

    # -- data preparation: once, on first use (the CLI needs num_items at instantiation) --

    def _read(self, source: reading.Source) -> reading.Events:
        """The signed events of a log file or of the frame, streamed (see :mod:`negseq.data.reading`)."""
        return reading.read_events(source, **self.columns, threshold=self.applied_threshold, sample=self.sample_users, sample_seed=self.sample_seed)

    def _source(self) -> reading.Source:
        """The frame, the log file, or a presplit directory's training file."""
        if self._frame is not None:
            return self._frame
        return self.path / splits.PRESPLIT_FILES[0] if self.split_name == "presplit" else self.path

    @cached_property
    def log_format(self) -> str:
        """The format the training log is read as (``format``, or the one its file name tells; a frame: parquet)."""
        return reading.source_format(self._source(), self.columns["format"])

    @cached_property
    def applied_threshold(self) -> float:
        """The sign threshold applied to the log: resolved once, here, and carried in the checkpoint's catalogue."""
        return reading.applied_threshold(self.log_format, self.threshold)

    @cached_property
    def split(self) -> splits.Split:
        """The encoded event frames (kept, unlike those :attr:`tensors` builds its tensors from)."""
        return self._split()

    def _split(self) -> splits.Split:
        if self.split_name == "presplit":
            missing = [name for name in splits.PRESPLIT_FILES if not (self.path / name).is_file()]
            if missing:
                raise DataError(f"{self.path}: presplit directory lacks {missing}; expected {list(splits.PRESPLIT_FILES)}")
            split = splits.presplit(
                *(self._read(self.path / name).decoded() for name in splits.PRESPLIT_FILES), source=self.path, validation_targets=self.validation_targets
            )
        else:
            split_events = {"temporal": splits.temporal, "none": splits.whole_log}.get(self.split_name, partial(splits.leave_last_out, holdout=self.holdout))
            split = reading.filter_and_split(
                self._read(self._source()), split_events, self.split_seed, self.validation_targets, self.min_item_users, self.min_user_items, self.path,
            )
        if split.train.height == 0:
            raise DataError(f"{self.path}: the {self.split_name} split leaves no training events; use a larger log or another --data.split")
        return split

    def _train_sequences(self, split: splits.Split) -> TrainSequences:
        sequences = TrainSequences.from_events(split.train, self.max_len)
        if len(sequences) == 0:
            raise DataError(
                f"{self.path}: no user has two training events (an input item and a next item to predict); "
                "use a larger log or raise --data.min_user_items"
            )
        return sequences

    def _eval_sequences(self, events: pl.DataFrame, name: str) -> EvalSequences:
        sequences = EvalSequences.from_events(events, self.max_len)
        n_positive = int(sequences.target_positive.sum())
        log.info("%s users: %d (%d positive targets, %d negative)", name, len(sequences), n_positive, len(sequences) - n_positive)
        return sequences

    def _build_tensors(self) -> DataTensors:
        """Split the log and build every tensor from it, dropping each event frame once its tensors are built
        (unless :attr:`split` was asked for: a split someone may hold a reference to is left whole)."""
        consume = "split" not in self.__dict__
        split = self._split() if consume else self.split
        item_counts, liked_counts = _counts_per_item(split.train, split.num_items)
        num_train_items = split.train["item"].n_unique()
        validation = self._eval_sequences(split.validation, "validation")  # the evaluation frames first: they are the smaller tensors
        if consume:
            split.validation = None
        test = self._eval_sequences(split.test, "test")
        if consume:
            split.test = None
        train = self._train_sequences(split)
        pairs = training_pairs(split.train)  # last: the training events' other tensors are built by then
        return DataTensors(train, validation, test, split.user_ids, split.item_ids, item_counts, liked_counts, pairs, num_train_items)

    def _cache_entry(self) -> Optional[Path]:
        """This log's cache directory, or None when caching is off or there is no file to key it on."""
        if not self.cache or self._frame is not None:
            return None
        files = [self.path / name for name in splits.PRESPLIT_FILES] if self.split_name == "presplit" else [self.path]
        for file in files:
            if not file.is_file():
                return None  # the preparation itself says what is missing
        arguments = {
            **self.columns, "threshold": self.threshold, "split": self.split_name, "max_len": self.max_len,
            "min_item_users": self.min_item_users, "min_user_items": self.min_user_items, "split_seed": self.split_seed,
            "validation_targets": self.validation_targets, "holdout": self.holdout, "sample_users": self.sample_users, "sample_seed": self.sample_seed,
        }
        return (self.cache_dir or prepared_cache.default_root()) / prepared_cache.cache_key(arguments, files)

    @cached_property
    def tensors(self) -> DataTensors:
        """The tensors and vocabularies: from the cache when an entry exists (memory-mapped), else prepared (and cached)."""
        entry = self._cache_entry()
        if entry is None:
            return self._build_tensors()
        loaded, written = prepared_cache.load_or_write(entry, self._build_tensors)
        if written:
            log.info("%s: prepared data cached in %s", self.path, entry)
        return loaded

    def prepare_data(self) -> None:
        # runs on one process before the others set up: they then map the entry it wrote
        self.tensors

    @property
    def train_sequences(self) -> TrainSequences:
        return self.tensors.train

    @property
    def validation_sequences(self) -> EvalSequences:
        return self.tensors.validation

    @property
    def test_sequences(self) -> EvalSequences:
        return self.tensors.test

    @property
    def user_ids(self) -> pl.Series:
        """Original id of each user code 0..U-1."""
        return self.tensors.user_ids

    @property
    def item_ids(self) -> pl.Series:
        """Original id of each item code 1..N (at position code - 1)."""
        return self.tensors.item_ids

    @property
    def num_items(self) -> int:
        """Catalogue size N; item ids run 1..N and 0 is padding."""
        return self.tensors.num_items

    @property
    def item_counts(self) -> torch.Tensor:
        """``(N + 1,)`` training events per item id (0 for padding): the popularity of each item."""
        return self.tensors.item_counts

    @property
    def num_train_items(self) -> int:
        """Distinct items in the training events: the denominator of Coverage@k."""
        return self.tensors.num_train_items

    @cached_property
    def item_neighbours(self) -> ItemNeighbours:
        """``item_neighbours(items)`` -> ``(B, m)`` each item's m nearest items in the training events (0 = none).

        From the prepared training pairs: a cached run does not read the log again."""
        return ItemNeighbours(self.tensors.train_pairs, self.num_items, self.neighbours)

    def setup(self, stage: str) -> None:
        # build the tensors each stage needs up front, so that data errors surface before training
        # (the sizes the CLI links into the model need none of them: a log without evaluation users still instantiates)
        if stage == "fit":
            self.train_sequences
        if stage in ("fit", "validate") and self.split_name != "none":  # nothing held out: no validation
            self._require_users(self.validation_sequences, "validation")
        if stage in ("test", "predict"):
            self._require_users(self.test_sequences, "test")

    def _require_users(self, sequences: EvalSequences, name: str) -> None:
        if len(sequences) == 0:
            raise DataError(f"{self.path}: the {self.split_name} split leaves no {name} users; use a larger log or another --data.split")

    # -- what a checkpoint carries to serve without this log --

    @cached_property
    def catalog(self) -> Catalog:
        """Item vocabulary, popularity among liked training events, titles and reading settings (see :mod:`negseq.data.catalog`)."""
        popularity = self.tensors.liked_counts.float()  # (N + 1,)
        names = {key: self.columns[f"{key}_col"] for key in ("user", "item", "feedback", "time")}
        columns = FORMATS[self.log_format].columns.override(**names)
        titles = aligned_titles(self.item_ids, item_titles(self.path) if self.log_format == "movielens" and self._frame is None else None)
        reading_settings = {**self.columns, "threshold": self.applied_threshold}
        return Catalog(self.item_ids, popularity, titles, reading_settings, asdict(columns), self.max_len, self.log_format)

    def state_dict(self) -> dict:
        return self.catalog.state_dict()

    def load_state_dict(self, state_dict: dict) -> None:
        """A checkpoint of another item vocabulary (same size, other ids) does not fit this data."""
        saved = Catalog.from_state(state_dict).item_ids
        if saved.dtype != self.item_ids.dtype or not saved.equals(self.item_ids, check_names=False):
            raise DataError(
                f"{self.path}: the checkpoint was trained on other item ids ({saved.len()} {saved.dtype} ids) than this data's "
                f"({self.num_items} {self.item_ids.dtype}); use the data and filters of the run that wrote it"
            )

    # -- loaders --

    def _loader(self, table: TensorTable, batch_size: int, shuffle: bool) -> DataLoader:
        rows = _Rows(table)
        # evaluation under several processes: each user on exactly one process. Lightning's default
        # DistributedSampler pads with repeated users, which would count them twice.
        unrepeated = not shuffle and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        return DataLoader(
            rows,
            batch_size=batch_size,
            shuffle=shuffle,
            sampler=UnrepeatedDistributedSampler(rows, shuffle=False) if unrepeated else None,
            drop_last=False,
            collate_fn=_identity,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_sequences, self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.validation_sequences, self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_sequences, self.eval_batch_size, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()

    # -- decoding back to the input's ids --

    def test_targets(self) -> pl.DataFrame:
        """``user_id, item_id, positive``: each test user's held-out item in original ids and its sign."""
        test = self.test_sequences
        return self.decode(test.user.tolist(), test.target.tolist()).with_columns(positive=pl.Series(test.target_positive.tolist(), dtype=pl.Boolean))

    def decode(self, users: "pl.Series | list[int]", items: "pl.Series | list[int]") -> pl.DataFrame:
        """Original ``user_id`` and ``item_id`` for encoded users (0..U-1) and items (1..N)."""
        user_codes, item_codes = pl.Series(users, dtype=pl.Int64), pl.Series(items, dtype=pl.Int64)
        return pl.DataFrame({"user_id": ids.decode(user_codes, self.user_ids), "item_id": ids.decode(item_codes, self.item_ids, 1)})
