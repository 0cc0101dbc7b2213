"""Training: the LightningModule (:mod:`.module`), the CLI (:mod:`.cli`), its callbacks, W&B tracking, what a fit
does after training (:mod:`.job`: ranking weights chosen on validation, test, the run's files) and its checkpoints."""
