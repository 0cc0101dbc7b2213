"""The LightningCLI shared by ``python -m negseq`` (subcommands) and ``python -m negseq.fit``.

It adds early stopping and checkpointing on validation NDCG_p@k, links data-derived sizes
into the model, and gives every run its own directory under ``--trainer.default_root_dir``
(or ``--run_dir``): checkpoints, config.yaml, W&B files and results all land there.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Optional

from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from negseq.data import FeedbackDataModule
from negseq.errors import NegSeqError
from negseq.module import NegSeqModule
from negseq.results import EpochHistory
from negseq.tracking import SaveConfigToLoggers

MONITOR = "val/ndcg_p@10"
DEFAULT_ROOT = "runs"

TRAINER_DEFAULTS = {
    "max_epochs": 100,
    "default_root_dir": DEFAULT_ROOT,
    "log_every_n_steps": 1,
    "num_sanity_val_steps": 0,
    "logger": {"class_path": "negseq.tracking.WandbLogger", "init_args": {"project": "negseq"}},
}


class NegSeqCLI(LightningCLI):
    """LightningCLI for :class:`NegSeqModule` and :class:`FeedbackDataModule` with per-run directories."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("trainer_defaults", TRAINER_DEFAULTS)
        kwargs.setdefault("save_config_callback", SaveConfigToLoggers)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("seed_everything_default", 42)
        super().__init__(NegSeqModule, FeedbackDataModule, *args, **kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--run_dir", type=Optional[str], default=None, help="Directory of this run (default: a new one under trainer.default_root_dir).")
        parser.add_argument("--run_name", type=Optional[str], default=None, help="Run name (default: the last config file's name).")
        parser.add_lightning_class_args(EarlyStopping, "early_stopping")
        parser.set_defaults({"early_stopping.monitor": MONITOR, "early_stopping.mode": "max", "early_stopping.patience": 10})
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
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
        name = config.run_name or (Path(str(config.config[-1])).stem if config.get("config") else "negseq")
        config.run_name = name
        if not config.run_dir:
            root = Path(config.trainer.default_root_dir or DEFAULT_ROOT)
            config.run_dir = str(_fresh_dir(root, f"{time.strftime('%Y%m%d-%H%M%S')}-{name}"))
        run_dir = Path(config.run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        config.trainer.default_root_dir = str(run_dir)
        config.checkpoint.dirpath = config.checkpoint.dirpath or str(run_dir / "checkpoints")
        logger = config.trainer.logger
        if getattr(logger, "class_path", "").endswith("WandbLogger"):
            if logger.init_args.get("save_dir") in (None, "."):  # Lightning's default "." would mix runs
                logger.init_args.save_dir = str(run_dir)
            logger.init_args.name = logger.init_args.name or name
        self.history = EpochHistory(run_dir / "history.jsonl")

    def instantiate_trainer(self, **kwargs):
        kwargs["callbacks"] = [*kwargs.get("callbacks", []), self.history]
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
