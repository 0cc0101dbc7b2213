"""Test-only callbacks for subprocess runs: ``--trainer.callbacks+=crash_callback.CrashAfterEpoch``.

The subprocess needs ``tests/`` on ``PYTHONPATH`` so that ``crash_callback`` imports.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import lightning as L
import torch


class CrashAfterEpoch(L.Callback):
    """Kill the process with ``os._exit`` once ``epoch`` epochs have finished: nothing is flushed, closed or saved.

    ``at="next_epoch"``: at the start of epoch ``epoch + 1``, after every end-of-epoch hook of
    epoch ``epoch`` ran (history row and checkpoints written). ``at="mid_epoch"``: after the
    first training batch of epoch ``epoch + 1``, whose work is lost.

    ``once``: a file path; the crash happens only if it does not exist yet (it is created just
    before), so that resuming with the saved config.yaml, which names this callback, runs through.
    """

    def __init__(self, epoch: int = 1, at: str = "next_epoch", once: Optional[str] = None, exit_code: int = 17) -> None:
        if at not in ("next_epoch", "mid_epoch"):
            raise ValueError(f"unknown crash point {at!r}")
        self.epoch, self.at, self.once, self.exit_code = epoch, at, once, exit_code

    def _crash(self) -> None:
        if self.once:
            if Path(self.once).exists():
                return
            Path(self.once).touch()
        os._exit(self.exit_code)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.at == "next_epoch" and trainer.current_epoch == self.epoch:
            self._crash()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        if self.at == "mid_epoch" and trainer.current_epoch == self.epoch and batch_idx == 0:
            self._crash()


class PoisonLoss(L.Callback):
    """Fill the item table with NaN before training batch ``batch`` of epoch ``epoch`` (1-based), so that its loss is NaN."""

    def __init__(self, epoch: int = 1, batch: int = 0) -> None:
        self.epoch, self.batch = epoch, batch

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        if trainer.current_epoch + 1 == self.epoch and batch_idx == self.batch:
            with torch.no_grad():
                pl_module.model.items.weight.fill_(float("nan"))
