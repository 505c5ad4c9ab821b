"""Progressive training resolution (`data.progressive`, issue 28): train at growing sizes, e.g.
`[[256, 10], [384, 20], [512, 20]]` (size in px, epochs), as the plan proposes (256 -> 384 -> 512).

The last stage is the run's protocol: `data.image_size` becomes its size and `trainer.max_epochs` the stages'
total (`settle`), so the checkpoint records what `evaluate` and `predict` must match and nothing new is needed
there. Validation is at that final size in every stage, so val/mIoU_gt compares epochs of different stages
and best.ckpt is a model for the final protocol. Squash: each stage trains on its own cache of the images at its
size (resampled as a fixed-size run's are); crops: each stage draws crops of its size from the same cached images
(one pixel density, more context per crop). The number of batches per epoch does not depend on the size, so
the OneCycle schedule laid out for the whole run spans every stage, and a resumed run's epoch picks its stage.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, open_dict

from heritage_seg.core.geometry import check_image_size

log = logging.getLogger(__name__)
OPTION = "data.progressive"


@dataclass(frozen=True)
class Stage:
    size: int
    epochs: int
    first_epoch: int  # 0-based epoch at which the stage starts


def parse_stages(spec: Sequence[Sequence[Any]] | None) -> tuple[Stage, ...]:
    """`[[size, epochs], ...]` checked: sizes multiples of 32, epochs >= 1; () for null."""
    if spec is None:
        return ()
    if isinstance(spec, str) or not isinstance(spec, Sequence) or not spec:
        raise ValueError(f"{OPTION}={spec}: give [[size, epochs], ...], e.g. [[256,10],[384,20],[512,20]], or null")
    stages, start = [], 0
    for item in spec:
        if isinstance(item, str) or not isinstance(item, Sequence) or len(item) != 2:
            raise ValueError(f"{OPTION}: stage {item!r} must be [size, epochs], e.g. [256, 10]")
        size, epochs = item
        if not isinstance(size, int) or not isinstance(epochs, int) or size < 32 or epochs < 1:
            raise ValueError(f"{OPTION}: stage {list(item)} needs an integer size >= 32 px and epochs >= 1")
        try:
            check_image_size(size)
        except ValueError as err:
            raise ValueError(f"{OPTION}: stage {list(item)}: {err}") from None
        stages.append(Stage(size, epochs, start))
        start += epochs
    return tuple(stages)


def check_crop_sizes(stages: Sequence[Stage], max_side: int) -> None:
    """The crop protocol crops each stage's size from images cached at most `max_side` on their longest side."""
    if any(s.size > max_side for s in stages):
        raise ValueError(f"{OPTION}: a crop size is larger than data.max_side={max_side}")


def stage_at(stages: Sequence[Stage], epoch: int) -> Stage:
    """The stage that trains 0-based `epoch` (after the last stage's epochs: the last stage)."""
    return next((s for s in reversed(stages) if epoch >= s.first_epoch), stages[0])


def settle(cfg: DictConfig) -> tuple[Stage, ...]:
    """A training config with `data.progressive`: data.image_size := the last stage's size and
    trainer.max_epochs := the stages' total (both logged), so the run config says what was trained."""
    stages = parse_stages(cfg.data.get("progressive"))
    if not stages:
        return stages
    final, total = stages[-1].size, sum(s.epochs for s in stages)
    kwargs = (cfg.encoder.get("kwargs") or {}).get("img_size")
    if kwargs is not None:
        raise ValueError(
            f"{OPTION}: encoder {cfg.encoder.name} is built for one input size (encoder.kwargs.img_size={kwargs}); "
            "progressive resolution needs an encoder that takes any multiple of 32 (convnext, mit_b3, resnet18)"
        )
    if cfg.data.get("resize") == "longest_side":
        check_crop_sizes(stages, int(cfg.data.max_side))
    with open_dict(cfg):
        if cfg.data.image_size != final or cfg.trainer.max_epochs != total:
            log.info(
                "%s: %s; data.image_size=%d (was %s) and trainer.max_epochs=%d (was %s), the last stage and the total",
                OPTION,
                " -> ".join(f"{s.size} px x {s.epochs} epochs" for s in stages),
                final,
                cfg.data.image_size,
                total,
                cfg.trainer.max_epochs,
            )
        cfg.data.image_size, cfg.trainer.max_epochs = final, total
    return stages
