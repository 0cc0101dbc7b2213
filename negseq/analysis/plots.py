"""Plots of runs, histories and negative-scoring selections (matplotlib, imported only when plotting)."""

from __future__ import annotations

from typing import Optional, Sequence

import polars as pl

from negseq import layout
from negseq.analysis.runs import metric_stats

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


def plot_hr_scatter(runs: pl.DataFrame, by: str = "model", ax=None, k: Optional[int] = None):
    """HR_p@k against HR_n@k, a point per run and a cross (mean ± sd) per group: right and low is better.

    ``k`` defaults to the runs' cutoff (:func:`negseq.layout.run_cutoff`), as do the other plots'.
    """
    ax = _axes(ax)
    k = k or layout.run_cutoff(runs.columns)
    hr_p, hr_n = f"test/hr_p@{k}", f"test/hr_n@{k}"
    groups = _groups(runs, by)
    colors = _colors(groups)
    for group in groups:
        sub = runs.filter(pl.col(by) == group)
        x, y = sub.get_column(hr_p), sub.get_column(hr_n)
        ax.scatter(x, y, color=colors[group], alpha=0.45, s=30)
        ax.errorbar(
            x.mean(), y.mean(), xerr=x.std() or 0.0, yerr=y.std() or 0.0, color=colors[group], marker="X", markersize=10,
            markeredgecolor="black", capsize=3, label=f"{group} (n={sub.height})",
        )
    low = min(runs.get_column(hr_p).min(), runs.get_column(hr_n).min())
    high = max(runs.get_column(hr_p).max(), runs.get_column(hr_n).max())
    ax.plot([low, high], [low, high], linestyle="--", color="grey", linewidth=1, label="HR_n = HR_p (Delta_HR = 0)")
    ax.set_xlabel(f"HR_p@{k}: fraction of test users whose liked held-out item is in the top {k} (↑ better)")
    ax.set_ylabel(f"HR_n@{k}: fraction of test users whose disliked\nheld-out item is in the top {k} (↓ better)")
    ax.set_title("True-positive vs negative-promotion hit rate (dots: runs, crosses: mean ± sd)")
    ax.grid(alpha=0.3)
    ax.legend(title=by, fontsize="small")
    return ax


def plot_delta_bars(runs: pl.DataFrame, by: str = "model", ax=None, k: Optional[int] = None):
    """Delta_HR@k and Delta_NDCG@k (positive minus negative metric) per group, mean with sd error bars."""
    import numpy as np

    ax = _axes(ax)
    k = k or layout.run_cutoff(runs.columns)
    keys = {f"test/delta_hr@{k}": f"Delta_HR@{k}", f"test/delta_ndcg@{k}": f"Delta_NDCG@{k}"}
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
        ax, stats, by, f"Delta@{k} = positive − negative metric\n(fraction of users / NDCG units, ↑ better)",
        "Gap between liked and disliked held-out items (mean ± sd over runs)",
    )


def plot_validation_curves(history: pl.DataFrame, by: str = "model", metrics: Optional[Sequence[str]] = None, axes=None):
    """Validation metrics (or any history column; default ``val/ndcg_p@k, val/hr_p@k``) by epoch, a line (mean over runs)
    and a band (± sd) per group; one panel per metric.

    The validation users are by default those whose held-out item was liked (docs/data.md, "Splits and protocols"), so the
    ``_p`` metrics are the informative ones there; ``val/*_n`` have no user (null).
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    if metrics is None:
        k = layout.run_cutoff(column.replace("val/", "test/", 1) for column in history.columns)
        metrics = (f"val/ndcg_p@{k}", f"val/hr_p@{k}")

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


def plot_negative_scoring(selections: pl.DataFrame, metrics: Optional[Sequence[str]] = None, ax=None):
    """Validation metrics (default ``val/ndcg_p@k, val/ndcg_n@k, val/delta_ndcg@k``) against the negative-scoring weight
    lambda (mean ± sd over runs, from ``selection.csv``).

    Each candidate lambda is labelled with how many runs chose it; lambda = 0 is the paper's ranking.
    """
    ax = _axes(ax, figsize=(9, 5))
    k = layout.run_cutoff(column.replace("val/", "test/", 1) for column in selections.columns)
    metrics = metrics or (f"val/ndcg_p@{k}", f"val/ndcg_n@{k}", f"val/delta_ndcg@{k}")
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
    ax.set_ylabel(f"validation metric@{k}")
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


def plot_responsiveness(runs: pl.DataFrame, by: str = "model", axes=None, k: Optional[int] = None):
    """Two panels, a cross (mean ± sd over runs) per group: HR_p@k against HR_n@k, and HR_p@k against
    test neighbour suppression@k (how much of the top-k's mass on a disliked item's look-alikes a dislike removes)."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(12, 4.5), layout="constrained")
    k = k or layout.run_cutoff(runs.columns)
    hr_p = f"test/hr_p@{k}"
    groups = _groups(runs, by)
    colors = _colors(groups)
    for ax, (other, label) in zip(axes, ((f"test/hr_n@{k}", f"HR_n@{k} (↓ better)"), (f"test/neighbour_suppression@{k}", f"neighbour suppression@{k} (↑ more responsive)"))):
        for group in groups:
            sub = runs.filter(pl.col(by) == group)
            x, y = sub.get_column(hr_p), sub.get_column(other)
            ax.errorbar(
                x.mean(), y.mean(), xerr=x.std() or 0.0, yerr=y.std() or 0.0, color=colors[group], marker="X", markersize=10,
                markeredgecolor="black", capsize=3, label=f"{group} (n={sub.height})",
            )
        ax.set_xlabel(f"HR_p@{k} (↑ better)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(title=by, fontsize="small")
    axes[0].set_title("Liked vs disliked held-out items in the top-k (mean ± sd)")
    axes[1].set_title("Liked held-out items vs responsiveness to a dislike (mean ± sd)")
    return axes
