"""heritage_seg's submitit launchers (Hydra only loads launcher plugins from the `hydra_plugins` namespace)."""

from hydra_plugins.heritage_seg_launchers.launchers import LocalLauncher, SlurmLauncher

__all__ = ["LocalLauncher", "SlurmLauncher"]
