"""Weights & Biases logging that never waits on a network it does not have.

wandb raises "No API key configured" at the first log call when it has neither a key nor a
mode, and an online run without network hangs at start. So the mode is decided here, before
wandb is initialised: whatever ``WANDB_MODE`` says, else online when an API key is configured
and the W&B host answers, else offline (the run is written under the run directory and can be
synced later with ``wandb sync``).

What a run sends (see :class:`WandbLogger`, :class:`SaveConfigToLoggers`, :func:`log_test_summary`):

- the run config: the whole resolved LightningCLI configuration (the same as config.yaml, plus
  the sizes linked from the data into ``model``), once;
- per epoch, Lightning's own logging: every ``train/loss*`` term and every ``val/*`` metric;
- at the end: the test metrics (metrics.json) as the run summary, the best validation
  NDCG_p@k as ``val/best_ndcg_p@k`` (what experiments/sweep.yaml optimises) and a
  ``test/recommendations`` table: the top-k of a sample of test users, with titles when the
  data has them.

The W&B run id of a run directory is kept in its ``wandb-id`` file, so re-running with the
same ``--run_dir`` (e.g. to resume from ``--ckpt_path last``) continues the same W&B run.
"""

from __future__ import annotations

import netrc
import os
import secrets
import socket
import string
import sys
import threading
from pathlib import Path
from typing import Any, Mapping, Optional

import polars as pl
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import WandbLogger as _LightningWandbLogger
from lightning.pytorch.utilities import rank_zero_only

from negseq import layout
from negseq.data.titles import attach_titles

DEFAULT_HOST = "https://api.wandb.ai"
ID_FILE = layout.WANDB_ID_FILE
TABLE_KEY = layout.WANDB_TABLE_KEY
PROBE_SECONDS = 2.0


def _host() -> str:
    return os.environ.get("WANDB_BASE_URL", DEFAULT_HOST).split("://")[-1].split("/")[0]


def has_api_key() -> bool:
    """True when wandb would find credentials: ``WANDB_API_KEY`` or a netrc entry for its host."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators(_host()) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def host_reachable(timeout: float = PROBE_SECONDS) -> bool:
    """True when a TCP connection to the W&B host (or the HTTPS proxy) opens within ``timeout`` seconds.

    Name resolution is not bounded by socket timeouts, so the probe runs in a daemon thread
    that is abandoned after ``timeout``.
    """
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    url = proxy or os.environ.get("WANDB_BASE_URL", DEFAULT_HOST)
    scheme, _, rest = url.rpartition("://")
    netloc = rest.split("/")[0].rsplit("@", 1)[-1]
    host, _, port = netloc.partition(":")
    port_number = int(port) if port.isdigit() else (80 if scheme == "http" else 443)
    answered: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port_number), timeout=timeout).close()
            answered.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return bool(answered)


def wandb_mode() -> str:
    """``WANDB_MODE`` if set; else ``online`` with credentials and a reachable host; else ``offline``."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    return "online" if has_api_key() and host_reachable() else "offline"


def stable_run_id(run_dir: str | os.PathLike) -> str:
    """The W&B run id of ``run_dir``: the one in its ``wandb-id`` file, written on first use.

    ``WANDB_RUN_ID`` (set by ``wandb agent`` for each sweep run) wins and is recorded.
    """
    path = Path(run_dir) / ID_FILE
    from_env = os.environ.get("WANDB_RUN_ID")
    if not from_env and path.is_file():
        recorded = path.read_text().strip()
        if recorded:
            return recorded
    run_id = from_env or "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(run_id + "\n")
    return run_id


def _plain(value: Any) -> Any:
    """JSON-ready copy of a config value: paths become strings, containers are copied, odd objects are str()."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


class WandbLogger(_LightningWandbLogger):
    """Lightning's WandbLogger with the mode decided up front and a run id that belongs to the run directory.

    Args:
        mode: ``online``, ``offline`` or ``disabled``; default from :func:`wandb_mode`.
        **kwargs: passed to Lightning's ``WandbLogger`` (``project``, ``save_dir``, ``name``,
            ``id``, ...). Without ``id``/``version``, a run with a ``save_dir`` gets
            :func:`stable_run_id` of it, so a re-run in the same directory resumes the W&B run.

    The run config is the resolved CLI config that :class:`SaveConfigToLoggers` passes to
    :meth:`log_config`; once it is there, the module's own hyper-parameters, which Lightning
    logs again at every fit/test/predict, are not logged over it.
    """

    def __init__(self, *args: Any, mode: Optional[str] = None, **kwargs: Any) -> None:
        mode = mode or wandb_mode()
        save_dir = kwargs.get("save_dir")
        if mode != "disabled" and not (kwargs.get("id") or kwargs.get("version")) and save_dir not in (None, "", "."):
            kwargs["id"] = stable_run_id(save_dir)
        super().__init__(*args, mode=mode, **kwargs)
        if self._wandb_init.get("anonymous") is None:
            del self._wandb_init["anonymous"]  # Lightning passes None, on which wandb warns at every start
        self.mode = mode
        self._config_logged = False

    @rank_zero_only
    def log_config(self, config: Mapping[str, Any]) -> None:
        """Make ``config`` (a nested dict) the W&B run config."""
        self.experiment.config.update(_plain(config), allow_val_change=True)
        self._config_logged = True

    @rank_zero_only
    def log_hyperparams(self, params: Any) -> None:
        if self._config_logged:
            return  # already in the run config under "model", as the CLI resolved it
        super().log_hyperparams(params)


class SaveConfigToLoggers(SaveConfigCallback):
    """Write the resolved config to the run directory's ``config.yaml`` and send the whole of it to every logger, once.

    The sizes linked from the data at instantiation (``model.num_items``,
    ``model.num_train_items``) are not in the parsed config; they are taken from the module's
    hyper-parameters so that the logged config describes the model completely.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **{**kwargs, "save_to_log_dir": False})  # config.yaml goes to the run directory, not the logger's

    def save_config(self, trainer, pl_module, stage: str) -> None:
        # the CLI made the trainer's default_root_dir the run directory, whatever the logger (or none) writes where
        path = Path(trainer.default_root_dir) / self.config_filename
        path.parent.mkdir(parents=True, exist_ok=True)
        self.parser.save(self.config, str(path), skip_none=False, overwrite=self.overwrite, multifile=self.multifile)
        config = _plain(self.config.as_dict())
        model = config.get("model")
        if isinstance(model, dict):
            for key, value in pl_module.hparams.items():
                if not key.startswith("_") and model.get(key) is None:
                    model[key] = _plain(value)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_config(config)
            else:
                logger.log_hyperparams(config)


def _wandb_run(trainer):
    """The active W&B run of the trainer's W&B logger on the main process; None when there is none or it is disabled."""
    if not trainer.is_global_zero:
        return None
    for logger in trainer.loggers:
        if isinstance(logger, _LightningWandbLogger):
            if logger._wandb_init.get("mode") == "disabled":
                return None
            run = logger.experiment
            return None if run is None or getattr(run, "disabled", False) else run
    return None


def recommendations_table_rows(
    recommendations: pl.DataFrame, data, n_users: int = 20, seed: int = 0
) -> pl.DataFrame:
    """The top-k of ``n_users`` test users drawn with ``seed``, with their held-out item's fate and titles when known.

    Columns: ``user_id, rank, item_id, title`` (only when the data has titles), ``score``,
    ``held_out``: ``liked``/``disliked`` when the item is the user's held-out test item, else empty.
    """
    users = recommendations.get_column("user_id").unique().sort()
    if users.len() > n_users:
        users = users.sample(n_users, seed=seed).sort()
    rows = recommendations.filter(pl.col("user_id").is_in(users.implode()))
    targets = data.test_targets().select("user_id", "item_id", held_out=pl.when("positive").then(pl.lit("liked")).otherwise(pl.lit("disliked")))
    rows = rows.join(targets, on=["user_id", "item_id"], how="left").with_columns(pl.col("held_out").fill_null(""))
    titles = data.catalog.frame().select("item_id", "title") if data.catalog.titles is not None else None  # the run's own, if any
    rows = attach_titles(rows, titles)
    return rows.select("user_id", "rank", "item_id", *(["title"] if titles is not None else []), "score", "held_out").sort("user_id", "rank")


def log_test_summary(
    trainer, metrics: Mapping[str, Any], recommendations: "pl.DataFrame | str | os.PathLike", data, n_users: int = 20, k: int = layout.DEFAULT_K
) -> None:
    """End of a fit: test metrics as the W&B run summary, best validation score, and the recommendations table.

    ``recommendations`` is the run's recommendations frame or the path of its parquet file. Ids
    are strings in the table (logs may have integer or string ids). Does nothing without an
    active W&B run (``WANDB_MODE=disabled``, ``--trainer.logger false``) and off the main process.
    """
    run = _wandb_run(trainer)
    if run is None:
        return
    import wandb

    run.summary.update({key: value for key, value in metrics.items() if value is not None})  # a group with no user: absent
    if not isinstance(recommendations, pl.DataFrame):
        recommendations = pl.read_parquet(recommendations)
    rows = recommendations_table_rows(recommendations, data, n_users).with_columns(pl.col("user_id", "item_id").cast(pl.String))
    logged: dict[str, Any] = {TABLE_KEY: wandb.Table(columns=rows.columns, data=[list(row) for row in rows.iter_rows()])}
    callback = trainer.checkpoint_callback
    if callback is not None and callback.best_model_score is not None:
        logged[layout.best_monitor_key(k)] = float(callback.best_model_score)
    run.log(logged)  # logged values are also the summary's


def finish_wandb() -> None:
    """Close the active W&B run now, so its exit messages come before the run's own final lines."""
    wandb = sys.modules.get("wandb")  # not imported means no run was started: nothing to close
    if wandb is not None and wandb.run is not None:
        wandb.finish()
