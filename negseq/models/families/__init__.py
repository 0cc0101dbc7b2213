"""Model families: what a model's encoder reads from a user's events, the loss it trains with, the rules of its options
and its name in tables, one module each. NegSeqModule's ``family`` argument names one (:data:`FAMILIES`).

Adding a family is one module here with a :class:`Family` subclass (its ``name``, the module's own, is the new ``family``
value) and a YAML under experiments/models/ that sets ``model.family`` to it: every module of this package is imported below, by
name, and each ``Family`` subclass registers itself when its module is first imported (that order is the registry's).
"""

import importlib
import pkgutil

from negseq.models.families.base import FAMILIES, Family, family, family_of, shift

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

from negseq.models.families.sign_separated import SignSeparated, SignSeparatedFamily  # noqa: E402
from negseq.models.families.signed import SignedFamily, SignedHistory  # noqa: E402
from negseq.models.families.whole_history import WholeHistory, WholeHistoryFamily  # noqa: E402

__all__ = ["FAMILIES", "Family", "SignSeparated", "SignSeparatedFamily", "SignedFamily", "SignedHistory", "WholeHistory", "WholeHistoryFamily", "family", "family_of", "shift"]
