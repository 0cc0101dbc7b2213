"""Finished runs back as polars frames, the comparison table, plots, and one user's recommendations.

The notebooks in ``notebooks/`` are built on these functions and on nothing else of their own:

- :func:`load_runs` (one row per run: identity, configuration, ``metrics.json``, epochs and
  recommendation counts), :func:`load_history` (one row per run and epoch of ``history.jsonl``),
  :func:`load_recommendations` (every run's ``recommendations.parquet``), all from a directory
  of run directories (``python -m negseq.fit`` runs or ``python -m negseq.experiments`` output);
- :func:`load_wandb_runs`, :func:`load_wandb_history`, :func:`load_wandb_recommendations`: the
  same from a W&B project (online only), and :func:`combine_runs` to merge both without
  counting a synced local run twice;
- :func:`summary_table` (mean ± sd per model, via :func:`negseq.experiments.results_table`) and
  the plots :func:`plot_hr_scatter`, :func:`plot_delta_bars`, :func:`plot_validation_curves`,
  :func:`plot_training_time` (matplotlib, imported only when plotting);
- :func:`load_model`, :func:`run_datamodule`, :func:`recommend_for_user`, :func:`user_events`,
  :func:`compare_recommendations`: score one user's history with saved checkpoints;
- :func:`item_titles`: movie titles of the embedded ml-latest-small (or of a MovieLens
  ``movies.csv``/``movies.dat`` next to a log).

Runs are grouped by ``model``, a label of the paper's model family read from the model's
configuration (:func:`model_label`), or by any other column (``config``: the config file's
name; ``model.alpha``, ...).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import warnings
from importlib import resources
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import polars as pl
import yaml

from negseq.cli import DEFAULT_ROOT
from negseq.experiments import results_table
from negseq.results import METRIC_KEYS
from negseq.tracking import ID_FILE, TABLE_KEY

ENV_RUNS_DIR = "NEGSEQ_RUNS_DIR"
METRIC_COLUMNS = (*(f"test/{key}" for key in METRIC_KEYS), "test/n_users_pos", "test/n_users_neg", "best_epoch", "fit_seconds")
RUN_COLUMNS = ("run_dir", "source", "config", "model", "seed")
LATER_DISLIKED = "✗ later disliked"
LATER_LIKED = "✓ later liked"


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
        if (folder / DEFAULT_ROOT).is_dir():
            return folder / DEFAULT_ROOT
    return here / DEFAULT_ROOT


def find_runs(root: "str | os.PathLike | None" = None) -> list[Path]:
    """Every finished run directory (one holding ``metrics.json``) under ``root``, at any depth, sorted."""
    root = runs_dir(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such directory of runs (set {ENV_RUNS_DIR} or pass the directory)")
    return sorted(path.parent for path in root.rglob("metrics.json") if "wandb" not in path.relative_to(root).parts)


def read_config(run_dir: "str | os.PathLike") -> dict:
    """The run's ``config.yaml`` as a dict (empty when the run has none)."""
    path = Path(run_dir) / "config.yaml"
    return (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}


def model_label(model: Mapping[str, Any]) -> str:
    """The paper's name of the model a ``model:`` configuration describes (see negseq.module), with the
    options beyond the paper it turns on, so that runs of different models never share a label."""
    history = model.get("history", "positives")  # missing keys: NegSeqModule's defaults
    alpha, beta = float(model.get("alpha", 0.45) or 0), float(model.get("beta", 0.25) or 0)
    if history == "all":
        if beta:
            return "SASRec_c"
        return "SASRec+unlikelihood" if float(model.get("unlikelihood_weight") or 0) else "SASRec"
    if alpha and beta:
        name = "PNFRec"
    elif alpha:
        name = "PNFRec CE+CE"
    else:
        name = "PNFRec CE+contrast" if beta else "SASRec_p"
    beyond = [
        "cosine contrast" if beta and model.get("cosine") else "",
        "contrast with earlier dislikes" if beta and model.get("contrast_negatives", "all") != "all" else "",
        "hard negatives" if float(model.get("hard_negative_weight") or 0) else "",
        f"{model['fusion']} fusion" if model.get("fusion", "none") != "none" else "",
        "negative scoring" if float(model.get("negative_scoring") or 0) else "",
    ]
    return " + ".join([name, *filter(None, beyond)])


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
    """The W&B run id the run directory's ``wandb-id`` file records (see negseq.tracking.stable_run_id)."""
    path = run_dir / ID_FILE
    return (path.read_text().strip() or None) if path.is_file() else None


def _read_history(run_dir: Path) -> list[dict]:
    path = run_dir / "history.jsonl"
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
            **json.loads((run_dir / "metrics.json").read_text()),
            "epochs": len(history),
            "mean_epoch_seconds": (sum(r.get("epoch_seconds", 0.0) for r in history) / len(history)) if history else None,
        }
        recommendations = run_dir / "recommendations.parquet"
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
        path = run_dir / "recommendations.parquet"
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


# -- the same from a W&B project (online) --


def _wandb_runs(project: str, entity: Optional[str], api) -> list:
    """The finished runs (with test metrics) of a W&B project; none, with a warning, when the project does not exist."""
    if api is None:
        import wandb

        api = wandb.Api(timeout=30)
    path = f"{entity}/{project}" if entity else project
    try:
        return [run for run in api.runs(path) if run.state == "finished" and "test/hr_p@10" in run.summary_metrics]
    except ValueError as error:  # wandb: "Could not find project ..."
        warnings.warn(f"W&B project {path}: {error}", stacklevel=3)
        return []


def _wandb_identity(run) -> dict[str, Any]:
    return {"run_dir": "wandb:" + "/".join(run.path), "source": "wandb", **_identity(run.config, run.name or run.id)}


def load_wandb_runs(project: str = "negseq", entity: Optional[str] = None, api=None) -> pl.DataFrame:
    """One row per finished run of a W&B project, with the columns of :func:`load_runs` that W&B holds.

    ``run_dir`` is ``wandb:ENTITY/PROJECT/ID``; the config is the run config the CLI logged and
    the metrics are the run summary (metrics.json). ``api`` defaults to ``wandb.Api()``.
    """
    rows = []
    for run in _wandb_runs(project, entity, api):
        summary = run.summary_metrics
        rows.append({**_wandb_identity(run), "wandb_id": run.id, **{key: summary[key] for key in METRIC_COLUMNS if key in summary}})
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
            entry = run.summary_metrics.get(TABLE_KEY)
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


# -- the comparison table --


def summary_table(runs: pl.DataFrame, by: str = "model", order: Optional[Sequence[str]] = None) -> str:
    """Markdown table, a column per ``by`` group, a row per metric, mean ± sd over runs (negseq.experiments.results_table)."""
    frame = runs if by == "config" else runs.with_columns(pl.col(by).cast(pl.String).alias("config"))
    return results_table(frame, order=list(order) if order else None)


def metric_stats(runs: pl.DataFrame, keys: Sequence[str], by: str = "model") -> pl.DataFrame:
    """Per ``by`` group: ``n`` and ``KEY:mean``, ``KEY:sd`` (0 for a single run) of each metric key."""
    return (
        runs.group_by(by)
        .agg(pl.len().alias("n"), *[pl.col(k).mean().alias(f"{k}:mean") for k in keys], *[pl.col(k).std().fill_null(0.0).alias(f"{k}:sd") for k in keys])
        .sort(by)
    )


# -- plots (matplotlib; every axis labelled, every figure with a legend) --


def _groups(frame: pl.DataFrame, by: str) -> list:
    return sorted(frame.get_column(by).unique().drop_nulls().to_list(), key=str)


def _colors(groups: Sequence) -> dict:
    import matplotlib.pyplot as plt

    cycle = plt.get_cmap("tab10")
    return {group: cycle(i % 10) for i, group in enumerate(groups)}


def _axes(ax, figsize=(7, 5)):
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax


def plot_hr_scatter(runs: pl.DataFrame, by: str = "model", ax=None):
    """HR_p@10 against HR_n@10, a point per run and a cross (mean ± sd) per group: right and low is better."""
    ax = _axes(ax)
    groups = _groups(runs, by)
    colors = _colors(groups)
    for group in groups:
        sub = runs.filter(pl.col(by) == group)
        x, y = sub.get_column("test/hr_p@10"), sub.get_column("test/hr_n@10")
        ax.scatter(x, y, color=colors[group], alpha=0.45, s=30)
        ax.errorbar(
            x.mean(), y.mean(), xerr=x.std() or 0.0, yerr=y.std() or 0.0, color=colors[group], marker="X", markersize=10,
            markeredgecolor="black", capsize=3, label=f"{group} (n={sub.height})",
        )
    low = min(runs.get_column("test/hr_p@10").min(), runs.get_column("test/hr_n@10").min())
    high = max(runs.get_column("test/hr_p@10").max(), runs.get_column("test/hr_n@10").max())
    ax.plot([low, high], [low, high], linestyle="--", color="grey", linewidth=1, label="HR_n = HR_p (Delta_HR = 0)")
    ax.set_xlabel("HR_p@10: fraction of test users whose liked held-out item is in the top 10 (↑ better)")
    ax.set_ylabel("HR_n@10: fraction of test users whose disliked\nheld-out item is in the top 10 (↓ better)")
    ax.set_title("True-positive vs negative-promotion hit rate (dots: runs, crosses: mean ± sd)")
    ax.grid(alpha=0.3)
    ax.legend(title=by, fontsize="small")
    return ax


def plot_delta_bars(runs: pl.DataFrame, by: str = "model", ax=None):
    """Delta_HR@10 and Delta_NDCG@10 (positive minus negative metric) per group, mean with sd error bars."""
    import numpy as np

    ax = _axes(ax)
    keys = {"test/delta_hr@10": "Delta_HR@10", "test/delta_ndcg@10": "Delta_NDCG@10"}
    stats = metric_stats(runs, list(keys), by)
    groups = stats.get_column(by).to_list()
    positions = np.arange(len(groups))
    width = 0.8 / len(keys)
    for i, (key, label) in enumerate(keys.items()):
        ax.bar(
            positions + (i - (len(keys) - 1) / 2) * width, stats.get_column(f"{key}:mean"), width,
            yerr=stats.get_column(f"{key}:sd"), capsize=4, label=label,
        )
    ax.axhline(0.0, color="black", linewidth=0.8)
    return _label_bars(
        ax, stats, by, "Delta@10 = positive − negative metric\n(fraction of users / NDCG units, ↑ better)",
        "Gap between liked and disliked held-out items (mean ± sd over runs)",
    )


def plot_validation_curves(history: pl.DataFrame, by: str = "model", metrics: Sequence[str] = ("val/ndcg_p@10", "val/hr_p@10"), axes=None):
    """Validation metrics (or any history column) by epoch, a line (mean over runs) and a band (± sd) per group; one panel per metric.

    The validation users are those whose held-out item was liked (see the README), so the
    ``_p`` metrics are the informative ones there; ``val/*_n`` are 0.
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    if axes is None:
        _, axes = plt.subplots(1, len(metrics), figsize=(6 * len(metrics), 4.5), layout="constrained", squeeze=False)
        axes = axes[0]
    groups = _groups(history, by)
    colors = _colors(groups)
    better = {"_p@": "↑ better", "_n@": "↓ better", "delta": "↑ better", "coverage": "↑ better", "loss": "nats, ↓ better"}
    for ax, metric in zip(axes, metrics):
        for group in groups:
            curve = (
                history.filter(pl.col(by) == group).filter(pl.col(metric).is_not_null()).group_by("epoch")
                .agg(pl.col(metric).mean().alias("mean"), pl.col(metric).std().fill_null(0.0).alias("sd"), pl.len().alias("n")).sort("epoch")
            )
            if curve.is_empty():
                continue
            epoch, mean, sd = curve.get_column("epoch"), curve.get_column("mean"), curve.get_column("sd")
            ax.plot(epoch, mean, color=colors[group], marker="." if curve.height < 30 else None, label=f"{group} (runs={int(curve.get_column('n').max())})")
            ax.fill_between(epoch, mean - sd, mean + sd, color=colors[group], alpha=0.15)
        hint = next((text for marker, text in better.items() if marker in metric), "")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        population = "validation users" if metric.startswith("val/") else "mean over training batches" if metric.startswith("train/") else ""
        ax.set_ylabel(f"{metric} ({', '.join(part for part in (population, hint) if part)})")
        ax.set_title(f"{metric} by epoch (mean ± sd over runs)")
        ax.grid(alpha=0.3)
        ax.legend(title=by, fontsize="small")
    return axes


def plot_training_time(runs: pl.DataFrame, by: str = "model", ax=None):
    """Wall-clock fit time per group (mean ± sd, seconds), each bar annotated with the mean number of epochs trained."""
    import numpy as np

    ax = _axes(ax)
    keys = ["fit_seconds"] + (["epochs"] if "epochs" in runs.columns else [])
    stats = metric_stats(runs, keys, by)
    groups = stats.get_column(by).to_list()
    positions = np.arange(len(groups))
    colors = _colors(groups)
    bars = ax.bar(
        positions, stats.get_column("fit_seconds:mean"), yerr=stats.get_column("fit_seconds:sd"), capsize=4,
        color=[colors[g] for g in groups], label="fit time, mean ± sd over runs",
    )
    if "epochs" in runs.columns:
        ax.bar_label(bars, labels=[f"{e:.0f} epochs" for e in stats.get_column("epochs:mean")], padding=3, fontsize="small")
    return _label_bars(ax, stats, by, "training time (s, fit incl. validation)", "Training time per model")


def plot_negative_scoring(selections: pl.DataFrame, metrics: Sequence[str] = ("val/ndcg_p@10", "val/ndcg_n@10", "val/delta_ndcg@10"), ax=None):
    """Validation metrics against the negative-scoring weight lambda (mean ± sd over runs, from ``selection.csv``).

    Each candidate lambda is labelled with how many runs chose it; lambda = 0 is the paper's ranking.
    """
    ax = _axes(ax, figsize=(9, 5))
    stats = metric_stats(selections, list(metrics), by="negative_scoring")
    weights = stats.get_column("negative_scoring").to_list()
    for key in metrics:
        ax.errorbar(weights, stats.get_column(f"{key}:mean"), yerr=stats.get_column(f"{key}:sd"), marker="o", capsize=3, label=key)
    chosen = selections.filter("chosen").group_by("negative_scoring").len()
    counts = dict(zip(chosen.get_column("negative_scoring").to_list(), chosen.get_column("len").to_list()))
    ax.set_xscale("symlog", linthresh=0.1)
    ax.set_xticks(weights, [f"{w:g}\n({counts.get(w, 0)}x)" for w in weights])
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xlabel("lambda in score = z_pos − lambda · z_neg (in brackets: runs that chose it on validation)")
    ax.set_ylabel("validation metric@10")
    ax.set_title("Negative-aware ranking: validation metrics by lambda (mean ± sd over runs)")
    ax.grid(alpha=0.3)
    ax.legend()
    return ax


def _label_bars(ax, stats: pl.DataFrame, by: str, ylabel: str, title: str):
    """Group names with their run counts under the bars, axis labels, title, grid and legend."""
    groups = stats.get_column(by).to_list()
    ax.set_xticks(range(len(groups)), [f"{g}\n(n={n})" for g, n in zip(groups, stats.get_column("n"))])
    ax.set_xlabel(by)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    return ax


# -- titles --


def _read_titles(path: Path) -> pl.DataFrame:
    if path.name.endswith(".dat"):  # MovieLens 1M/10M: MovieID::Title::Genres, latin-1
        rows = [line.split("::")[:2] for line in path.read_bytes().decode("latin-1").splitlines() if "::" in line]
        return pl.DataFrame(rows, schema=["item_id", "title"], orient="row").with_columns(pl.col("item_id").cast(pl.Int64))
    frame = pl.read_csv(path, infer_schema_length=10000)
    if not {"movieId", "title"} <= set(frame.columns):
        raise ValueError(f"{path}: expected columns movieId, title")
    return frame.select(item_id=pl.col("movieId").cast(pl.Int64), title=pl.col("title").cast(pl.String))


def item_titles(source: "str | os.PathLike | None" = None) -> Optional[pl.DataFrame]:
    """``item_id, title`` of the items of a log, or None when its data has no titles.

    ``source`` None: the embedded ml-latest-small's ``movies.csv.gz``. A log file or a folder:
    ``movies.csv``, ``movies.csv.gz`` or ``movies.dat`` beside it (the MovieLens layout).
    """
    if source is None:
        candidates = [Path(str(resources.files("negseq.data") / "ml_latest_small" / "movies.csv.gz"))]
    else:
        path = Path(source)
        folder = path if path.is_dir() else path.parent
        candidates = [folder / name for name in ("movies.csv", "movies.csv.gz", "movies.dat")]
    for candidate in candidates:
        if candidate.is_file():
            try:
                return _read_titles(candidate)
            except (ValueError, pl.exceptions.PolarsError):
                continue
    return None


def attach_titles(frame: pl.DataFrame, titles: Optional[pl.DataFrame], on: str = "item_id") -> pl.DataFrame:
    """``frame`` with a ``title`` column (null where unknown), row order kept; unchanged when ``titles`` is None."""
    if titles is None:
        return frame
    titles = titles.with_columns(pl.col("item_id").cast(frame.schema[on], strict=False)).rename({"item_id": on}).unique(on)
    return frame.join(titles, on=on, how="left", maintain_order="left")


# -- one user's recommendations from checkpoints --


def test_targets(data) -> pl.DataFrame:
    """``user_id, item_id, positive``: each test user's held-out item in original ids and its sign."""
    test = data.test_sequences
    return data.decode(test.user.tolist(), test.target.tolist()).with_columns(positive=pl.Series(test.target_positive.tolist(), dtype=pl.Boolean))


def _resolve_data_path(run_dir: Path, config: Mapping[str, Any], path: str) -> Path:
    """A relative ``data.path`` is relative to where the fit ran: found from the recorded and the actual run directory."""
    candidate = Path(path)
    if candidate.is_absolute() or candidate.exists():
        return candidate
    recorded = Path(str(config.get("run_dir") or ""))
    actual = Path(run_dir).resolve()
    if recorded.parts and not recorded.is_absolute() and actual.parts[-len(recorded.parts):] == recorded.parts:
        fit_cwd = actual.parents[len(recorded.parts) - 1]
        if (fit_cwd / candidate).exists():
            return fit_cwd / candidate
    return candidate


def run_datamodule(run_dir: "str | os.PathLike"):
    """The run's FeedbackDataModule, built from its config.yaml (same data, same split, same ids)."""
    from negseq.data import FeedbackDataModule

    config = read_config(run_dir)
    arguments = dict(config.get("data") or {})
    if arguments.get("path"):
        arguments["path"] = str(_resolve_data_path(Path(run_dir), config, arguments["path"]))
    return FeedbackDataModule(**arguments)


def load_model(checkpoint: "str | os.PathLike"):
    """A NegSeqModule from a checkpoint (``RUN/checkpoints/best.ckpt`` or a run directory), on CPU, in eval mode.

    The checkpoint is read with ``weights_only=True``: tensors and plain values, never pickled code.
    """
    from negseq.module import NegSeqModule

    checkpoint = Path(checkpoint)
    if checkpoint.is_dir():
        checkpoint = checkpoint / "checkpoints" / "best.ckpt"
    return NegSeqModule.load_from_checkpoint(checkpoint, map_location="cpu", weights_only=True).eval()


def _user_code(data, user_id) -> int:
    ids = data.split.user_ids.cast(pl.String).to_list()
    try:
        return ids.index(str(user_id))
    except ValueError:
        raise KeyError(f"user {user_id!r} is not in the data") from None


def recommend_for_user(model, data, user_id, k: Optional[int] = None) -> pl.DataFrame:
    """``rank, item_id, score`` (original ids): the model's top-k for a test (else validation) user.

    The model reads what the evaluation reads: the user's history before the held-out item,
    with every item the user already interacted with removed from the ranking.
    """
    import torch

    code = _user_code(data, user_id)
    for sequences in (data.test_sequences, data.validation_sequences):
        rows = (sequences.user == code).nonzero().flatten()
        if len(rows):
            break
    else:
        raise KeyError(f"user {user_id!r} is neither a test nor a validation user")
    with torch.no_grad():
        out = model.predict_step(sequences.take(rows[:1]), 0)
    items, scores = out["items"][0], out["scores"][0]
    keep = items > 0
    frame = data.decode([code] * int(keep.sum()), items[keep].tolist()).select("item_id")
    frame = frame.with_columns(rank=pl.int_range(1, frame.height + 1, dtype=pl.Int32), score=pl.Series(scores[keep].tolist(), dtype=pl.Float32))
    return frame.select("rank", "item_id", "score").head(k or frame.height)


def user_events(data, user_id) -> pl.DataFrame:
    """The test (else validation) user's events in time order: ``time, item_id, positive, is_target``; ``is_target`` marks the held-out (later) event."""
    code = _user_code(data, user_id)
    for events in (data.split.test, data.split.validation):
        mine = events.filter(pl.col("user") == code)
        if mine.height:
            break
    else:
        raise KeyError(f"user {user_id!r} is neither a test nor a validation user")
    mine = mine.sort("time", "row")
    items = data.decode([code] * mine.height, mine.get_column("item").to_list()).get_column("item_id")
    return mine.select("time", item_id=items, positive="positive", is_target="is_target")


def compare_recommendations(
    data, user_id, models: Mapping[str, Any], titles: Optional[pl.DataFrame] = None, rows: int = 10
) -> pl.DataFrame:
    """One table: the user's latest liked and disliked items next to each model's top-``rows``.

    Cells are ``title [item_id]`` (or the id alone without titles); a recommended item that is
    the user's held-out later event is marked ``✗ later disliked`` or ``✓ later liked``.
    """
    events = attach_titles(user_events(data, user_id), titles)

    def label(row: Mapping[str, Any]) -> str:
        return f"{row['title']} [{row['item_id']}]" if row.get("title") else str(row["item_id"])

    history = events.filter(~pl.col("is_target")).reverse()
    later = {row["item_id"]: row["positive"] for row in events.filter("is_target").iter_rows(named=True)}
    columns: dict[str, list[str]] = {
        "liked (newest first)": [label(r) for r in history.filter("positive").head(rows).iter_rows(named=True)],
        "disliked (newest first)": [label(r) for r in history.filter(~pl.col("positive")).head(rows).iter_rows(named=True)],
    }
    for name, model in models.items():
        top = attach_titles(recommend_for_user(model, data, user_id, rows), titles)
        cells = []
        for r in top.iter_rows(named=True):
            mark = "" if r["item_id"] not in later else ("  " + (LATER_LIKED if later[r["item_id"]] else LATER_DISLIKED))
            cells.append(label(r) + mark)
        columns[f"{name} top-{rows}"] = cells
    height = max([rows, *(len(cells) for cells in columns.values())])
    return pl.DataFrame({"rank": list(range(1, height + 1)), **{name: cells + [""] * (height - len(cells)) for name, cells in columns.items()}})


def default_comparison(runs: pl.DataFrame) -> dict[str, str]:
    """``{model: run_dir}``: a PNFRec run and a SASRec run on the same data (first by seed), falling back to other models."""
    if runs.is_empty():
        return {}
    local = runs.filter(pl.col("source") == "local") if "source" in runs.columns else runs
    local = local.sort("seed", "run_dir", nulls_last=True)

    def first(frame: pl.DataFrame, preferences: Sequence[str]) -> Optional[dict]:
        for label in preferences:
            match = frame.filter(pl.col("model") == label)
            if match.height:
                return match.row(0, named=True)
        return frame.row(0, named=True) if frame.height else None

    main = first(local, ["PNFRec", "PNFRec CE+contrast", "PNFRec CE+CE"])
    chosen = {main["model"]: main["run_dir"]}
    same_data = local.filter(pl.col("run_dir") != main["run_dir"])
    for column in ("data.path", "data.split", "data.threshold", "data.split_seed", "data.min_item_users", "data.min_user_items"):
        if column in same_data.columns:
            same_data = same_data.filter(pl.col(column).eq_missing(main[column]))
    other = first(same_data.filter(pl.col("model") != main["model"]), ["SASRec", "SASRec_p", "SASRec_c", "SASRec+unlikelihood"])
    if other is not None:
        chosen[other["model"]] = other["run_dir"]
    return chosen


def pick_user(data, recommendations: Mapping[str, pl.DataFrame]):
    """A test user worth looking at: one whose held-out item was disliked and that some but not all models put in their top-k.

    Falls back to a user whose disliked held-out item any model recommends, then to any user
    with a disliked held-out item, then to the first test user. ``recommendations``: model
    name -> that run's recommendations frame.
    """
    targets = test_targets(data)
    disliked = targets.filter(~pl.col("positive"))
    promoted = {}
    for name, frame in recommendations.items():
        hits = disliked.join(frame.select(pl.col("user_id").cast(targets.schema["user_id"]), pl.col("item_id").cast(targets.schema["item_id"])), on=["user_id", "item_id"], how="semi")
        for user in hits.get_column("user_id").to_list():
            promoted.setdefault(user, set()).add(name)
    some_not_all = [u for u in disliked.get_column("user_id").to_list() if 0 < len(promoted.get(u, ())) < len(recommendations)]
    any_model = [u for u in disliked.get_column("user_id").to_list() if promoted.get(u)]
    for candidates in (some_not_all, any_model, disliked.get_column("user_id").to_list(), targets.get_column("user_id").to_list()):
        if candidates:
            return candidates[0]
    raise ValueError("the data has no test users")
