"""Choosing the ranking weights (negative scoring, dislike demotion, polarity prior, sign scoring) on validation, never on test.

After a fit, the best checkpoint is validated once per candidate (a combination of weights): the
trained weights stay the same, only the way items are scored changes, so each candidate costs
one validation pass. The candidate with the best monitored validation metric is kept for the
test and the recommendations (the highest, or the lowest for a disliked-target metric such as
``val/hr_n@k``); a tie goes to the smaller weights (the closer to the paper's
ranking). With a tolerance, only candidates whose validation NDCG_p@k stays within that share
of the reference (every weight 0, else the smallest) compete, so a weight that buys
Delta by giving up liked items is not chosen. With a noise bound ``z`` instead, only candidates
whose validation HR_p@k is at least the reference's minus ``z`` binomial standard errors of it,
``sqrt(p (1 - p) / n)`` over the ``n`` validation users with a liked target, compete: "fewer
disliked items, and liked ones no fewer than validation can tell apart" (the prior's rule). With a responsiveness floor, validation also
answers the counterfactual dislike (:mod:`negseq.evaluation.responsiveness`) and only candidates whose
validation neighbour suppression reaches the floor compete (the most suppressing one when none
does): "react to a dislike this much, then rank liked items best". The chosen weights are written into the best
checkpoint (the model's buffers), so loading it ranks as the test did.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import lightning as L
import torch

from negseq.errors import ConfigError
from negseq.models import ranking_weights
from negseq.models.ranking_weights import WEIGHTS
from negseq.training import checkpoints


def candidates(*values: list[float]) -> list[dict[str, float]]:
    """Every combination of the weights' candidate values (one list per name of :data:`WEIGHTS`, in that order; a weight
    not listed is 0), as ``{"negative_scoring": a, "dislike_demotion": b, "polarity_prior": c, "sign_scoring": d}``."""
    values = (*values, *([0.0],) * (len(WEIGHTS) - len(values)))
    return [dict(zip(WEIGHTS, map(float, combination))) for combination in itertools.product(*values)]


def lower_is_better(metric: str) -> bool:
    """Whether a smaller value of ``metric`` is better: the disliked-target metrics (``val/hr_n@10``, ...)."""
    return "_n@" in metric


def check_selection(options: list[dict[str, float]], monitor: str, model: L.LightningModule, validation_targets: str) -> None:
    """Fail before training when a selection could not be made or would be blind to what it selects on."""
    for option in options:
        ranking_weights.check_model(model.model, option, f"selection candidate {option}: ")
    if len(options) > 1 and validation_targets == "positive" and (lower_is_better(monitor) or "delta" in monitor):
        raise ConfigError(
            f"--select_monitor {monitor} needs validation users with a disliked target: set --data.validation_targets all"
        )


def set_weights(model: L.LightningModule, option: dict[str, float]) -> None:
    """Rank with ``option``'s weights from now on."""
    ranking_weights.write(model.model, option)


def validate_each(
    trainer: L.Trainer, model: L.LightningModule, datamodule, options: list[dict[str, float]], respond: bool = False, stage: str = "validate"
) -> list[dict[str, float]]:
    """Validation metrics (``stage="test"``: test metrics) of ``model``'s weights ranked with each option (with ``respond``,
    the responsiveness metrics too); kept out of the loggers, whose curves are the fit's."""
    loggers, trainer.loggers = trainer.loggers, []
    model.respond_in_validation = respond
    evaluate = trainer.validate if stage == "validate" else trainer.test
    try:
        results = []
        for option in options:
            set_weights(model, option)
            (metrics,) = evaluate(model, datamodule=datamodule, verbose=False)
            results.append({name: float(value) for name, value in metrics.items()})
    finally:
        trainer.loggers = loggers
        model.respond_in_validation = False
    return results


def record_choice(checkpoint: str | Path, option: dict[str, float]) -> None:
    """Write the chosen weights into the checkpoint's buffers, so that loading it ranks with them."""
    saved = checkpoints.read(checkpoint)
    if ranking_weights.record(saved, option):
        torch.save(saved, checkpoint)


def _smaller(option: dict[str, float]) -> tuple[float, ...]:
    """Sort key: the total weight, then each weight (closer to the paper's ranking first)."""
    return (sum(option.values()), *option.values())


def _ordered(value: float) -> float:
    """``value``, with NaN lowest."""
    return -math.inf if math.isnan(value) else value


def noise_bar(result: dict[str, float], metric: str, within_noise: float) -> float:
    """The reference's validation ``metric`` (a hit rate over the liked-target users) less ``within_noise`` binomial
    standard errors ``sqrt(p (1 - p) / n)``, ``n`` the validation users with a liked target."""
    p, n = result[metric], result["val/n_users_pos"]
    return p - within_noise * math.sqrt(p * (1 - p) / n) if n else -math.inf


def choose(
    options: list[dict[str, float]], results: list[dict[str, float]], monitor: str, tolerance: float | None = None, keep: str | None = None,
    floor: tuple[str, float] | None = None, within_noise: float | None = None, hit_rate: str | None = None,
) -> int:
    """Index of the option whose validation ``monitor`` is best: highest, lowest for a disliked-target metric (the
    smaller weights on a tie).

    With ``tolerance``, only options whose validation ``keep`` (NDCG_p@k) is at least ``1 - tolerance`` times the
    reference option's (the smallest weights, every one 0 when listed) are eligible; the reference always is.
    With ``within_noise = z``, only options whose validation ``hit_rate`` (HR_p@k) is at least :func:`noise_bar` of the
    reference's are; the reference always is.
    With ``floor = (metric, minimum)``, of those only the options whose validation ``metric`` reaches ``minimum`` are;
    when none does, the one with the highest ``metric``.
    """
    if len(options) == 1:
        return 0
    for name in (monitor, keep if tolerance is not None else None, floor[0] if floor else None, hit_rate if within_noise is not None else None):
        if name is not None and name not in results[0]:
            raise ConfigError(f"--select_monitor {name} is not a validation metric; validation logs {sorted(results[0])}")
    values = [result[monitor] for result in results]
    if any(math.isnan(value) for value in values):
        raise ConfigError(f"--select_monitor {monitor} is NaN: validation has no user in its group (--data.validation_targets all?)")
    eligible = range(len(options))
    reference = min(eligible, key=lambda index: _smaller(options[index]))
    if tolerance is not None:
        bar = (1.0 - tolerance) * results[reference][keep]
        eligible = [index for index in eligible if index == reference or results[index][keep] >= bar]
    if within_noise is not None:
        bar = noise_bar(results[reference], hit_rate, within_noise)
        eligible = [index for index in eligible if index == reference or results[index][hit_rate] >= bar]
    if floor is not None:
        metric, minimum = floor
        reached = [index for index in eligible if results[index][metric] >= minimum]  # NaN reaches nothing
        eligible = reached or [max(eligible, key=lambda index: _ordered(results[index][metric]))]
    better = -1.0 if lower_is_better(monitor) else 1.0
    return max(eligible, key=lambda index: (better * values[index], tuple(-w for w in _smaller(options[index]))))
