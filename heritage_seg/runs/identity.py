"""What identifies a run: the keys an interrupted run and the command resuming it must agree on, and the keys
ensemble members evaluated together must share."""

from __future__ import annotations

# Keys that must agree between an interrupted run and the command that resumes it.
# (max_epochs too: the OneCycle schedule restored from last.ckpt was laid out for the original length.)
RUN_IDENTITY = (
    "encoder.name",
    "fold",
    "n_folds",
    "seed",
    "split",
    "data.image_size",
    "data.resize",
    "data.max_side",
    "data.train_fraction",
    "labels",
    "trainer.max_epochs",
)
# What must agree between ensemble members: they are evaluated on one validation set with one label map.
SAME_VALIDATION_SET = ("fold", "n_folds", "seed", "split", "data.image_size", "data.resize", "data.max_side", "labels")
