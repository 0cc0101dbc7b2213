"""Weights & Biases logging that never waits on a network it does not have.

wandb raises "No API key configured" at the first log call when it has neither a key nor a
mode, and an online run without network hangs at start. So the mode is decided here, before
wandb is initialised: whatever ``WANDB_MODE`` says, else online when an API key is configured,
else offline (the run is written under the run directory and can be synced later).
"""

from __future__ import annotations

import netrc
import os
import sys
from typing import Any, Optional

from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import WandbLogger as _LightningWandbLogger


def has_api_key() -> bool:
    """True when wandb would find credentials: ``WANDB_API_KEY`` or a netrc entry for its host."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1].split("/")[0]
    try:
        return netrc.netrc().authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def wandb_mode() -> str:
    """``WANDB_MODE`` if set, else ``online`` with credentials and ``offline`` without."""
    return os.environ.get("WANDB_MODE") or ("online" if has_api_key() else "offline")


class WandbLogger(_LightningWandbLogger):
    """Lightning's WandbLogger with the mode decided up front (see the module docstring).

    Args:
        mode: ``online``, ``offline`` or ``disabled``; default from :func:`wandb_mode`.
        **kwargs: passed to Lightning's ``WandbLogger`` (``project``, ``save_dir``, ``name``, ...).
    """

    def __init__(self, *args: Any, mode: Optional[str] = None, **kwargs: Any) -> None:
        super().__init__(*args, mode=mode or wandb_mode(), **kwargs)


class SaveConfigToLoggers(SaveConfigCallback):
    """Write the resolved config to ``config.yaml`` and send the whole of it to every logger."""

    def save_config(self, trainer, pl_module, stage: str) -> None:
        config = self.config.as_dict()
        for logger in trainer.loggers:
            logger.log_hyperparams(config)


def finish_wandb() -> None:
    """Close the active W&B run now, so its exit messages come before the run's own final lines."""
    wandb = sys.modules.get("wandb")  # not imported means no run was started: nothing to close
    if wandb is not None and wandb.run is not None:
        wandb.finish()
