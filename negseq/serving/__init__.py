"""Serving: a trained run's recommendations in the log's own ids (:mod:`.api`, ``Recommender``), the histories a caller
hands it (:mod:`.histories`), the exported program (:mod:`.export`) and ``negseq recommend|export`` (:mod:`.commands`)."""

from negseq.deprecation import NAMES_MOVED, moved
from negseq.serving.api import Recommender

__all__ = ["Recommender"]
__getattr__ = moved(__name__, NAMES_MOVED[__name__], "negseq.serving.api")  # the 0.3.0 module's other names
