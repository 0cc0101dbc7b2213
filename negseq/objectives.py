"""Deprecated since 0.3.0: each training objective lives with its family in :mod:`negseq.models.families`.

``from negseq.objectives import SignSeparated`` (or any name it held) still works, with a DeprecationWarning naming
the new module.
"""

from negseq.deprecation import moved

__getattr__ = moved(__name__, {
    "shift": "negseq.models.families.base",
    "SignSeparated": "negseq.models.families.sign_separated",
    "ContrastNegatives": "negseq.models.families.sign_separated",
    "state_before": "negseq.models.families.sign_separated",
    "scale_gradient": "negseq.models.families.sign_separated",
    "hard_negative_log_mass": "negseq.models.families.sign_separated",
    "WholeHistory": "negseq.models.families.whole_history",
    "SignedHistory": "negseq.models.families.signed",
})
