"""Choosing the negative-scoring weight lambda on validation, never on test.

After a fit, the best checkpoint is validated once per candidate lambda: the weights stay the
same, only the way items are scored changes, so each candidate costs one validation pass. The
lambda with the best monitored validation metric is kept for the test and the recommendations;
a tie goes to the smaller lambda (the closer to the paper's ranking).
"""

from __future__ import annotations

import math

import lightning as L

from negseq.errors import ConfigError

DEFAULT_MONITOR = "val/delta_ndcg@10"


def check_selection(weights: list[float], monitor: str, model: L.LightningModule, validation_targets: str) -> None:
    """Fail before training when a selection could not be made or would be blind to what it selects on."""
    if any(weights) and model.negative_encoder is None:
        raise ConfigError("--select_negative_scoring: negative scoring reads the negative encoder, which needs history='positives' and alpha > 0")
    if len(weights) > 1 and validation_targets == "positive" and ("_n@" in monitor or "delta" in monitor):
        raise ConfigError(
            f"--select_monitor {monitor} needs validation users with a disliked target: set --data.validation_targets all"
        )


def validate_each(trainer: L.Trainer, model: L.LightningModule, datamodule, checkpoint: str, weights: list[float]) -> list[dict[str, float]]:
    """Validation metrics of ``checkpoint`` scored with each weight; kept out of the loggers, whose curves are the fit's."""
    loggers, trainer.loggers = trainer.loggers, []
    try:
        results = []
        for index, weight in enumerate(weights):
            model.hparams.negative_scoring = weight
            (metrics,) = trainer.validate(
                model, datamodule=datamodule, ckpt_path=checkpoint if index == 0 else None, weights_only=True, verbose=False
            )
            results.append({name: float(value) for name, value in metrics.items()})
    finally:
        trainer.loggers = loggers
    return results


def choose(weights: list[float], results: list[dict[str, float]], monitor: str) -> int:
    """Index of the weight whose validation ``monitor`` is highest (the smaller weight on a tie)."""
    values = [result.get(monitor, math.nan) for result in results]
    if any(math.isnan(value) for value in values):
        raise ConfigError(f"--select_monitor {monitor} is not a validation metric; validation logs {sorted(results[0])}")
    return max(range(len(weights)), key=lambda index: (values[index], -weights[index]))
