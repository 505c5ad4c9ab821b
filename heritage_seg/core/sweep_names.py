"""A sweep job's folder name (conf/train.yaml `hydra.sweep.subdir`, through the `sweep_dirname` resolver that
heritage_seg.core.configs registers): its overrides, written so that the path can be pasted unquoted."""

from __future__ import annotations

import hashlib
from pathlib import Path

MAX_DIRNAME = 200  # a sweep job's folder is named by its overrides; one path component may hold 255 bytes

# A sweep job's folder name keeps these characters as they are and writes every other one %XX (its UTF-8 bytes):
# letters, digits and `_ . -` mean nothing to Hydra's override grammar nor to a shell, so a path made of them can
# be pasted unquoted into any `key=value` option and any shell command. `=` and `,`, which Hydra would parse
# (issue 25), are written `-` and `+`.
_PASTE_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
_SEPARATORS = {"=": "-", ",": "+"}


def _shorten(name: str, separator: str) -> str:
    """`name` if it fits in one folder name, else its first part plus a hash of the whole (stable, so a requeued
    job finds its folder again)."""
    if len(name.encode()) <= MAX_DIRNAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:12]
    head = name.encode()[: MAX_DIRNAME - 13].decode(errors="ignore")
    if "%" in head[-2:]:  # never cut a %XX escape in two
        head = head[: head.rindex("%")]
    return f"{head}{separator}{digest}"


def legacy_sweep_dirname(overrides: str) -> str:
    """The folder name sweeps got before issue 25 (`encoder=mit_b3,fold=1`): still found, so that a sweep
    started then resumes into its own folders."""
    return _shorten(overrides.replace("/", "%2F"), "~")


def sweep_dirname(overrides: str, sweep_dir: str | None = None) -> str:
    """A sweep job's folder name (conf/train.yaml `hydra.sweep.subdir`): its overrides as Hydra joins them
    (`encoder=mit_b3,fold=1`) written `encoder-mit_b3+fold-1`, characters other than letters, digits and
    `_ . -` as %XX (`/` is `%2F`), and cut with a hash of the whole when too long for one folder name.
    Deterministic, so a requeued job finds its folder again; in a `sweep_dir` that already holds this job's
    folder under the name sweeps had before (`encoder=mit_b3,fold=1`) that folder is used, so older sweeps
    resume and relaunch into their own folders. `aggregate` groups by `.hydra/overrides.yaml`, never by this
    name."""
    if sweep_dir is not None:
        legacy = legacy_sweep_dirname(overrides)
        if (Path(sweep_dir) / legacy).is_dir():
            return legacy
    name = "".join(
        _SEPARATORS.get(char) or (char if char in _PASTE_SAFE else "".join(f"%{byte:02X}" for byte in char.encode()))
        for char in overrides
    )
    return _shorten(name, "+")
