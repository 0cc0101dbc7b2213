"""The ranking weights: how much a user's dislikes move a trained model's scores, set without retraining it.

- ``negative_scoring`` (lambda): ``score = z_pos - lambda * z_neg``, ``z_neg`` the negative encoder's logit of the item
  as the user's next *disliked* one; it reads the negative encoder.
- ``dislike_demotion`` (lambda): ``score_j -= lambda * max(0, max_r gamma**r cos(e_j, e_r))`` over the user's last
  ``demotion_window`` (R) dislikes, the r-th newest weighed by ``demotion_decay`` (gamma) to the r; any model (the
  shared item table's cosines).
- ``sign_scoring`` (lambda): ``score_j += lambda * (w . (h * e_j))``, the sign head's logit that the user likes item j
  if it comes next (``w . (h * e_j) + b``, the constant ``b`` dropped), so a model that learned which items this user
  would reject ranks them lower: a personalised polarity. The logit is linear in ``e_j``, so it folds into the user
  vector, ``h * (1 + lambda * w)``; only models with a sign head (``sign_weight > 0``) have it.
- ``polarity_prior`` (lambda): ``score_j += lambda * log((liked_j + 1) / (events_j + 2))``, the item's smoothed like
  rate over the training events (every event of the training split, both signs; :func:`item_polarity`), the same for
  every user; any model. The log-rates are a buffer of the model too (``model.item_polarity``), so serving needs
  no log.

They are buffers of the model (``model.<name>`` in a checkpoint), so a checkpoint ranks as its run's test did. This
module is their one home: the model checks them with :func:`check` when it is built and a selection its candidates with
:func:`check_model`, selection sets them (:func:`write`) and writes the chosen ones into best.ckpt (:func:`record`), results and export read them
(:func:`read`, :func:`manifest`), old checkpoints get them (:func:`fill_missing`), and :mod:`negseq.models.inference`
ranks with whatever the model holds.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from negseq.errors import ConfigError

WEIGHTS = ("negative_scoring", "dislike_demotion", "polarity_prior", "sign_scoring")
NEEDS_NEGATIVE_ENCODER = ("negative_scoring", "fusion", "identical_start")  # options that act on the negative encoder


def check(options: dict[str, Any], negative_encoder: bool, flag: str = "", sign_head: bool = False) -> None:
    """Refuse ``options`` (any of :data:`WEIGHTS`, :data:`NEEDS_NEGATIVE_ENCODER`, ``demotion_window``, ``demotion_decay``)
    that a model with or without a negative encoder or a sign head cannot rank with; ``flag`` prefixes the message (``--select_...: ``)."""
    for name in NEEDS_NEGATIVE_ENCODER:
        if options.get(name) and not negative_encoder:
            raise ConfigError(f"{flag}`{name}` acts on the negative encoder, which only family='sign_separated' with alpha > 0 builds")
    weight, window, decay = options.get("dislike_demotion", 0.0), options.get("demotion_window", 1), options.get("demotion_decay", 1.0)
    if weight < 0 or window < 1 or not 0 < decay <= 1:
        raise ConfigError(f"{flag}dislike_demotion must be >= 0, demotion_window >= 1 and demotion_decay in (0, 1], got {weight}, {window} and {decay}")
    if options.get("sign_scoring") and not sign_head:
        raise ConfigError(f"{flag}`sign_scoring` ranks with the sign head, which only family='signed' with sign_weight > 0 builds")
    if options.get("polarity_prior", 0.0) < 0:
        raise ConfigError(f"{flag}polarity_prior must be >= 0 (a weight on the items' log like rate), got {options['polarity_prior']}")


def item_polarity(liked: Tensor, events: Tensor) -> Tensor:
    """``(N + 1,)`` each item's log smoothed like rate ``log((liked + 1) / (events + 2))`` from its liked and all training
    events per code (Laplace's rule: an item never seen in training gets log 1/2, one liked as often as not)."""
    return torch.log((liked.double() + 1.0) / (events.double() + 2.0)).float()


def read(model: torch.nn.Module) -> dict[str, float]:
    """The weights ``model`` (a SequentialRecommender) ranks with now."""
    return {name: float(getattr(model, name)) for name in WEIGHTS}


def check_model(model: torch.nn.Module, weights: dict[str, float], flag: str = "") -> None:
    """:func:`check` of ``weights`` against ``model`` (a SequentialRecommender): its parts and its demotion settings."""
    settings = {"demotion_window": model.demotion_window, "demotion_decay": model.demotion_decay}
    check({**weights, **settings}, model.negative_encoder is not None, flag, model.sign_head is not None)


def write(model: torch.nn.Module, weights: dict[str, float]) -> None:
    """Rank with ``weights`` from now on (the trained weights do not change); refused as :func:`check` refuses them."""
    check_model(model, weights)
    for name, value in weights.items():
        getattr(model, name).fill_(float(value))


def record(checkpoint: dict, weights: dict[str, float]) -> bool:
    """Write ``weights`` into a loaded Lightning checkpoint's buffers (``model.<name>``); whether anything changed."""
    state = checkpoint["state_dict"]
    if all(f"model.{name}" in state and float(state[f"model.{name}"]) == weights[name] for name in WEIGHTS):
        return False
    for name in WEIGHTS:
        state[f"model.{name}"] = torch.tensor(float(weights[name]))
    return True


def fill_missing(checkpoint: dict) -> None:
    """A checkpoint written before a weight was a buffer ranks with the weight of its hyper-parameters (else 0); one written
    before the prior existed gets log-rates of 0 (its weight is 0, so they rank nothing)."""
    state = checkpoint["state_dict"]
    for name in WEIGHTS:
        state.setdefault(f"model.{name}", torch.tensor(float(checkpoint.get("hyper_parameters", {}).get(name, 0.0))))
    if "model.items.weight" in state:
        state.setdefault("model.item_polarity", torch.zeros(len(state["model.items.weight"])))


def manifest(model: torch.nn.Module) -> dict[str, Any]:
    """The weights and the demotion's settings as export.json records them: what the caller's post-processing applies."""
    return {**read(model), "demotion_window": model.demotion_window, "demotion_decay": model.demotion_decay}
