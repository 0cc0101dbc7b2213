"""The plain files every run leaves in its directory, so that notebooks and tables read files.

``metrics.json`` (final metrics), ``recommendations.parquet`` (top-k per test user, original
ids), ``per_user.parquet`` (each test user's target and its rank), ``selection.json``;
``history.jsonl`` is written by :class:`negseq.training.callbacks.EpochHistory`, ``config.yaml`` and the
checkpoints by Lightning's callbacks. File names are :mod:`negseq.layout`'s.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import polars as pl
import torch

from negseq import layout
from negseq.models.ranking_weights import WEIGHTS


def _number(key: str, value: float) -> float | int | None:
    """A metric as JSON: user counts as integers; a metric over an empty group (NaN) as null."""
    value = float(value)
    if key.rsplit("/", 1)[-1] in layout.USER_COUNTS:
        return int(value)
    return None if math.isnan(value) else value


def write_metrics(
    run_dir: Path, val_results: dict[str, float], test_results: dict[str, float], best: int, fit_seconds: float, weights: dict[str, float],
    k: int = layout.DEFAULT_K, ks: tuple[int, ...] = (), options: list[dict[str, float]] | None = None, curve: list[dict[str, float]] | None = None,
) -> dict:
    """``metrics.json``: every test metric (:func:`negseq.layout.metric_keys` of ``k`` and ``ks``) and user count, the
    same on validation (best checkpoint, as ranked for the test), best epoch, fit time and the ranking ``weights`` used
    (:data:`negseq.models.ranking_weights.WEIGHTS`). A metric over a group with no user (no disliked validation target) is null.
    With ``curve`` (each of ``options``' test metrics), ``ranking_curve``: ``[{"weights": option, "test/...": value}, ...]``."""
    metrics = {}
    for stage, results in (("test", test_results), ("val", val_results)):
        metrics.update({key: _number(key, results[key]) for key in layout.metric_keys(stage, k, ks)})
    metrics["best_epoch"] = best
    metrics["fit_seconds"] = round(fit_seconds, 3)
    metrics.update({name: float(weights[name]) for name in WEIGHTS})
    if curve is not None:
        keys = layout.metric_keys("test", k, ks)
        metrics["ranking_curve"] = [{"weights": option, **{key: _number(key, result[key]) for key in keys if key in result}} for option, result in zip(options, curve)]
    (run_dir / layout.METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def write_fit_metrics(run_dir: Path, best: int, fit_seconds: float) -> dict:
    """``metrics.json`` of a fit on every event (``--data.split none``): no held-out user, so only the epochs and the time."""
    metrics = {"best_epoch": best, "fit_seconds": round(fit_seconds, 3)}
    (run_dir / layout.METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def write_selection(
    run_dir: Path, options: list[dict[str, float]], results: list[dict[str, float]], monitor: str, chosen: int, tolerance: float | None = None,
    min_suppression: float | None = None, within_noise: float | None = None,
) -> None:
    """``selection.json``: each candidate's ranking weights and validation metrics, and the weights chosen on ``monitor``."""
    candidates = [{**option, **{key: _number(key, value) for key, value in result.items()}} for option, result in zip(options, results)]
    selection = {"monitor": monitor, "tolerance": tolerance, "within_noise": within_noise, "min_suppression": min_suppression, "chosen": options[chosen], "candidates": candidates}
    (run_dir / layout.SELECTION_FILE).write_text(json.dumps(selection, indent=2) + "\n")


def _in_user_order(predictions: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """``predict_step`` outputs concatenated and sorted by user, whatever process (each with every n-th user under DDP) made a batch."""
    users = torch.cat([batch["user"] for batch in predictions])  # (U,)
    order = users.argsort(stable=True)
    return {name: torch.cat([batch[name] for batch in predictions])[order] for name in predictions[0]}


def recommendations_frame(predictions: list[dict[str, torch.Tensor]], datamodule) -> pl.DataFrame:
    """Long frame ``user_id, item_id, rank, score`` in original ids from ``predict_step`` outputs."""
    columns = _in_user_order(predictions)
    users, items, scores = columns["user"], columns["items"], columns["scores"]  # (U,), (U, k), (U, k)
    k = items.shape[1]
    ranks = torch.arange(1, k + 1).repeat(len(users))
    keep = items.flatten() > 0  # a slot with no recommendable item
    decoded = datamodule.decode(users.repeat_interleave(k)[keep].tolist(), items.flatten()[keep].tolist())
    return decoded.with_columns(rank=pl.Series(ranks[keep].tolist(), dtype=pl.Int32), score=pl.Series(scores.flatten()[keep].tolist(), dtype=pl.Float32))


def per_user_frame(predictions: list[dict[str, torch.Tensor]], datamodule) -> pl.DataFrame:
    """``user_id, item_id, positive, rank``: each test user's held-out item (original ids), whether it was liked,
    and its rank in the user's recommendations (Int32 1..k, the same as in recommendations.parquet; null when absent)."""
    columns = _in_user_order(predictions)
    ranks = columns["rank"]  # (U,) float, inf when not in the top k
    return datamodule.decode(columns["user"].tolist(), columns["target"].tolist()).with_columns(
        positive=pl.Series(columns["target_positive"].tolist(), dtype=pl.Boolean),
        rank=pl.Series([int(r) if math.isfinite(r) else None for r in ranks.tolist()], dtype=pl.Int32),
    )


def format_table(metrics: dict) -> str:
    """A plain two-column table of the final metrics for the terminal (``ranking_curve`` is in metrics.json only)."""
    metrics = {key: value for key, value in metrics.items() if not isinstance(value, list)}
    width = max(len(key) for key in metrics)
    lines = [f"{'metric':<{width}}  value", f"{'-' * width}  ------"]
    for key, value in metrics.items():
        shown = f"{value:.4f}" if isinstance(value, float) else "n/a (no user)" if value is None else value
        lines.append(f"{key:<{width}}  {shown}")
    return "\n".join(lines)
