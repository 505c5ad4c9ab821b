"""The user errors heritage_seg raises: entry points turn each into one clear line and exit code 2 (cli.py).

Their own module, so the CLI wrapper and the data layer can name them without importing the models."""

from __future__ import annotations


class WeightsUnavailable(RuntimeError):
    """Pretrained encoder weights that cannot be had (offline, or a missing local file)."""


class TrainingDiverged(ValueError):
    """The training loss became NaN or infinite: the run stops before a broken model is checkpointed."""


class ScheduleMismatch(ValueError):
    """A resumed run's restored learning-rate schedule was laid out for another number of steps."""


USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, WeightsUnavailable)
