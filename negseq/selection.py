"""Choosing the negative-scoring weight lambda on validation, never on test.

After a fit, the best checkpoint is validated once per candidate lambda: the weights stay the
same, only the way items are scored changes, so each candidate costs one validation pass. The
lambda with the best monitored validation metric is kept for the test and the recommendations;
a tie goes to the smaller lambda (the closer to the paper's ranking). The chosen lambda is
written into the best checkpoint (the model's ``negative_scoring`` buffer), so loading it ranks
as the test did.
"""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import torch

from negseq.errors import ConfigError

BUFFER_KEY = "model.negative_scoring"  # the weight's entry in a checkpoint's state_dict


def check_selection(weights: list[float], monitor: str, model: L.LightningModule, validation_targets: str) -> None:
    """Fail before training when a selection could not be made or would be blind to what it selects on."""
    if any(weights) and model.model.negative_encoder is None:
        raise ConfigError("--select_negative_scoring: negative scoring reads the negative encoder, which needs history='positives' and alpha > 0")
    if len(weights) > 1 and validation_targets == "positive" and ("_n@" in monitor or "delta" in monitor):
        raise ConfigError(
            f"--select_monitor {monitor} needs validation users with a disliked target: set --data.validation_targets all"
        )


def load_weights(model: L.LightningModule, checkpoint: str | Path) -> None:
    """Put the weights of a Lightning checkpoint (loaded with ``weights_only=True``) into ``model``."""
    saved = torch.load(checkpoint, map_location=model.device, weights_only=True)
    model.on_load_checkpoint(saved)
    model.load_state_dict(saved["state_dict"])


def validate_each(trainer: L.Trainer, model: L.LightningModule, datamodule, weights: list[float]) -> list[dict[str, float]]:
    """Validation metrics of ``model``'s weights scored with each weight; kept out of the loggers, whose curves are the fit's."""
    loggers, trainer.loggers = trainer.loggers, []
    try:
        results = []
        for weight in weights:
            model.model.set_negative_scoring(weight)
            (metrics,) = trainer.validate(model, datamodule=datamodule, verbose=False)
            results.append({name: float(value) for name, value in metrics.items()})
    finally:
        trainer.loggers = loggers
    return results


def record_choice(checkpoint: str | Path, weight: float) -> None:
    """Write the chosen weight into the checkpoint's ``negative_scoring`` buffer, so that loading it ranks with it."""
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
    buffer = saved["state_dict"].get(BUFFER_KEY)
    if buffer is None or float(buffer) != weight:
        saved["state_dict"][BUFFER_KEY] = torch.tensor(float(weight))
        torch.save(saved, checkpoint)


def choose(weights: list[float], results: list[dict[str, float]], monitor: str) -> int:
    """Index of the weight whose validation ``monitor`` is highest (the smaller weight on a tie)."""
    if len(weights) == 1:
        return 0
    if monitor not in results[0]:
        raise ConfigError(f"--select_monitor {monitor} is not a validation metric; validation logs {sorted(results[0])}")
    values = [result[monitor] for result in results]
    if any(math.isnan(value) for value in values):
        raise ConfigError(f"--select_monitor {monitor} is NaN: validation has no user in its group (--data.validation_targets all?)")
    return max(range(len(weights)), key=lambda index: (values[index], -weights[index]))
