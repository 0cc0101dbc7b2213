"""The network (:mod:`negseq.models.encoder`, :mod:`negseq.models.recommender`) and the model families that train and
read it (:mod:`negseq.models.families`)."""
