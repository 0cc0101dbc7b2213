"""The LightningDataModule: the only place that knows about files, columns, thresholds and splits."""

from __future__ import annotations

import logging
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Literal, Optional

import lightning as L
import polars as pl
import torch
import torch.distributed as dist
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset

from negseq.data import splits
from negseq.data.io import FORMATS, read_log, resolve_format
from negseq.data.neighbours import ItemNeighbours
from negseq.errors import DataError
from negseq.data.sequences import EvalSequences, TensorTable, TrainSequences

log = logging.getLogger("negseq")


def embedded_ratings() -> Path:
    """The ml-latest-small ratings shipped with the package (GroupLens licence in the same folder)."""
    return Path(str(resources.files("negseq.data") / "ml_latest_small" / "ratings.csv.gz"))


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
            ``kion`` or ``zvuk`` (see :mod:`negseq.data.io`).
        user_col: user id column; default depends on the format (``user_id``; ``userId`` for MovieLens,
            ``reviewerID`` for Amazon).
        item_col: item id column (``item_id``; ``movieId``, ``asin``, ``track_id``).
        feedback_col: feedback value column (``rating``; ``overall``, ``watched_pct``, ``play_duration``).
        time_col: timestamp column (``timestamp``; ``unixReviewTime``, ``last_watch_dt``, ``datetime``):
            numbers, dates or ISO 8601 strings.
        threshold: feedback >= threshold is positive, below it negative. ``None`` (``--data.threshold
            null``): the format's own default: 4 for MovieLens and generic files, 5 for Amazon, 50
            (watched percent) for Kion, 30 (seconds) for Zvuk. The default 4.0 is MovieLens' scale;
            the shipped configs of each dataset set their threshold explicitly.
        split: ``leave_last_out`` (each user's last event held out), ``temporal`` (the paper's
            global 0.9-quantile cut) or ``presplit`` (files prepared elsewhere).
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
        num_workers: DataLoader workers (batches are tensor slices: 0 is usually fastest).
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
        threshold: Optional[float] = 4.0,
        split: Literal["leave_last_out", "temporal", "presplit"] = "leave_last_out",
        max_len: int = 50,
        min_item_users: int = 5,
        min_user_items: int = 5,
        split_seed: int = 42,
        validation_targets: Literal["positive", "all"] = "positive",
        batch_size: int = 64,
        eval_batch_size: int = 1000,
        num_workers: int = 0,
        neighbours: int = 20,
    ) -> None:
        super().__init__()
        if split not in splits.SPLITS:
            raise DataError(f"unknown split {split!r}; expected one of {list(splits.SPLITS)}")
        if validation_targets not in splits.VALIDATION_TARGETS:
            raise DataError(f"unknown validation_targets {validation_targets!r}; expected one of {list(splits.VALIDATION_TARGETS)}")
        if max_len < 1:
            raise DataError(f"max_len must be at least 1, got {max_len}")
        if neighbours < 1:
            raise DataError(f"neighbours must be at least 1, got {neighbours}")
        self.path = Path(path) if path else embedded_ratings()
        self.columns = dict(format=format, user_col=user_col, item_col=item_col, feedback_col=feedback_col, time_col=time_col)
        self.threshold = threshold
        self.split_name = split
        self.max_len = max_len
        self.min_item_users = min_item_users
        self.min_user_items = min_user_items
        self.split_seed = split_seed
        self.validation_targets = validation_targets
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.neighbours = neighbours

    # -- data preparation: once, on first use (the CLI needs num_items at instantiation) --

    def _read(self, path: Path) -> pl.DataFrame:
        if not path.is_file():
            raise DataError(f"{path}: file not found")
        fmt = resolve_format(path, self.columns["format"])
        default = FORMATS[fmt].threshold
        threshold = default if self.threshold is None else self.threshold
        if self.threshold is not None and threshold != default and threshold == 4.0:
            log.warning(
                "%s: threshold 4.0 (MovieLens' rating scale) on a %s log, whose usual threshold is %s; "
                "set --data.threshold (null = the format's default)", path, fmt, default,
            )
        events = splits.add_sign(read_log(path, **{**self.columns, "format": fmt}), threshold, path)
        return events.drop("feedback")  # the sign is all that is used from here on

    @cached_property
    def split(self) -> splits.Split:
        if self.split_name == "presplit":
            missing = [name for name in splits.PRESPLIT_FILES if not (self.path / name).is_file()]
            if missing:
                raise DataError(f"{self.path}: presplit directory lacks {missing}; expected {list(splits.PRESPLIT_FILES)}")
            split = splits.presplit(
                *(self._read(self.path / name) for name in splits.PRESPLIT_FILES), source=self.path, validation_targets=self.validation_targets
            )
        else:
            events = splits.filter_cores(self._read(self.path), self.min_item_users, self.min_user_items, self.path)
            split_events = splits.temporal if self.split_name == "temporal" else splits.leave_last_out
            split = split_events(events, self.split_seed, self.validation_targets)
        if split.train.height == 0:
            raise DataError(f"{self.path}: the {self.split_name} split leaves no training events; use a larger log or another --data.split")
        return split

    @cached_property
    def train_sequences(self) -> TrainSequences:
        sequences = TrainSequences.from_events(self.split.train, self.max_len)
        if len(sequences) == 0:
            raise DataError(
                f"{self.path}: no user has two training events (an input item and a next item to predict); "
                "use a larger log or raise --data.min_user_items"
            )
        return sequences

    @cached_property
    def validation_sequences(self) -> EvalSequences:
        return self._eval_sequences(self.split.validation, "validation")

    @cached_property
    def test_sequences(self) -> EvalSequences:
        return self._eval_sequences(self.split.test, "test")

    def _eval_sequences(self, events: pl.DataFrame, name: str) -> EvalSequences:
        sequences = EvalSequences.from_events(events, self.max_len)
        if len(sequences) == 0:
            raise DataError(f"{self.path}: the {self.split_name} split leaves no {name} users; use a larger log or another --data.split")
        n_positive = int(sequences.target_positive.sum())
        log.info("%s users: %d (%d positive targets, %d negative)", name, len(sequences), n_positive, len(sequences) - n_positive)
        return sequences

    @property
    def num_items(self) -> int:
        """Catalogue size N; item ids run 1..N and 0 is padding."""
        return self.split.num_items

    @property
    def item_counts(self) -> torch.Tensor:
        """``(N + 1,)`` training events per item id (0 for padding): the popularity of each item."""
        counts = self.split.train.group_by("item").len()
        result = torch.zeros(self.num_items + 1, dtype=torch.float64)
        result[torch.from_numpy(counts["item"].to_numpy())] = torch.from_numpy(counts["len"].to_numpy()).double()
        return result

    @property
    def num_train_items(self) -> int:
        """Distinct items in the training events: the denominator of Coverage@k."""
        return self.split.train["item"].n_unique()

    @cached_property
    def item_neighbours(self) -> ItemNeighbours:
        """``item_neighbours(items)`` -> ``(B, m)`` each item's m nearest items in the training events (0 = none)."""
        return ItemNeighbours(self.split.train, self.num_items, self.neighbours)

    def setup(self, stage: str) -> None:
        # build the tensors each stage needs up front, so that data errors surface before training
        if stage == "fit":
            self.train_sequences, self.validation_sequences
        elif stage == "validate":
            self.validation_sequences
        else:
            self.test_sequences

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

    def decode(self, users: "pl.Series | list[int]", items: "pl.Series | list[int]") -> pl.DataFrame:
        """Original ``user_id`` and ``item_id`` for encoded users (0..U-1) and items (1..N)."""
        user_codes = pl.Series(users, dtype=pl.Int64)
        item_codes = pl.Series(items, dtype=pl.Int64)
        return pl.DataFrame({"user_id": self.split.user_ids.gather(user_codes), "item_id": self.split.item_ids.gather(item_codes - 1)})
