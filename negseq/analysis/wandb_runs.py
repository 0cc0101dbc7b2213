"""The same frames as :mod:`negseq.analysis.runs` from a W&B project (online only), and merging both."""

from __future__ import annotations

import json
import tempfile
import warnings
from typing import Any, Mapping, Optional

import polars as pl

from negseq import layout
from negseq.analysis.runs import RUN_COLUMNS, _frame, _identity

# -- the same from a W&B project (online) --


def _wandb_runs(project: str, entity: Optional[str], api) -> list:
    """The finished runs (with test metrics) of a W&B project; none, with a warning, when the project does not exist."""
    if api is None:
        import wandb

        api = wandb.Api(timeout=30)
    path = f"{entity}/{project}" if entity else project
    try:
        return [run for run in api.runs(path) if run.state == "finished" and any(key.startswith("test/hr_p@") for key in run.summary_metrics)]
    except ValueError as error:  # wandb: "Could not find project ..."
        warnings.warn(f"W&B project {path}: {error}", stacklevel=3)
        return []


def _wandb_identity(run) -> dict[str, Any]:
    return {"run_dir": "wandb:" + "/".join(run.path), "source": "wandb", **_identity(run.config, run.name or run.id)}


def _is_metric(key: str) -> bool:
    """A metrics.json key of any cutoff (``test/hr_p@5``, ``test/n_users_pos``, ``best_epoch``, ...), not the recommendations table."""
    return key.startswith(("test/", "val/")) and "@" in key or key.endswith(layout.USER_COUNTS) or key in ("best_epoch", "fit_seconds", "negative_scoring")


def load_wandb_runs(project: str = "negseq", entity: Optional[str] = None, api=None) -> pl.DataFrame:
    """One row per finished run of a W&B project, with the columns of :func:`load_runs` that W&B holds.

    ``run_dir`` is ``wandb:ENTITY/PROJECT/ID``; the config is the run config the CLI logged and
    the metrics are the run summary (metrics.json). ``api`` defaults to ``wandb.Api()``.
    """
    rows = []
    for run in _wandb_runs(project, entity, api):
        summary = run.summary_metrics
        rows.append({**_wandb_identity(run), "wandb_id": run.id, **{key: summary[key] for key in summary if _is_metric(key)}})
    return _frame(rows)


def load_wandb_history(project: str = "negseq", entity: Optional[str] = None, api=None) -> pl.DataFrame:
    """Per-epoch rows of every finished run of a W&B project, shaped like :func:`load_history`.

    Lightning logs train and validation metrics in separate steps, each with its 0-based
    ``epoch``; they are merged by epoch, which becomes 1-based, and ``train/loss_epoch`` is
    named ``train/loss`` as in history.jsonl.
    """
    rows = []
    for run in _wandb_runs(project, entity, api):
        identity = _wandb_identity(run)
        base = {**{key: identity[key] for key in RUN_COLUMNS}, "wandb_id": run.id}
        epochs: dict[int, dict] = {}
        for step in run.scan_history():
            metrics = {
                ("train/loss" if key == "train/loss_epoch" else key): value
                for key, value in step.items()
                if key.startswith("val/") or (key.startswith("train/") and not key.endswith("_step"))
            }
            if metrics and step.get("epoch") is not None:
                epochs.setdefault(int(step["epoch"]) + 1, {}).update(metrics)
        rows.extend({**base, "epoch": epoch, **metrics} for epoch, metrics in sorted(epochs.items()))
    return _frame(rows, sort=("model", "config", "seed", "run_dir", "epoch"))


def load_wandb_recommendations(project: str = "negseq", entity: Optional[str] = None, api=None) -> pl.DataFrame:
    """The ``test/recommendations`` tables of a W&B project's finished runs (a sample of test users each), with run columns."""
    frames = []
    with tempfile.TemporaryDirectory() as folder:
        for run in _wandb_runs(project, entity, api):
            entry = run.summary_metrics.get(layout.WANDB_TABLE_KEY)
            if not isinstance(entry, Mapping) or "path" not in entry:
                continue
            handle = run.file(entry["path"]).download(root=folder, replace=True)
            with handle:
                table = json.load(handle)
            identity = _wandb_identity(run)
            frame = pl.DataFrame(table["data"], schema=table["columns"], orient="row")
            frames.append(frame.with_columns(
                **{key: pl.lit(identity[key]) for key in ("run_dir", "source", "config", "model")},
                seed=pl.lit(identity["seed"], dtype=pl.Int64), wandb_id=pl.lit(run.id, dtype=pl.String),
            ))
    return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()


def combine_runs(local: pl.DataFrame, remote: pl.DataFrame) -> pl.DataFrame:
    """Local and W&B rows in one frame (runs, history or recommendations alike).

    A W&B run whose id a local run directory records in ``wandb-id`` (a run that was synced or
    logged online) is kept once, from the local files.
    """
    if remote.is_empty():
        return local
    if local.is_empty():
        return remote
    if "wandb_id" in local.columns and "wandb_id" in remote.columns:
        synced = local.get_column("wandb_id").drop_nulls().cast(pl.String).implode()
        remote = remote.filter(~pl.col("wandb_id").cast(pl.String).is_in(synced))
    return pl.concat([local, remote], how="diagonal_relaxed")
