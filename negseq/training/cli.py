"""The LightningCLI shared by ``python -m negseq`` (subcommands) and ``python -m negseq.fit`` (= ``fit``).

It adds early stopping and checkpointing on validation NDCG_p@k (k = ``--model.k``), links
data-derived sizes into the model, and gives every run its own directory under
``--trainer.default_root_dir`` (or ``--run_dir``): checkpoints, config.yaml, history, W&B files
and results all land there, whatever the logger. After ``fit`` its ``after_fit`` hook runs the
rest of the job (:func:`negseq.training.job.finish_fit`): choose ``--select_negative_scoring`` and
``--select_dislike_demotion`` and ``--select_polarity_prior`` on validation, test, predict, write the run's files; the last line printed is the run directory.
"""

from __future__ import annotations

import os
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Optional

from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.callbacks import EarlyStopping
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from negseq import layout
from negseq.data import FeedbackDataModule
from negseq.errors import ConfigError, NegSeqError
from negseq.models.ranking_weights import WEIGHTS
from negseq.training.allocator import keep_freed_memory
from negseq.training.callbacks import BestAndLastCheckpoint, EpochHistory, RandomStateCheckpoint
from negseq.training.job import finish_fit, finish_full_fit
from negseq.training.module import NegSeqModule, architecture_differences
from negseq.training.selection import candidates, check_selection
from negseq.training.tracking import SaveConfigToLoggers

DEFAULT_ROOT = layout.DEFAULT_ROOT
K = "k"  # a monitor's cutoff that --model.k fills in
RUN_DIR_ENV = "NEGSEQ_RUN_DIR"  # rank 0's run directory, for the processes Lightning starts for the other devices

TRAINER_DEFAULTS = {
    "max_epochs": 100,
    # early stopping cannot end a fit before 300 optimizer steps (19,200 training sequences at batch 64): validation first
    # plateaus on popularity for a number of steps, not epochs (30 epochs of ml-latest-small, 9 of Steam: experiments/QUALITY.md)
    "min_steps": 300,
    "default_root_dir": DEFAULT_ROOT,
    "log_every_n_steps": 1,
    "num_sanity_val_steps": 0,
    "logger": {"class_path": "negseq.training.tracking.WandbLogger", "init_args": {"project": "negseq"}},
}


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
        # read by `fit` only; every subcommand accepts them, so that a fit's config.yaml loads anywhere
        parser.add_argument(
            "--select_negative_scoring", type=Optional[list[float]], default=None,
            help="Candidate lambdas of --model.negative_scoring, chosen after the fit on --select_monitor (validation only).",
        )
        parser.add_argument(
            "--select_dislike_demotion", type=Optional[list[float]], default=None,
            help="Candidate lambdas of --model.dislike_demotion, chosen with those of --select_negative_scoring (every pair).",
        )
        parser.add_argument(
            "--select_polarity_prior", type=Optional[list[float]], default=None,
            help="Candidate lambdas of --model.polarity_prior (the items' log like rate), chosen with the others (every combination).",
        )
        parser.add_argument(
            "--select_sign_scoring", type=Optional[list[float]], default=None,
            help="Candidate lambdas of --model.sign_scoring (the sign head's logit), chosen with the others (every combination).",
        )
        parser.add_argument(
            "--select_tolerance", type=Optional[float], default=None,
            help="Only candidates whose validation NDCG_p@k is within this share (0.02 = 2 %%) of the smallest weights' compete.",
        )
        parser.add_argument(
            "--select_within_noise", type=Optional[float], default=None,
            help="Only candidates whose validation HR_p@k is at least the smallest weights' minus this many binomial standard errors compete.",
        )
        parser.add_argument(
            "--select_min_suppression", type=Optional[float], default=None,
            help="Only candidates whose validation neighbour_suppression@k (the answer to a counterfactual dislike) reaches this compete.",
        )
        # a monitor ending in "@k" follows --model.k: val/ndcg_p@k is val/ndcg_p@5 with --model.k 5
        parser.add_argument(
            "--select_monitor", type=str, default=layout.selection_monitor(K), help="Validation metric that the selection optimises (maximises; minimises a disliked-target metric such as val/hr_n@k)."
        )
        parser.add_lightning_class_args(EarlyStopping, "early_stopping")
        parser.set_defaults({"early_stopping.monitor": layout.monitor(K), "early_stopping.mode": "max", "early_stopping.patience": 10})
        parser.add_lightning_class_args(BestAndLastCheckpoint, "checkpoint")
        parser.set_defaults({"checkpoint.monitor": layout.monitor(K), "checkpoint.mode": "max", "checkpoint.filename": "best", "checkpoint.save_last": True})
        parser.link_arguments("data.max_len", "model.max_len")
        parser.link_arguments("data.num_items", "model.num_items", apply_on="instantiate")
        parser.link_arguments("data.num_train_items", "model.num_train_items", apply_on="instantiate")

    def parse_arguments(self, parser: LightningArgumentParser, args) -> None:
        """Parse, and note which ``--model.*`` flags the command line names (for :meth:`_parse_ckpt_path`)."""
        super().parse_arguments(parser, args)
        argv = sys.argv[1:] if args is None else args if isinstance(args, (list, tuple)) else []
        self.model_flags = [arg.removeprefix("--model.").split("=", 1)[0] for arg in argv if isinstance(arg, str) and arg.startswith("--model.")]

    def _parse_ckpt_path(self) -> None:
        """Lightning replaces the ``model`` arguments with the hyper-parameters of ``--ckpt_path``'s checkpoint: an architecture
        flag that the checkpoint contradicts would be dropped without a word, so it is an error instead."""
        given = self._model_arguments(self.model_flags)
        super()._parse_ckpt_path()
        saved = self._model_arguments(given)  # the checkpoint's value, or still the flag's where the checkpoint lacks the name
        differs = architecture_differences(saved, given)
        if differs:
            trained = ", ".join(f"{name}={saved[name]}" for name in differs)
            flags = " ".join(f"--model.{name} {given[name]}" for name in differs)
            raise ConfigError(
                f"--ckpt_path {self.config[self.config.subcommand].ckpt_path} was trained with {trained} but the command line has {flags}: "
                "the checkpoint's network is loaded, so drop such flags (or fit a new model)"
            )

    def _model_arguments(self, names) -> dict:
        """The subcommand's ``model`` arguments of these names, as parsed so far."""
        model = self.config[self.config.subcommand].model if self.config.get("subcommand") else {}
        return {name: model[name] for name in names if name in model}

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
        self._set_monitors(config)
        if self.subcommand == "fit" and config.data.split == "none":
            self._train_on_everything(config)
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
        config.checkpoint.dirpath = config.checkpoint.dirpath or str(run_dir / layout.CHECKPOINT_DIR)
        loggers = config.trainer.logger if isinstance(config.trainer.logger, list) else [config.trainer.logger]
        for logger in loggers:
            init_args = getattr(logger, "init_args", None)
            if init_args is not None and "save_dir" in init_args and init_args.save_dir in (None, "."):  # Lightning's "." would mix runs
                init_args.save_dir = str(run_dir)
            if getattr(logger, "class_path", "").endswith("WandbLogger"):
                init_args.name = init_args.name or name
        self.history = EpochHistory(run_dir / layout.HISTORY_FILE)

    @staticmethod
    def _set_monitors(config) -> None:
        """Monitors ending in ``@k`` get ``--model.k``; a monitor naming a validation metric that is not logged is an error."""
        k, ks = config.model.k, config.model.ks or ()
        logged = layout.metric_keys("val", k, ks)
        for argument in ("early_stopping.monitor", "checkpoint.monitor", "select_monitor"):
            value = config.get(argument)
            if value.endswith(f"@{K}"):
                value = value.removesuffix(K) + str(k)
            if value.startswith("val/") and value not in logged:
                raise ConfigError(f"--{argument} {value} is not logged with --model.k {k} (ks {list(ks)}): use one of {list(logged)}")
            config[argument] = value

    @staticmethod
    def _train_on_everything(config) -> None:
        """``--data.split none``: nothing to validate on, so no validation, early stopping or best-checkpoint monitor;
        ``--trainer.max_epochs`` epochs, and ``best.ckpt`` (what serving loads) is the last epoch's model."""
        for name in WEIGHTS:
            if len(config[f"select_{name}"] or []) > 1:
                raise ConfigError(f"--select_{name} chooses on validation, which --data.split none has not: set --model.{name}")
        config.trainer.limit_val_batches = 0
        config.checkpoint.monitor = None  # the early_stopping callback is left out (instantiate_trainer)

    def before_fit(self) -> None:
        """Fail before training when the choice of ranking weights could not be made; start the fit clock."""
        config, hp = self.active_config, self.model.hparams
        if config.select_tolerance is not None and not 0 <= config.select_tolerance < 1:
            raise ConfigError(f"--select_tolerance must be in [0, 1), got {config.select_tolerance}")
        if config.select_min_suppression is not None and not config.select_min_suppression <= 1:
            raise ConfigError(f"--select_min_suppression must be at most 1 (all of the neighbours' mass gone), got {config.select_min_suppression}")
        if config.select_within_noise is not None and config.select_within_noise < 0:
            raise ConfigError(f"--select_within_noise must be >= 0 (standard errors of validation HR_p@k), got {config.select_within_noise}")
        self.selection_options = candidates(*(config[f"select_{name}"] or [hp[name]] for name in WEIGHTS))
        check_selection(self.selection_options, config.select_monitor, self.model, self.datamodule.validation_targets)
        self._fit_started = time.perf_counter()

    def after_fit(self) -> None:
        """The rest of the job: choose on validation, test, predict, write the run's files, print the run directory last."""
        fit_seconds = time.perf_counter() - self._fit_started
        if self.datamodule.split_name == "none":
            self.metrics = finish_full_fit(self.trainer, self.run_dir, fit_seconds)
            return
        config = self.active_config
        self.metrics = finish_fit(
            self.trainer, self.model, self.datamodule, self.run_dir, self.selection_options, config.select_monitor, fit_seconds, config.select_tolerance,
            config.select_min_suppression, config.select_within_noise,
        )

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
        kwargs["callbacks"] = [*callbacks, self.history, RandomStateCheckpoint()]
        trainer = super().instantiate_trainer(**kwargs)
        if self.subcommand == "fit" and self.active_config.data.split == "none":  # nothing to stop on
            trainer.callbacks = [callback for callback in trainer.callbacks if not isinstance(callback, EarlyStopping)]
        if str(trainer.precision).startswith("bf16") and isinstance(trainer.accelerator, CPUAccelerator) and not cpu_has_bf16_units():
            warnings.warn(
                f"--trainer.precision {trainer.precision} on a CPU without bf16 matrix units (no avx512_bf16 or amx_bf16 in "
                "/proc/cpuinfo): bf16 matmuls take a slow path there, an epoch ran 16x slower than 32-true (benchmarks/README.md)",
                stacklevel=1,
            )
        return trainer

    @property
    def run_dir(self) -> Path:
        return Path(self.active_config.run_dir)


def fit(args: list[str] | None = None) -> dict:
    """Run ``fit`` with ``args`` (default: the command line); returns the metrics written to metrics.json (empty off the main
    process). ``python -m negseq.fit`` and :meth:`negseq.Recommender.fit` call it."""
    cli = NegSeqCLI(args=None if args is None else ["fit", *args])
    return getattr(cli, "metrics", {})


def cpu_has_bf16_units(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this x86 CPU multiplies bf16 matrices in hardware (AVX512-BF16 or AMX); True where that cannot be read."""
    if platform.machine().lower() not in ("x86_64", "amd64") or not cpuinfo.is_file():
        return True
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.read_text().splitlines() if line.startswith("flags")), None)
    return flags is None or "avx512_bf16" in flags or "amx_bf16" in flags


def _fresh_dir(root: Path, name: str) -> Path:
    """``root/name``, or ``root/name-2``, ... if a run of the same second and name exists."""
    candidate, n = root / name, 1
    while candidate.exists():
        n += 1
        candidate = root / f"{name}-{n}"
    return candidate
