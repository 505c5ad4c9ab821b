"""What the benchmark scripts share (each runs as `python benchmarks/<name>.py`, so this module imports as
`common`): the repository's configs composed as the commands compose them, the ARTeFACT label map, the last value
of a TensorBoard scalar, and the machine and settings every result JSON starts with."""

from __future__ import annotations

import argparse
import platform
from pathlib import Path
from typing import Any

import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from heritage_seg.core.configs import compose
from heritage_seg.data.labels import LabelMap

REPO = Path(__file__).resolve().parents[1]


def compose_cfg(name: str, overrides: list[str]):
    """`conf/<name>.yaml` with `overrides`, as `python -m heritage_seg.<name>` composes it."""
    return compose(name, overrides)


def labels_from(config_text: str) -> LabelMap:
    return LabelMap.from_config(yaml.safe_load(config_text))


def artefact_labels() -> LabelMap:
    return labels_from((REPO / "conf" / "labels" / "artefact.yaml").read_text())


def final_scalar(run_dir: Path, tag: str) -> float | None:
    """The last logged value of `tag` in a run's TensorBoard events (4 decimals), None if it was never logged."""
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    if tag not in events.Tags()["scalars"]:
        return None
    return round(events.Scalars(tag)[-1].value, 4)


def machine() -> str:
    """What a result JSON records as the machine: the GPU's name, or the CPU and the threads torch uses."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def result_header(args: argparse.Namespace) -> dict[str, Any]:
    """The first keys of a result JSON: the machine, torch's version and the script's settings."""
    return {
        "device": machine(),
        "torch": torch.__version__,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }
