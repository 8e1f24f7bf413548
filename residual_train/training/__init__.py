"""Training: the LightningModule (losses, metrics), callbacks, loggers, validation panels and
the Hydra entry point ``python -m residual_train`` (:func:`residual_train.training.train.train`)."""
