"""Entry-point helpers: a user's mistake ends in one clear line and exit code 2, not a traceback; a path is
accepted on the command line as the tool printed it; a printed command can be pasted back as it is."""

from __future__ import annotations

import functools
import logging
import re
import shlex
import sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

from heritage_seg.core.configs import CONFIG_PACKAGE, config_root
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


def config_file(group: str) -> str:
    """The file a config group's choice was read from, for error messages (`--config-dir my_conf labels=my_labels`
    -> my_conf/labels/my_labels.yaml): the first of Hydra's config sources holding it, searched as Hydra does."""
    if not HydraConfig.initialized():  # composed by a test or a benchmark: no run, no record of sources
        return f"the `{group}` config"
    runtime = HydraConfig.get().runtime
    choice = runtime.choices.get(group)
    for source in runtime.config_sources:
        if source.schema == "file" and (Path(source.path) / group / f"{choice}.yaml").is_file():
            return str(Path(source.path) / group / f"{choice}.yaml")
        if source.schema == "pkg" and source.path == CONFIG_PACKAGE:  # the packaged configs (core/configs.py)
            packaged = config_root() / group / f"{choice}.yaml"
            if packaged.is_file():
                return str(packaged)
    return f"{group}={choice} ({group}/{choice}.yaml)"


# What Hydra's override grammar and a shell both take as one plain word (tests/test_cli.py checks the grammar)
_PLAIN = re.compile(r"^[A-Za-z0-9_.\-/+%@:]+$")
_KEY_VALUE = re.compile(r"^([+~]{0,2}[A-Za-z0-9_.\-/@]+)=(.+)$", flags=re.S)


def _hydra_quoted(value: str) -> str:
    """Hydra's quoted string: backslashes are literal except before a quote or the closing quote."""
    escaped = re.sub(r"(\\+)(?='|$)", lambda m: m.group(1) * 2, value).replace("'", "\\'")
    return f"'{escaped}'"


def override(key: str, value: object) -> str:
    """`key=value` as a command to print for pasting: plain when Hydra and a shell take the value as one word, else
    quoted for both (a folder of a sweep started before issue 25, `encoder=convnext,fold=0`, or a space)."""
    text = str(value)
    if _PLAIN.match(text):
        return f"{key}={text}"
    quoted = f"{key}={_hydra_quoted(text)}"
    return f'"{quoted}"' if not re.search(r'["$`!\\]', quoted) else shlex.quote(quoted)


def shown_path(path: str | Path) -> str:
    """A path as the user would type it: relative to the working folder when inside it, else absolute."""
    path = Path(path).absolute()
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _names_a_path(value: str) -> bool:
    path = Path(value)
    return path.exists() or ("/" in value and str(path.parent) not in ("", ".") and path.parent.is_dir())


def _as_paths(value: str) -> list[str] | None:
    """`value` as one path (or a [list] of paths) that exists (or whose folder does, for an output), else None.
    A comma inside a list is a path's own where the pieces before it are not yet a path that exists."""
    if _names_a_path(value):
        return [value]
    if not (value.startswith("[") and value.endswith("]")):
        return None
    paths, current = [], None
    for piece in value[1:-1].split(","):
        current = piece if current is None else f"{current},{piece}"
        if Path(current.strip()).exists():
            paths.append(current.strip())
            current = None
    return paths if current is None and paths else None


def accept_printed_paths(argv: list[str] | None = None) -> list[str]:
    """Quote, for Hydra, every `key=<path>` whose path exists (or is new in a folder that exists) but holds
    characters Hydra's override grammar would read (`=`, `,`, spaces…): a run folder of a sweep started before
    issue 25 (`…/encoder=convnext,fold=0/checkpoints/best.ckpt`) is then accepted as the tool printed it, in
    `ckpt=`, `ckpt=[…]`, `hydra.run.dir=<run>/evaluate`, `runs=`. Anything else is left for Hydra to parse
    (a sweep `-m fold=0,1` names no path). Rewrites sys.argv in place when called without arguments."""
    args = sys.argv if argv is None else argv
    for index, arg in enumerate(args[1:], start=1):
        match = _KEY_VALUE.match(arg)
        if not match or match.group(2)[0] in "'\"" or _PLAIN.match(match.group(2)):
            continue
        paths = _as_paths(match.group(2))
        if paths is None:
            continue
        quoted = [_hydra_quoted(path) for path in paths]
        value = quoted[0] if not match.group(2).startswith("[") else "[" + ",".join(quoted) + "]"
        args[index] = f"{match.group(1)}={value}"
    return args
