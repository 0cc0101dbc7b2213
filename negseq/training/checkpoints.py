"""A fit's checkpoint, read in one place: where it is in a run directory, its contents (tensors and plain values only,
``weights_only=True``: never pickled code), the NegSeqModule it holds, the weights it gives an existing module and the
epoch it was written at. Serving, the notebook helpers, the ranking-weight selection and the run files read it here."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch

from negseq import layout
from negseq.errors import ConfigError
from negseq.models.recommender import SequentialRecommender
from negseq.training.module import DEFAULTS, NegSeqModule, network, upgrade


def checkpoint_path(source: str | Path) -> Path:
    """The checkpoint of a run directory (``checkpoints/best.ckpt``: the one the fit tested with, or the last epoch's
    after ``--data.split none``), or ``source`` itself when it is a file."""
    path = Path(source)
    if path.is_file():
        return path
    best = path / layout.CHECKPOINT_DIR / layout.BEST_CHECKPOINT
    if not best.is_file():
        raise ConfigError(f"{path}: no {layout.CHECKPOINT_DIR}/{layout.BEST_CHECKPOINT}; expected the directory of a finished fit or a .ckpt file")
    return best


def read(source: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """The checkpoint of ``source`` (a run directory or a ``.ckpt`` file) as Lightning wrote it."""
    return torch.load(checkpoint_path(source), map_location=map_location, weights_only=True)


def hyper_parameters(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """NegSeqModule's arguments a checkpoint was trained with, under today's names (:func:`upgrade`, in place): those it
    no longer takes left out, those added since at their defaults (which reproduce the older behaviour)."""
    upgrade(checkpoint)
    accepted = inspect.signature(NegSeqModule).parameters
    return {**DEFAULTS, **{name: value for name, value in checkpoint["hyper_parameters"].items() if name in accepted}}


def load_network(checkpoint: dict[str, Any]) -> tuple[SequentialRecommender, dict[str, Any]]:
    """The trained network alone (what serving ranks with), in eval mode: no LightningModule, no metrics; and the
    NegSeqModule arguments it was built with (:func:`hyper_parameters`)."""
    hp = hyper_parameters(checkpoint)  # brings the checkpoint up to date first
    model = network(hp)
    prefix = "model."
    model.load_state_dict({key[len(prefix):]: value for key, value in checkpoint["state_dict"].items() if key.startswith(prefix)})
    return model.eval(), hp


def load_module(checkpoint: dict[str, Any]) -> NegSeqModule:
    """The NegSeqModule a checkpoint (:func:`read`) holds, its weights loaded. Hyper-parameters NegSeqModule no longer
    takes are left out and those it added since get their defaults (which reproduce the older behaviour), so runs of
    earlier versions load."""
    module = NegSeqModule(**hyper_parameters(checkpoint))
    load_weights(module, checkpoint)
    return module


def load_weights(module: NegSeqModule, checkpoint: dict[str, Any] | str | Path) -> None:
    """Put a checkpoint's weights (and the state NegSeqModule keeps beside them) into ``module``: a checkpoint
    :func:`read` gave, or its run directory or file (read onto the module's device)."""
    if not isinstance(checkpoint, dict):
        checkpoint = read(checkpoint, module.device)
    module.on_load_checkpoint(checkpoint)
    module.load_state_dict(checkpoint["state_dict"])


def best_epoch(source: str | Path) -> int:
    """1-based number of the epoch whose weights a checkpoint holds."""
    return int(read(source)["epoch"]) + 1
