"""Evaluation: ranking metrics by the sign of the held-out target (:mod:`.metrics`) and counterfactual
responsiveness to a dislike (:mod:`.responsiveness`), as torchmetrics."""
