"""negseq: sequential recommendation that learns from negative feedback (PNFRec and its baselines).

One sub-package per layer (docs/architecture.md): :mod:`negseq.data`, :mod:`negseq.models`, :mod:`negseq.evaluation`,
:mod:`negseq.training`, :mod:`negseq.serving`, :mod:`negseq.studies`, :mod:`negseq.analysis`. ``from negseq import
Recommender`` serves a trained run (:mod:`negseq.serving.api`); it is imported on first use, so that ``import
negseq.layout`` and the like stay light. The module paths of 0.3.0 (``negseq.module``, ``negseq.paired``, ...) still
import, with a DeprecationWarning naming the new one (:mod:`negseq.deprecation`).
"""

from negseq import deprecation

deprecation.install()


def __getattr__(name: str):
    if name == "Recommender":
        from negseq.serving.api import Recommender

        return Recommender
    raise AttributeError(f"module 'negseq' has no attribute {name!r}")
