"""The plain files every run leaves in its directory, so that notebooks and tables read files.

``history.jsonl`` (one line per epoch), ``metrics.json`` (final test metrics),
``recommendations.parquet`` (top-k per test user, original ids), ``per_user.parquet`` (each test
user's held-out target, its sign and its rank, for paired comparisons: :mod:`negseq.paired`); ``config.yaml`` and the
checkpoints are written by Lightning's own callbacks.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import lightning as L
import polars as pl
import torch

# metric names as logged under "val/" and "test/"
METRIC_KEYS = (
    "hr_p@10",
    "ndcg_p@10",
    "mrr_p@10",
    "hr_n@10",
    "ndcg_n@10",
    "mrr_n@10",
    "delta_hr@10",
    "delta_ndcg@10",
    "coverage@10",
)


class EpochHistory(L.Callback):
    """Appends each epoch's epoch-level metrics (train loss terms, validation metrics) and duration to ``history.jsonl``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._started = 0.0
        self._first_epoch = True

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._first_epoch = True

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._first_epoch and trainer.is_global_zero and self.path.is_file():
            # the first epoch this fit runs (a resumed fit: the one after its checkpoint's) and the later
            # ones are run now: forget the rows of a previous process that got that far. Decided here, not
            # at fit start, where Lightning has not yet moved past an epoch that the checkpoint completed.
            rows = [line for line in self.path.read_text().splitlines() if json.loads(line)["epoch"] <= trainer.current_epoch]
            self.path.write_text("".join(row + "\n" for row in rows))
        self._first_epoch = False
        self._started = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # runs after this epoch's validation, so the row holds both
        if not trainer.is_global_zero or trainer.sanity_checking:
            return
        row = {"epoch": trainer.current_epoch + 1, "epoch_seconds": time.perf_counter() - self._started}
        for name, value in trainer.callback_metrics.items():
            if not name.endswith("_step"):
                row[name.removesuffix("_epoch")] = float(value)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as file:
            file.write(json.dumps(row) + "\n")


def best_epoch(checkpoint_path: str | Path) -> int:
    """1-based number of the epoch whose weights a Lightning checkpoint holds."""
    return int(torch.load(checkpoint_path, map_location="cpu", weights_only=True)["epoch"]) + 1


def write_metrics(
    run_dir: Path, val_results: dict[str, float], test_results: dict[str, float], best: int, fit_seconds: float, negative_scoring: float
) -> dict:
    """``metrics.json``: test metrics under their fixed names and user counts, the same on validation (best
    checkpoint, as ranked for the test), best epoch, fit time and the negative-scoring weight used."""
    metrics = {}
    for stage, results in (("test", test_results), ("val", val_results)):
        metrics.update({f"{stage}/{key}": float(results[f"{stage}/{key}"]) for key in METRIC_KEYS})
        metrics[f"{stage}/n_users_pos"] = int(results[f"{stage}/n_users_pos"])
        metrics[f"{stage}/n_users_neg"] = int(results[f"{stage}/n_users_neg"])
    metrics["best_epoch"] = best
    metrics["fit_seconds"] = round(fit_seconds, 3)
    metrics["negative_scoring"] = float(negative_scoring)
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def write_selection(run_dir: Path, weights: list[float], results: list[dict[str, float]], monitor: str, chosen: int) -> None:
    """``selection.json``: each candidate negative-scoring weight's validation metrics, and the one chosen on ``monitor``."""
    candidates = [{"negative_scoring": weight, **result} for weight, result in zip(weights, results)]
    (run_dir / "selection.json").write_text(json.dumps({"monitor": monitor, "chosen": weights[chosen], "candidates": candidates}, indent=2) + "\n")


def recommendations_frame(predictions: list[dict[str, torch.Tensor]], datamodule) -> pl.DataFrame:
    """Long frame ``user_id, item_id, rank, score`` in original ids from ``predict_step`` outputs."""
    users = torch.cat([batch["user"] for batch in predictions])  # (U,)
    order = users.argsort(stable=True)  # user order, whatever process (each with every n-th user under DDP) made a batch
    users = users[order]
    items = torch.cat([batch["items"] for batch in predictions])[order]  # (U, k)
    scores = torch.cat([batch["scores"] for batch in predictions])[order]  # (U, k)
    k = items.shape[1]
    ranks = torch.arange(1, k + 1).repeat(len(users))
    keep = items.flatten() > 0  # a slot with no recommendable item
    decoded = datamodule.decode(users.repeat_interleave(k)[keep].tolist(), items.flatten()[keep].tolist())
    return decoded.with_columns(rank=pl.Series(ranks[keep].tolist(), dtype=pl.Int32), score=pl.Series(scores.flatten()[keep].tolist(), dtype=pl.Float32))


def per_user_frame(predictions: list[dict[str, torch.Tensor]], datamodule, k: int) -> pl.DataFrame:
    """``user_id, item_id, positive, rank`` per test user from ``predict_step`` outputs: the held-out target
    in original ids, whether it was liked, and its rank (Int32 1..k; null when outside the top ``k`` or unrankable)."""
    users = torch.cat([batch["user"] for batch in predictions])  # (U,)
    order = users.argsort(stable=True)
    targets = torch.cat([batch["target"] for batch in predictions])[order]  # (U,)
    positive = torch.cat([batch["target_positive"] for batch in predictions])[order]  # (U,)
    ranks = torch.cat([batch["rank"] for batch in predictions])[order]  # (U,) float, inf when unrankable
    rank = [int(r) if r <= k else None for r in ranks.tolist()]
    return datamodule.decode(users[order].tolist(), targets.tolist()).with_columns(
        positive=pl.Series(positive.bool().tolist(), dtype=pl.Boolean), rank=pl.Series(rank, dtype=pl.Int32)
    )


def format_table(metrics: dict) -> str:
    """A plain two-column table of the final metrics for the terminal."""
    width = max(len(key) for key in metrics)
    lines = [f"{'metric':<{width}}  value", f"{'-' * width}  ------"]
    for key, value in metrics.items():
        lines.append(f"{key:<{width}}  {value:.4f}" if isinstance(value, float) else f"{key:<{width}}  {value}")
    return "\n".join(lines)
