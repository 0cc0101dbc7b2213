"""``python -m negseq.fit``: fit, restore the best checkpoint, validate it, test, and write the run's result files.

With ``--select_negative_scoring [0, 0.5, 1]`` the validation pass is made once per weight and
the best weight on ``--select_monitor`` (validation only) is used for the test and the
recommendations (:mod:`negseq.selection`).

The last line of output is the run directory, holding metrics.json, recommendations.parquet, per_user.parquet,
config.yaml, history.jsonl and checkpoints/ (best.ckpt, last.ckpt).
"""

from __future__ import annotations

import time
from typing import Optional

import torch

from negseq.cli import NegSeqCLI, run_cli
from negseq.results import best_epoch, format_table, per_user_frame, recommendations_frame, write_metrics, write_selection
from negseq.selection import check_selection, choose, validate_each
from negseq.tracking import finish_wandb, log_test_summary


class FitCLI(NegSeqCLI):
    def add_arguments_to_parser(self, parser) -> None:
        super().add_arguments_to_parser(parser)
        parser.add_argument("--ckpt_path", type=Optional[str], default=None, help="Resume training from this checkpoint ('last' = the run's last.ckpt).")


def gather(trainer, predictions: list) -> list:
    """Every process's prediction batches, on every process (a no-op on one device)."""
    if trainer.world_size == 1:
        return predictions
    parts = [None] * trainer.world_size
    torch.distributed.all_gather_object(parts, predictions)
    return [batch for part in parts for batch in part]


def main(args: Optional[list[str]] = None) -> dict:
    """Run the whole job; returns the metrics written to metrics.json."""
    cli = FitCLI(run=False, args=args)
    trainer, model, data, run_dir = cli.trainer, cli.model, cli.datamodule, cli.run_dir
    weights, monitor = cli.config.select_negative_scoring or [model.hparams.negative_scoring], cli.config.select_monitor
    check_selection(weights, monitor, model, data.validation_targets)
    started = time.perf_counter()
    trainer.fit(model, datamodule=data, ckpt_path=cli.config.ckpt_path, weights_only=True)
    fit_seconds = time.perf_counter() - started
    best = trainer.checkpoint_callback.best_model_path
    validation = validate_each(trainer, model, data, best, weights)
    chosen = choose(weights, validation, monitor)
    model.hparams.negative_scoring = weights[chosen]
    (test_results,) = trainer.test(model, datamodule=data, ckpt_path=best, weights_only=True)
    predictions = gather(trainer, trainer.predict(model, datamodule=data, ckpt_path=best, weights_only=True))
    if not trainer.is_global_zero:
        return {}
    recommendations_frame(predictions, data).write_parquet(run_dir / "recommendations.parquet")
    per_user_frame(predictions, data, model.hparams.k).write_parquet(run_dir / "per_user.parquet")
    metrics = write_metrics(run_dir, validation[chosen], test_results, best_epoch(best), fit_seconds, weights[chosen])
    if len(weights) > 1:
        write_selection(run_dir, weights, validation, monitor, chosen)
    log_test_summary(trainer, metrics, run_dir / "recommendations.parquet", data)
    finish_wandb()
    print(format_table(metrics))
    print(run_dir)
    return metrics


if __name__ == "__main__":
    run_cli(main)
