"""Where the configs live and what they need before Hydra composes them: one home for every entry point, test,
tool and benchmark.

The configs sit at the top of the repository (`conf/`, the layout the project is known by) and ship inside the
package as `heritage_seg.conf` (pyproject.toml maps the folder onto that package), so Hydra reads them as a package
(`pkg://heritage_seg.conf`) from a checkout, an editable install, a wheel or a container image alike, and
`--config-dir my_conf` still adds a user's own groups beside them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import Any

from omegaconf import DictConfig, OmegaConf

from heritage_seg.core.sweep_names import sweep_dirname

CONFIG_PACKAGE = "heritage_seg.conf"
CONFIG_PATH = f"pkg://{CONFIG_PACKAGE}"
VERSION_BASE = "1.3"

# Every custom interpolation the configs use, by name (conf/train.yaml `hydra.sweep.subdir`).
RESOLVERS: dict[str, Callable] = {"sweep_dirname": sweep_dirname}


def register_resolvers() -> None:
    """Register the configs' custom resolvers (idempotent). Every entry point does it through `command`, and
    `compose` for tests and tools; a config composed any other way must call this first."""
    for name, function in RESOLVERS.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, function)


def config_root() -> Traversable:
    """The packaged config folder (a real folder for a checkout, an editable or a wheel install)."""
    return files(CONFIG_PACKAGE)


def command(config_name: str):
    """`@hydra.main` on the packaged configs, with the resolvers registered: what each `python -m heritage_seg.<name>`
    is decorated with (the task function stays in its own module, so Hydra names the job after it)."""
    import hydra

    register_resolvers()  # at import: a submitit job unpickles the entry point's main, so this runs there too
    return hydra.main(version_base=VERSION_BASE, config_path=CONFIG_PATH, config_name=config_name)


def compose(config_name: str, overrides: Sequence[str] = (), return_hydra_config: bool = False) -> DictConfig:
    """A config as `python -m heritage_seg.<config_name> <overrides>` composes it, without running anything (tests,
    benchmarks, tools)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.singleton import Singleton
    from hydra.core.utils import setup_globals

    register_resolvers()
    state = Singleton.get_state()  # inside a running command Hydra is initialised already: leave it as it was
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module=CONFIG_PACKAGE, version_base=VERSION_BASE):
            return hydra_compose(config_name, overrides=list(overrides), return_hydra_config=return_hydra_config)
    finally:
        Singleton.set_state(state)  # which also restores OmegaConf's resolvers as they were before Hydra's own
        setup_globals()  # Hydra's `now` and `hydra` resolvers, so that the returned config's hydra.run.dir resolves


def first_difference(a: DictConfig, b: DictConfig, keys: Sequence[str]) -> tuple[str, Any, Any] | None:
    """The first of `keys` whose value differs between two run configs, as (key, value in a, value in b). A key
    one of them does not have (a run made before that option existed) is not compared."""
    missing = object()
    for key in keys:
        va, vb = OmegaConf.select(a, key, default=missing), OmegaConf.select(b, key, default=missing)
        if va is missing or vb is missing:
            continue
        if OmegaConf.is_config(va) or OmegaConf.is_config(vb):
            va = OmegaConf.to_container(va, resolve=True) if OmegaConf.is_config(va) else va
            vb = OmegaConf.to_container(vb, resolve=True) if OmegaConf.is_config(vb) else vb
        if va != vb:
            return key, va, vb
    return None
