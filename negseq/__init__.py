"""negseq: sequential recommendation that learns from negative feedback (PNFRec and its baselines).

``from negseq import Recommender`` serves a trained run (:mod:`negseq.serving`); it is imported on
first use, so that ``import negseq.layout`` and the like stay light.
"""


def __getattr__(name: str):
    if name == "Recommender":
        from negseq.serving import Recommender

        return Recommender
    raise AttributeError(f"module 'negseq' has no attribute {name!r}")
