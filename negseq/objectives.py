"""Deprecated since 0.3.0: each training objective lives with its family in :mod:`negseq.models.families`.

``from negseq.objectives import SignSeparated`` (or any name it held) still works, with a DeprecationWarning naming
the new module.
"""

from __future__ import annotations

import importlib
import warnings

MOVED = {
    "shift": "negseq.models.families.base",
    "SignSeparated": "negseq.models.families.sign_separated",
    "ContrastNegatives": "negseq.models.families.sign_separated",
    "state_before": "negseq.models.families.sign_separated",
    "scale_gradient": "negseq.models.families.sign_separated",
    "hard_negative_log_mass": "negseq.models.families.sign_separated",
    "WholeHistory": "negseq.models.families.whole_history",
    "SignedHistory": "negseq.models.families.signed",
}


def __getattr__(name: str):
    if name not in MOVED:
        raise AttributeError(f"module 'negseq.objectives' has no attribute {name!r}")
    warnings.warn(f"negseq.objectives.{name} is deprecated: import it from {MOVED[name]}", DeprecationWarning, stacklevel=2)
    return getattr(importlib.import_module(MOVED[name]), name)
