"""Lightning callbacks of a run: resumable random state, best + last checkpoints, the per-epoch history file."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint


class RandomStateCheckpoint(L.Callback):
    """Saves the torch, numpy, python (and CUDA) random states in each checkpoint and restores them on resume,
    so that a resumed fit shuffles and drops out exactly as an uninterrupted one.

    Stored as tensors and plain tuples, so the checkpoint still loads with ``weights_only=True``.
    Restored only when fitting: loading a checkpoint to test or predict leaves the random state alone.
    """

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        kind, keys, position, has_gauss, cached = np.random.get_state()
        numpy_state = (kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached)
        checkpoint["rng_states"] = {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():  # dropout on a GPU draws from the current device's generator
            checkpoint["rng_states"]["cuda"] = torch.cuda.get_rng_state()

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        states = checkpoint.get("rng_states")
        if not states or trainer.state.fn != "fit":
            return
        torch.set_rng_state(states["torch"])
        kind, keys, position, has_gauss, cached = states["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached))
        random.setstate(states["python"])
        if "cuda" in states and torch.cuda.is_available():
            torch.cuda.set_rng_state(states["cuda"])


class BestAndLastCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose ``last.ckpt`` is the state at the end of every epoch.

    Lightning 2.6 writes ``last.ckpt`` only when a new top-k checkpoint is written, so once the
    monitored metric stops improving it stays at the best epoch and ``--ckpt_path last`` would
    redo every epoch since. This writes it at each epoch end that saved nothing else.
    """

    @property
    def state_key(self) -> str:
        # keep ModelCheckpoint's key, so checkpoints written by either class restore this callback's state
        return super().state_key.replace(type(self).__qualname__, ModelCheckpoint.__qualname__, 1)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._save_missed_last(trainer)

    def on_validation_end(self, trainer, pl_module) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._save_missed_last(trainer)

    def _save_missed_last(self, trainer) -> None:
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):  # skipped also when saved at this step
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


class EpochHistory(L.Callback):
    """Appends each epoch's epoch-level metrics (train loss terms, validation metrics) and duration to ``history.jsonl``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._started = 0.0
        self._first_epoch = True

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._first_epoch = True

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._first_epoch and trainer.is_global_zero and self.path.is_file():
            # the first epoch this fit runs (a resumed fit: the one after its checkpoint's) and the later
            # ones are run now: forget the rows of a previous process that got that far. Decided here, not
            # at fit start, where Lightning has not yet moved past an epoch that the checkpoint completed.
            rows = [line for line in self.path.read_text().splitlines() if json.loads(line)["epoch"] <= trainer.current_epoch]
            self.path.write_text("".join(row + "\n" for row in rows))
        self._first_epoch = False
        self._started = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # runs after this epoch's validation, so the row holds both
        if not trainer.is_global_zero or trainer.sanity_checking:
            return
        row = {"epoch": trainer.current_epoch + 1, "epoch_seconds": time.perf_counter() - self._started}
        for name, value in trainer.callback_metrics.items():
            if not name.endswith("_step"):
                row[name.removesuffix("_epoch")] = float(value)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as file:
            file.write(json.dumps(row) + "\n")
