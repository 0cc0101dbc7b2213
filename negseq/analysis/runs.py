"""Finished runs from a directory of run directories: identity, config, metrics, history, recommendations; the summary table."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import polars as pl
import yaml

from negseq import layout
from negseq.models.families import family_of
from negseq.studies.runner import results_table
from negseq.training.module import DEFAULTS as MODEL_DEFAULTS

ENV_RUNS_DIR = "NEGSEQ_RUNS_DIR"
METRIC_COLUMNS = (*layout.metric_keys("test", layout.DEFAULT_K), "best_epoch", "fit_seconds")  # at the default k
RUN_COLUMNS = ("run_dir", "source", "config", "model", "seed")
# -- where the runs are --


def runs_dir(path: "str | os.PathLike | None" = None) -> Path:
    """The directory of finished runs: ``path``, else ``$NEGSEQ_RUNS_DIR``, else the CLI's ``runs``.

    ``runs`` is looked up in the working directory and then its parents, so a notebook executed
    from ``notebooks/`` finds the ``runs/`` that ``python -m negseq.fit`` made at the repository root.
    """
    if path:
        return Path(path)
    if os.environ.get(ENV_RUNS_DIR):
        return Path(os.environ[ENV_RUNS_DIR])
    here = Path.cwd()
    for folder in (here, *here.parents):
        if (folder / layout.DEFAULT_ROOT).is_dir():
            return folder / layout.DEFAULT_ROOT
    return here / layout.DEFAULT_ROOT


def find_runs(root: "str | os.PathLike | None" = None) -> list[Path]:
    """Every finished run directory (one holding ``metrics.json``) under ``root``, at any depth, sorted."""
    root = runs_dir(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such directory of runs (set {ENV_RUNS_DIR} or pass the directory)")
    return sorted(path.parent for path in root.rglob(layout.METRICS_FILE) if "wandb" not in path.relative_to(root).parts)


def read_config(run_dir: "str | os.PathLike") -> dict:
    """The run's ``config.yaml`` as a dict (empty when the run has none)."""
    path = Path(run_dir) / layout.CONFIG_FILE
    return (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}


def model_label(model: Mapping[str, Any]) -> str:
    """The paper's name of the model a ``model:`` configuration describes (its family's, NegSeqModule's defaults for
    missing keys), with the ranking options beyond the paper it turns on, so that runs of different models never share
    a label."""
    model = {**MODEL_DEFAULTS, **model}
    ranking = (" + dislike demotion" if float(model["dislike_demotion"] or 0) else "") + (
        " + polarity prior" if float(model["polarity_prior"] or 0) else ""
    )
    return family_of(model).label(model) + ranking


def _identity(config: Mapping[str, Any], fallback_name: str) -> dict[str, Any]:
    """``config`` (run name less a ``-seedN`` suffix), ``model`` label, ``seed`` and flat ``model.*``/``data.*`` values."""
    name = config.get("run_name") or fallback_name
    seed = config.get("seed_everything")
    row: dict[str, Any] = {
        "config": re.sub(r"-seed\d+$", "", str(name)),
        "model": model_label(config.get("model") or {}),
        "seed": int(seed) if isinstance(seed, (int, float)) and not isinstance(seed, bool) else None,
    }
    data = config.get("data") or {}
    row["dataset"] = Path(str(data["path"])).name if data.get("path") else "ml-latest-small"
    for section in ("model", "data"):
        for key, value in (config.get(section) or {}).items():
            if value is None or isinstance(value, (bool, int, float, str)):
                row[f"{section}.{key}"] = value
    row["trainer.max_epochs"] = (config.get("trainer") or {}).get("max_epochs")
    return row


def _frame(rows: list[dict], sort: Sequence[str] = ("model", "config", "seed", "run_dir")) -> pl.DataFrame:
    if not rows:
        return pl.DataFrame(schema={"run_dir": pl.String, "source": pl.String, "config": pl.String, "model": pl.String, "seed": pl.Int64})
    frame = pl.from_dicts(rows, infer_schema_length=None)
    return frame.sort([column for column in sort if column in frame.columns], nulls_last=True)


def _wandb_id(run_dir: Path) -> Optional[str]:
    """The W&B run id the run directory's ``wandb-id`` file records (see negseq.training.tracking.stable_run_id)."""
    path = run_dir / layout.WANDB_ID_FILE
    return (path.read_text().strip() or None) if path.is_file() else None


def _read_history(run_dir: Path) -> list[dict]:
    path = run_dir / layout.HISTORY_FILE
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


# -- finished runs from a directory --


def load_runs(root: "str | os.PathLike | None" = None) -> pl.DataFrame:
    """One row per finished run under ``root`` (default :func:`runs_dir`).

    Columns: ``run_dir, source ("local"), config, model, seed, dataset, wandb_id``, the flat
    ``model.*`` and ``data.*`` configuration, ``trainer.max_epochs``, every ``metrics.json`` key
    (``test/hr_p@10``, ..., ``best_epoch``, ``fit_seconds``), ``epochs`` (rows of
    history.jsonl), ``mean_epoch_seconds``, and from recommendations.parquet
    ``recommended_users`` and ``recommended_items`` (distinct items in all top-k lists).
    """
    rows = []
    for run_dir in find_runs(root):
        config = read_config(run_dir)
        history = _read_history(run_dir)
        row = {
            "run_dir": str(run_dir),
            "source": "local",
            **_identity(config, run_dir.name),
            "wandb_id": _wandb_id(run_dir),
            **json.loads((run_dir / layout.METRICS_FILE).read_text()),
            "epochs": len(history),
            "mean_epoch_seconds": (sum(r.get("epoch_seconds", 0.0) for r in history) / len(history)) if history else None,
        }
        recommendations = run_dir / layout.RECOMMENDATIONS_FILE
        if recommendations.is_file():
            counts = pl.read_parquet(recommendations).select(pl.col("user_id").n_unique(), pl.col("item_id").n_unique()).row(0)
            row["recommended_users"], row["recommended_items"] = counts
        rows.append(row)
    return _frame(rows)


def load_history(root: "str | os.PathLike | None" = None) -> pl.DataFrame:
    """One row per run and epoch of every ``history.jsonl`` under ``root``, with ``run_dir, source, config, model, seed, wandb_id``.

    Metric columns are those of the files: ``epoch`` (1-based), ``epoch_seconds``, ``train/loss``
    and the model's loss terms, ``val/*``. A term a model does not have is null.
    """
    rows = []
    for run_dir in find_runs(root):
        identity = _identity(read_config(run_dir), run_dir.name)
        base = {"run_dir": str(run_dir), "source": "local", **{key: identity[key] for key in ("config", "model", "seed")}, "wandb_id": _wandb_id(run_dir)}
        rows.extend({**base, **row} for row in _read_history(run_dir))
    return _frame(rows, sort=("model", "config", "seed", "run_dir", "epoch"))


def load_recommendations(root: "str | os.PathLike | None" = None) -> pl.DataFrame:
    """Every run's ``recommendations.parquet`` (``user_id, item_id, rank, score``) with ``run_dir, source, config, model, seed, wandb_id``.

    Ids are cast to strings when runs on different data have different id types.
    """
    frames = []
    for run_dir in find_runs(root):
        path = run_dir / layout.RECOMMENDATIONS_FILE
        if path.is_file():
            identity = _identity(read_config(run_dir), run_dir.name)
            frames.append(pl.read_parquet(path).with_columns(
                run_dir=pl.lit(str(run_dir)), source=pl.lit("local"), config=pl.lit(identity["config"]), model=pl.lit(identity["model"]),
                seed=pl.lit(identity["seed"], dtype=pl.Int64), wandb_id=pl.lit(_wandb_id(run_dir), dtype=pl.String),
            ))
    if not frames:
        return pl.DataFrame()
    if len({(f.schema["user_id"], f.schema["item_id"]) for f in frames}) > 1:
        frames = [f.with_columns(pl.col("user_id", "item_id").cast(pl.String)) for f in frames]
    return pl.concat(frames, how="diagonal_relaxed")


# -- the comparison table --


def summary_table(runs: pl.DataFrame, by: str = "model", order: Optional[Sequence[str]] = None) -> str:
    """Markdown table, a column per ``by`` group, a row per metric, mean ± sd over runs (negseq.studies.runner.results_table)."""
    frame = runs if by == "config" else runs.with_columns(pl.col(by).cast(pl.String).alias("config"))
    return results_table(frame, order=list(order) if order else None)


def metric_stats(runs: pl.DataFrame, keys: Sequence[str], by: str = "model") -> pl.DataFrame:
    """Per ``by`` group: ``n`` and ``KEY:mean``, ``KEY:sd`` (0 for a single run) of each metric key."""
    return (
        runs.group_by(by)
        .agg(pl.len().alias("n"), *[pl.col(k).mean().alias(f"{k}:mean") for k in keys], *[pl.col(k).std().fill_null(0.0).alias(f"{k}:sd") for k in keys])
        .sort(by)
    )
