"""What a fit does after training: choose the ranking weights on validation, test, predict, write the run's files.

Called by the CLI's ``after_fit`` hook, so ``python -m negseq fit`` and ``python -m negseq.fit``
do the same job. Every process takes part in the validation, test and prediction passes; only
the main one writes files and prints.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch

from negseq import layout
from negseq.training.checkpoints import best_epoch, load_weights
from negseq.training.results import format_table, per_user_frame, recommendations_frame, write_fit_metrics, write_metrics, write_selection
from negseq.training.selection import choose, record_choice, validate_each
from negseq.training.tracking import finish_wandb, log_test_summary


def gather(trainer: L.Trainer, predictions: list) -> list:
    """Every process's prediction batches, on every process (a no-op on one device)."""
    if trainer.world_size == 1:
        return predictions
    parts = [None] * trainer.world_size
    torch.distributed.all_gather_object(parts, predictions)
    return [batch for part in parts for batch in part]


def finish_fit(
    trainer: L.Trainer, model: L.LightningModule, data, run_dir: Path, options: list[dict[str, float]], monitor: str, fit_seconds: float,
    tolerance: float | None = None, min_suppression: float | None = None, within_noise: float | None = None,
) -> dict:
    """Restore the best checkpoint, pick the ranking weights among ``options`` (:func:`negseq.training.selection.choose` on ``monitor``,
    NDCG_p@k within ``tolerance``, HR_p@k within ``within_noise`` standard errors, validation neighbour suppression@k at
    least ``min_suppression``), test and predict with them, write metrics.json (with a choice, every option's test
    metrics as ``ranking_curve``: the trade-off the weight moves along, reported, never chosen on),
    recommendations.parquet, per_user.parquet (and selection.json when there was a choice), fill the W&B
    summary, and print the metrics table then the run directory as the last line. Returns the metrics (empty off rank 0)."""
    best = trainer.checkpoint_callback.best_model_path
    load_weights(model, best)
    k = model.hparams.k
    floor = None if min_suppression is None else (f"val/neighbour_suppression@{k}", min_suppression)
    validation = validate_each(trainer, model, data, options, respond=floor is not None and len(options) > 1)
    chosen = choose(options, validation, monitor, tolerance, layout.monitor(k), floor, within_noise, f"val/hr_p@{k}")
    if trainer.is_global_zero:
        record_choice(best, options[chosen])
    trainer.strategy.barrier()
    (test_results,) = trainer.test(model, datamodule=data, ckpt_path=best, weights_only=True)
    curve = None
    if len(options) > 1:  # every other option's test metrics on the same weights; the chosen one's are the test's own
        others = validate_each(trainer, model, data, options[:chosen] + options[chosen + 1:], stage="test")
        curve = others[:chosen] + [test_results] + others[chosen:]
    predictions = gather(trainer, trainer.predict(model, datamodule=data, ckpt_path=best, weights_only=True))
    if not trainer.is_global_zero:
        return {}
    recommendations = recommendations_frame(predictions, data)
    recommendations.write_parquet(run_dir / layout.RECOMMENDATIONS_FILE)
    per_user_frame(predictions, data).write_parquet(run_dir / layout.PER_USER_FILE)
    hp = model.hparams
    metrics = write_metrics(run_dir, validation[chosen], test_results, best_epoch(best), fit_seconds, options[chosen], hp.k, hp.ks, options, curve)
    if len(options) > 1:
        write_selection(run_dir, options, validation, monitor, chosen, tolerance, min_suppression, within_noise)
    log_test_summary(trainer, metrics, recommendations, data, k=hp.k)
    finish_wandb()
    print(format_table(metrics))
    print(run_dir)
    return metrics


def finish_full_fit(trainer: L.Trainer, run_dir: Path, fit_seconds: float) -> dict:
    """After a ``--data.split none`` fit (nothing held out): metrics.json with the epochs trained (``best_epoch``: the
    last, whose model ``best.ckpt`` holds) and the fit time, no validation or test metric; print the run directory."""
    if not trainer.is_global_zero:
        return {}
    metrics = write_fit_metrics(run_dir, best_epoch(trainer.checkpoint_callback.best_model_path), fit_seconds)
    finish_wandb()
    print(format_table(metrics))
    print(run_dir)
    return metrics
