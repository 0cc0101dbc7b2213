"""Model families: what a model's encoder reads from a user's events, the loss it trains with, the rules of its options
and its name in tables, one module each. NegSeqModule's ``history`` argument names the family (:data:`FAMILIES`).

Adding a family is a module here with a :class:`Family` subclass (its ``name`` is the new ``history`` value), imported
below, and a YAML under experiments/models/ that sets ``model.history`` to it.
"""

# ruff: noqa: I001  (the import order is the registry's: history's choices, and the order messages name them in)
from negseq.models.families.base import FAMILIES, Family, family, shift
from negseq.models.families.sign_separated import SignSeparated, SignSeparatedFamily
from negseq.models.families.whole_history import WholeHistory, WholeHistoryFamily
from negseq.models.families.signed import SignedFamily, SignedHistory

__all__ = ["FAMILIES", "Family", "SignSeparated", "SignSeparatedFamily", "SignedFamily", "SignedHistory", "WholeHistory", "WholeHistoryFamily", "family", "shift"]
