"""The LightningCLI shared by ``python -m negseq`` (subcommands) and ``python -m negseq.fit``.

It adds early stopping and checkpointing on validation NDCG_p@k, links data-derived sizes
into the model, and gives every run its own directory under ``--trainer.default_root_dir``
(or ``--run_dir``): checkpoints, config.yaml, W&B files and results all land there.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Optional

from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from negseq.allocator import keep_freed_memory
from negseq.data import FeedbackDataModule
from negseq.errors import NegSeqError
from negseq.module import NegSeqModule
from negseq.results import EpochHistory
from negseq.selection import DEFAULT_MONITOR
from negseq.tracking import SaveConfigToLoggers

MONITOR = "val/ndcg_p@10"
DEFAULT_ROOT = "runs"
RUN_DIR_ENV = "NEGSEQ_RUN_DIR"  # rank 0's run directory, for the processes Lightning starts for the other devices

TRAINER_DEFAULTS = {
    "max_epochs": 100,
    "default_root_dir": DEFAULT_ROOT,
    "log_every_n_steps": 1,
    "num_sanity_val_steps": 0,
    "logger": {"class_path": "negseq.tracking.WandbLogger", "init_args": {"project": "negseq"}},
}


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


class NegSeqCLI(LightningCLI):
    """LightningCLI for :class:`NegSeqModule` and :class:`FeedbackDataModule` with per-run directories."""

    def __init__(self, *args, **kwargs) -> None:
        keep_freed_memory()  # this process trains: reuse the big logit blocks instead of page-faulting them in each step
        kwargs.setdefault("trainer_defaults", TRAINER_DEFAULTS)
        kwargs.setdefault("save_config_callback", SaveConfigToLoggers)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("seed_everything_default", 42)
        super().__init__(NegSeqModule, FeedbackDataModule, *args, **kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--run_dir", type=Optional[str], default=None, help="Directory of this run (default: a new one under trainer.default_root_dir).")
        parser.add_argument("--run_name", type=Optional[str], default=None, help="Run name (default: the last config file's name).")
        # read by `python -m negseq.fit` only; every subcommand accepts them, so that a fit's config.yaml loads anywhere
        parser.add_argument(
            "--select_negative_scoring", type=Optional[list[float]], default=None,
            help="Candidate lambdas of --model.negative_scoring, chosen after the fit on --select_monitor (validation only).",
        )
        parser.add_argument("--select_monitor", type=str, default=DEFAULT_MONITOR, help="Validation metric that --select_negative_scoring maximises.")
        parser.add_lightning_class_args(EarlyStopping, "early_stopping")
        parser.set_defaults({"early_stopping.monitor": MONITOR, "early_stopping.mode": "max", "early_stopping.patience": 10})
        parser.add_lightning_class_args(BestAndLastCheckpoint, "checkpoint")
        parser.set_defaults({"checkpoint.monitor": MONITOR, "checkpoint.mode": "max", "checkpoint.filename": "best", "checkpoint.save_last": True})
        parser.link_arguments("data.max_len", "model.max_len")
        parser.link_arguments("data.num_items", "model.num_items", apply_on="instantiate")
        parser.link_arguments("data.num_train_items", "model.num_train_items", apply_on="instantiate")

    @property
    def active_config(self):
        return self.config[self.subcommand] if self.subcommand else self.config

    def before_instantiate_classes(self) -> None:
        """Fix the run directory and point the trainer, checkpoints and W&B at it."""
        config = self.active_config
        if "weights_only" in config and config.weights_only is None:  # test/validate/predict --ckpt_path
            config.weights_only = True  # checkpoints hold tensors and plain values only: never unpickle code
        if self.subcommand not in (None, "fit"):  # `test --config runs/<run>/config.yaml` keeps the fit's config.yaml
            self.save_config_kwargs = {**self.save_config_kwargs, "config_filename": f"config-{self.subcommand}.yaml"}
        name = config.run_name or (Path(str(config.config[-1])).stem if config.get("config") else "negseq")
        config.run_name = name
        if not config.run_dir and int(os.environ.get("LOCAL_RANK", "0")) > 0:
            config.run_dir = os.environ.get(RUN_DIR_ENV)  # a process Lightning started for another device: rank 0's directory
        if not config.run_dir:
            root = Path(config.trainer.default_root_dir or DEFAULT_ROOT)
            config.run_dir = str(_fresh_dir(root, f"{time.strftime('%Y%m%d-%H%M%S')}-{name}"))
        run_dir = Path(config.run_dir)
        os.environ[RUN_DIR_ENV] = str(run_dir)  # inherited by the processes DDP starts for the other devices
        run_dir.mkdir(parents=True, exist_ok=True)
        config.trainer.default_root_dir = str(run_dir)
        config.checkpoint.dirpath = config.checkpoint.dirpath or str(run_dir / "checkpoints")
        logger = config.trainer.logger
        if getattr(logger, "class_path", "").endswith("WandbLogger"):
            if logger.init_args.get("save_dir") in (None, "."):  # Lightning's default "." would mix runs
                logger.init_args.save_dir = str(run_dir)
            logger.init_args.name = logger.init_args.name or name
        self.history = EpochHistory(run_dir / "history.jsonl")

    def instantiate_classes(self) -> None:
        # the data is read here (the model needs its sizes): a data error leaves no empty run directory behind
        try:
            super().instantiate_classes()
        except NegSeqError:
            if self.run_dir.is_dir() and not any(self.run_dir.iterdir()):
                self.run_dir.rmdir()
            raise

    def instantiate_trainer(self, **kwargs):
        # a `callbacks` keyword replaces the configured ones in LightningCLI: start from --trainer.callbacks
        callbacks = kwargs.get("callbacks", self._get(self.config_init, "trainer", default={}).get("callbacks"))
        callbacks = [] if callbacks is None else list(callbacks) if isinstance(callbacks, (list, tuple)) else [callbacks]
        kwargs["callbacks"] = [*callbacks, self.history]
        return super().instantiate_trainer(**kwargs)

    @property
    def run_dir(self) -> Path:
        return Path(self.active_config.run_dir)


def _fresh_dir(root: Path, name: str) -> Path:
    """``root/name``, or ``root/name-2``, ... if a run of the same second and name exists."""
    candidate, n = root / name, 1
    while candidate.exists():
        n += 1
        candidate = root / f"{name}-{n}"
    return candidate


def run_cli(main, args=None) -> None:
    """Call ``main(args)``; a NegSeqError becomes one line on stderr and exit status 2, not a traceback."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        main(args)
    except NegSeqError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
