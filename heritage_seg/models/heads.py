"""The multi-task heads of `heads=multitask` (issue 28, the plan's "+Multi-Task" ablation row): a damage/clean
head and a coarse-group head beside the fine one.

Hard parameter sharing: every head reads the U-Net decoder's last feature map, so the encoder and decoder are
shared and the fine head is exactly the single-head model's (the predecessor's hierarchy, which fed each level's
output to the next, was not chosen: there the fine head would change too, and the ablation would no longer
isolate what the extra supervision does). `forward` of the module stays the fine logits, so evaluation,
mapping and the ONNX export need nothing new; the extra heads are read only in training and by `task_logits`.
smp has no multi-head U-Net (its `aux_params` is an image-level classifier), hence this small module.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from segmentation_models_pytorch.base import SegmentationHead
from torch import nn

from heritage_seg.data.labels import LabelMap
from heritage_seg.models.unet import DECODER_CHANNELS

AUX_TASKS = ("binary", "coarse")


def decode(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """An smp U-Net's fine logits and its decoder's last feature map (what smp's forward computes, kept)."""
    decoded = model.decoder(model.encoder(x))
    return model.segmentation_head(decoded), decoded


class AuxiliaryHeads(nn.Module):
    """One 3x3-conv head per extra task (smp's SegmentationHead, as the fine head), on the decoded features."""

    def __init__(self, classes: Mapping[str, int], in_channels: int = DECODER_CHANNELS[-1]):
        super().__init__()
        unknown = set(classes) - set(AUX_TASKS)
        if unknown:
            raise ValueError(f"heads: unknown task(s) {sorted(unknown)}; the extra heads are {list(AUX_TASKS)}")
        self.heads = nn.ModuleDict(
            {task: SegmentationHead(in_channels, n, kernel_size=3) for task, n in classes.items()}
        )

    def forward(self, decoded: torch.Tensor) -> dict[str, torch.Tensor]:
        return {task: head(decoded) for task, head in self.heads.items()}


def task_lookup(fine_to_task: np.ndarray, ignore_index: int) -> torch.Tensor:
    """A 256-entry table mask value -> the task's class id, the ignore index kept, for targets made on the device."""
    table = torch.full((256,), ignore_index, dtype=torch.long)
    table[: len(fine_to_task)] = torch.as_tensor(fine_to_task, dtype=torch.long)
    return table


HEAD_CHOICES = ("single", "multitask")
DAMAGE = "Damage"  # the binary task's second class


def head_weights(heads: Mapping[str, Any] | None) -> dict[str, float]:
    """The extra heads a run config's `heads` asks for and their loss weights (none for heads=single, or for a
    run config from before `heads` existed); a head with weight 0 is left out."""
    if not heads or heads.get("name", "single") == "single":
        return {}
    if heads["name"] not in HEAD_CHOICES:
        raise ValueError(f"heads={heads['name']}: choose one of {list(HEAD_CHOICES)}")
    weights = {}
    for task in AUX_TASKS:
        weight = float(heads[task]["weight"])
        if not weight >= 0:
            raise ValueError(f"heads.{task}.weight={weight}: must be >= 0 (0 leaves the head out)")
        if weight > 0:
            weights[task] = weight
    return weights


def checked_heads(heads: Mapping[str, Any] | None, labels: LabelMap) -> dict[str, float]:
    """`head_weights`, after checking that the label map can feed every extra head asked for (the coarse head
    needs groups): what commands call before they claim a folder or read any data."""
    weights = head_weights(heads)
    for task in weights:
        task_classes(labels, task)
    return weights


def task_classes(labels: LabelMap, task: str) -> tuple[str, ...]:
    """The classes of an extra head: (clean, Damage), or the label map's coarse classes."""
    if task == "binary":
        return (labels.clean_name, DAMAGE)
    if not labels.groups:
        raise ValueError(
            "heads=multitask: the coarse head needs `groups:` in the label map (docs/guide/label-map.md, "
            "'Coarse groups of damage'); add them, or leave the head out with heads.coarse.weight=0"
        )
    return labels.coarse_names


def task_to_fine(labels: LabelMap, task: str) -> np.ndarray:
    """Fine class id -> the task's class id."""
    return labels.binary_lookup() if task == "binary" else labels.coarse_lookup()
