"""Entry-point helper: a user's mistake ends in one clear line and exit code 2, not a traceback."""

from __future__ import annotations

import functools
import logging

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

from heritage_seg.core.errors import USER_ERRORS

log = logging.getLogger("heritage_seg")


def instantiate_or_user_error(config):
    """hydra.utils.instantiate, but a user error raised by the target (e.g. a missing extra) comes out as itself,
    not wrapped in Hydra's InstantiationException (which the CLI would print as a traceback)."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(config)
    except InstantiationException as err:
        if isinstance(err.__cause__, USER_ERRORS):
            raise err.__cause__ from None
        raise


def exit_on_user_error(task):
    @functools.wraps(task)
    def wrapper(cfg):
        try:
            return task(cfg)
        except USER_ERRORS as err:
            log.error("error: %s", err)  # in a sweep too: the job's own log must say why it failed
            # In a sweep, let Hydra record this job as failed and go on with the others.
            if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
                raise
            raise SystemExit(2) from None

    return wrapper
