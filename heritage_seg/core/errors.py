"""The user errors heritage_seg raises: entry points turn each into one clear line and exit code 2 (cli.py).

Their own module, so the CLI wrapper and the data layer can name them without importing the models."""

from __future__ import annotations


class WeightsUnavailable(RuntimeError):
    """Pretrained encoder weights that cannot be had (offline, or a missing local file)."""


class TrainingDiverged(ValueError):
    """The training loss became NaN or infinite: the run stops before a broken model is checkpointed."""


class ScheduleMismatch(ValueError):
    """A resumed run's restored learning-rate schedule was laid out for another number of steps."""


class MissingExtra(RuntimeError):
    """An optional dependency (onnx, mlflow, wandb) that the chosen option needs is not installed."""


def require_extra(module: str, extra: str, option: str):
    """Import an optional dependency, or say which extra installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingExtra(
            f"{option} needs the {extra} extra ({err.name or module} is not installed): pip install -e '.[{extra}]'"
        ) from None


USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, WeightsUnavailable, MissingExtra)
