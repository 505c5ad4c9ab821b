"""Progressive training resolution (`data.progressive`, issue 28): train at growing sizes, e.g.
`[[256, 10], [384, 20], [512, 20]]` (size in px, epochs), as the plan proposes (256 -> 384 -> 512).

The last stage is the run's protocol: the run config must say so itself, `data.image_size` its size and
`trainer.max_epochs` the stages' total (`check` refuses a config that says otherwise and names what to add; nothing
rewrites the composed config, so `.hydra/config.yaml` and the checkpoint record what ran and evaluate and predict
need nothing new). Validation is at that final size in every stage, so val/mIoU_gt compares epochs of different
stages and best.ckpt is a model for the final protocol. Squash: each stage trains on its own cache of the images at
its size (resampled as a fixed-size run's are); crops: each stage draws crops of its size from the same cached
images (one pixel density, more context per crop). The number of batches per epoch does not depend on the size, so
the OneCycle schedule laid out for the whole run spans every stage, and a resumed run's epoch picks its stage.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from heritage_seg.core.protocol import Protocol

log = logging.getLogger(__name__)
OPTION = "data.progressive"


@dataclass(frozen=True)
class Stage:
    size: int
    epochs: int
    first_epoch: int  # 0-based epoch at which the stage starts


def parse_stages(spec: Sequence[Sequence[Any]] | None, protocol: Protocol | None = None) -> tuple[Stage, ...]:
    """`[[size, epochs], ...]` checked: epochs >= 1, and each size a training size of the run's `protocol` (default
    squash), checked by the protocol itself (a multiple of 32; a crop no larger than data.max_side); () for null."""
    if spec is None:
        return ()
    if isinstance(spec, str) or not isinstance(spec, Sequence) or not spec:
        raise ValueError(f"{OPTION}={spec}: give [[size, epochs], ...], e.g. [[256,10],[384,20],[512,20]], or null")
    protocol = protocol or Protocol()
    stages, start = [], 0
    for item in spec:
        if isinstance(item, str) or not isinstance(item, Sequence) or len(item) != 2:
            raise ValueError(f"{OPTION}: stage {item!r} must be [size, epochs], e.g. [256, 10]")
        size, epochs = item
        if not isinstance(size, int) or not isinstance(epochs, int) or size < 32 or epochs < 1:
            raise ValueError(f"{OPTION}: stage {list(item)} needs an integer size >= 32 px and epochs >= 1")
        try:
            protocol.at_size(size)
        except ValueError as err:
            raise ValueError(f"{OPTION}: stage {list(item)}: {err}") from None
        stages.append(Stage(size, epochs, start))
        start += epochs
    return tuple(stages)


def stage_at(stages: Sequence[Stage], epoch: int) -> Stage:
    """The stage that trains 0-based `epoch` (after the last stage's epochs: the last stage)."""
    return next((s for s in reversed(stages) if epoch >= s.first_epoch), stages[0])


def training_stage(stages: Sequence[Stage], epoch: int, final_size: int) -> Stage:
    """`stage_at`, logged: Lightning asks for a training loader every epoch (reload_dataloaders_every_n_epochs=1),
    a resumed run too, and the epoch picks its stage."""
    stage = stage_at(stages, epoch)
    log.info(
        "%s: epoch %d trains at %d px (stage %d of %d), validation at %d px",
        OPTION,
        epoch + 1,
        stage.size,
        stages.index(stage) + 1,
        len(stages),
        final_size,
    )
    return stage


def stage_protocols(stages: Sequence[Stage], protocol: Protocol) -> dict[int, Protocol]:
    """The data caches the stages need besides the run's own: squash, one per earlier size (each resampled as a
    fixed-size run's images are); crops, none (every stage crops from the one cache)."""
    if protocol.crops:
        return {}
    return {s.size: protocol.at_size(s.size) for s in stages if s.size != protocol.image_size}


def check(cfg: DictConfig) -> tuple[Stage, ...]:
    """A training config's `data.progressive`, checked against the rest of it before any data is read: its last
    stage must be the run's data.image_size and its total the run's trainer.max_epochs (the config says what is
    trained; nothing is set from the stages), and the encoder must take any size."""
    stages = parse_stages(cfg.data.get("progressive"), Protocol.from_data_config(cfg.data))
    if not stages:
        return stages
    img_size = (cfg.encoder.get("kwargs") or {}).get("img_size")
    if img_size is not None:
        raise ValueError(
            f"{OPTION}: encoder {cfg.encoder.name} is built for one input size (encoder.kwargs.img_size={img_size}); "
            "progressive resolution needs an encoder that takes any multiple of 32 (convnext, mit_b3, resnet18)"
        )
    final, total = stages[-1].size, sum(s.epochs for s in stages)
    wanted = {"data.image_size": final, "trainer.max_epochs": total}
    differ = {key: value for key, value in wanted.items() if OmegaConf.select(cfg, key) != value}
    if differ:
        says = " and ".join(f"{key}={OmegaConf.select(cfg, key)}" for key in differ)
        raise ValueError(
            f"{OPTION}={describe(stages)} ends at {final} px after {total} epochs in all, but the run says {says}: "
            "the last stage is the run's size and the stages' total its length; add "
            + " ".join(f"{key}={value}" for key, value in differ.items())
        )
    return stages


def describe(stages: Sequence[Stage]) -> str:
    """The stages as the option is written: [[256,10],[384,20]]."""
    return "[" + ",".join(f"[{s.size},{s.epochs}]" for s in stages) + "]"
