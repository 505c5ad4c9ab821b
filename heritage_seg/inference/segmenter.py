"""A trained model (or an ensemble) ready to map images: the one loader of predict, evaluate, select and
preannotate, and the project's Python API.

    from heritage_seg import Segmenter
    segmenter = Segmenter.load("museum_model", device="auto", tta=True)   # a .ckpt, a model folder, or a list
    result = segmenter.map("scan.tif")                                      # classes, confidence, uncertainty

Loading reads each checkpoint without running anything it might carry (models/stored.py), checks that the members
of an ensemble agree, picks the device and precision, and moves the models there once; `map` sizes an image as
the model was trained (inference/mapping.py) and masks what is not object in a cut-out. mmsegmentation's
`init_model` / `inference_model` pair, as one object."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import ListConfig
from PIL import Image

from heritage_seg.core.configs import first_difference
from heritage_seg.core.device import inference_precision, pick_device, with_autocast
from heritage_seg.data.imageio import object_mask, open_image, to_rgb
from heritage_seg.data.labels import LabelMap
from heritage_seg.inference.mapping import map_scan, scan_scale, uncertainty_views
from heritage_seg.inference.tta import resolve
from heritage_seg.models.heads import task_classes
from heritage_seg.models.trained import TrainedModel, load_model

# What must agree between the members of an ensemble that maps scans: one label map, one way of sizing a scan
# (models of different folds are the usual deployment ensemble).
SAME_MAPPING = ("data.image_size", "data.resize", "data.max_side", "labels")
WHY_MAPPING = "an ensemble maps with one label map and one way of sizing scans"


def normalised(features: np.ndarray) -> np.ndarray:
    """Each row L2-normalised (distances between them 0..2): how features are compared, here and by select's rule."""
    features = np.asarray(features, dtype=np.float64)
    return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)


def checkpoint_paths(option) -> list[Path]:
    """`ckpt=<file or folder>` or `ckpt=[a,b,...]` (an ensemble) as absolute paths."""
    raw = list(option) if isinstance(option, (list, tuple, ListConfig)) else [option]
    if not raw:
        raise ValueError("ckpt=[]: name at least one checkpoint")
    return [Path(str(c)).expanduser().resolve() for c in raw]


def load_members(ckpts: Sequence[Path], same: Sequence[str], why: str) -> list[TrainedModel]:
    """One or more checkpoints; several form an ensemble and must agree on `same` (config keys) because `why`."""
    members = [load_model(c) for c in ckpts]
    for ckpt, member in zip(ckpts[1:], members[1:]):
        difference = first_difference(members[0].run_config, member.run_config, same)
        if difference:
            key, a, b = difference
            raise ValueError(f"ckpt: {why}, but {ckpts[0]} has {key}={a} and {ckpt} has {key}={b}")
    return members


def read_image(image: str | Path | Image.Image | np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(H, W, 3) uint8 RGB and, for a cut-out, where the object is (alpha > 0; None: everywhere): from a file
    (turned as its EXIF orientation says), a PIL image or an array."""
    if isinstance(image, (str, Path)):
        image = open_image(Path(image), str(image))
    if isinstance(image, Image.Image):
        return np.asarray(to_rgb(image, "image")), object_mask(image)
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ValueError(f"image: an (H, W, 3) uint8 RGB array (or RGBA), not {array.dtype} {array.shape}")
    if array.shape[2] == 4:
        return read_image(Image.fromarray(array, mode="RGBA"))
    return array, None


@dataclass
class SegmentationResult:
    """One image mapped: at the image's own size (or the size the model worked at, `full_size=False`)."""

    classes: np.ndarray  # (H, W) uint8 class ids; labels.ignore_index where a cut-out is transparent
    confidence: np.ndarray  # (H, W) uint8: the chosen class's probability x 255
    uncertainty: np.ndarray | None  # (H, W) uint8: how much the views (TTA, members) disagree x 255, or None
    labels: LabelMap
    inside: np.ndarray | None  # (H, W) bool where a cut-out shows the object; None: the whole image
    scale: float | str  # the factor the image was resized by for sliding windows, or "squash" (one pass)
    window: int
    stride: int | None  # None: one squashed pass
    windows: int
    views: int  # how many views the uncertainty compares (0: no map)

    def shares(self) -> dict[str, float]:
        """Each class's share of the object's pixels (0..1), by class name."""
        counts = np.bincount(self.classes.ravel(), minlength=256)
        total = max(int(counts[: self.labels.num_classes].sum()), 1)
        return {name: float(counts[i]) / total for i, name in enumerate(self.labels.names)}

    def damaged(self) -> float:
        """The share of the object's pixels in any damage class (all but the clean class)."""
        return 1.0 - self.shares()[self.labels.clean_name]

    def colours(self) -> np.ndarray:
        """(H, W, 3) uint8: each pixel in its class's colour from the label map (to show, e.g. in a notebook)."""
        return self.labels.palette()[self.classes]


class Segmenter:
    """Trained model(s) on a device, with a precision and test-time augmentation: map images with `map`."""

    def __init__(
        self,
        members: Sequence[Any],
        labels: LabelMap,
        device: torch.device | str = "cpu",
        precision: str = "32",
        tta: bool | Sequence[str] = False,
        sources: Sequence[str] = (),
    ):
        """`members`: loaded models (TrainedModel; anything with the protocol and temperature it was trained
        with, and logits for uint8 NCHW images: benchmarks pass stand-ins), already on `device`."""
        self.members, self.labels, self.device = list(members), labels, torch.device(device)
        self.precision, self.transforms, self.sources = precision, resolve(tta), [str(s) for s in sources]
        self.protocol = self.members[0].protocol
        self.logits = [with_autocast(m, self.device, precision) for m in self.members]

    @classmethod
    def load(
        cls,
        ckpt: str | Path | Sequence[str | Path],
        device: str = "auto",
        tta: bool | Sequence[str] = True,
        precision: str = "auto",
        same: Sequence[str] = SAME_MAPPING,
        why: str = WHY_MAPPING,
    ) -> Segmenter:
        """A `.ckpt`, a model folder (export format=safetensors), or a list of them (an ensemble, which must agree
        on `same`). `device`: auto (a GPU when there is one), cpu, cuda, cuda:1; `precision`: auto (bf16 on GPUs
        that have it), 32 or bf16; `tta`: true (flips and rot90, probabilities averaged), false, or names."""
        ckpts = checkpoint_paths(ckpt)
        members = load_members(ckpts, same, why)  # bad checkpoints fail before anything else is done
        where = pick_device(str(device))
        precision = inference_precision(precision, where)
        resolve(tta)  # a bad option fails before the models move
        for member in members:
            member.to(where)
        return cls(members, members[0].labels, where, precision, tta, [str(c) for c in ckpts])

    @property
    def tta(self) -> bool:
        return len(self.transforms) > 1

    def without_head(self, task: str) -> list[str]:
        """The members (their files) that have no `task` head: trained without heads=multitask."""
        names = self.sources or ["the model"] * len(self.members)
        return [name for name, m in zip(names, self.members) if task not in m.aux_weights]

    def head(self, task: str) -> list[Callable[[torch.Tensor], torch.Tensor]]:
        """An extra head's logits of every member (heads=multitask: `binary`, `coarse`), under the precision."""
        missing = self.without_head(task)
        if missing:
            raise ValueError(f"{', '.join(missing)} has no {task} head (trained without heads=multitask)")
        return [with_autocast(functools.partial(_task, m, task), self.device, self.precision) for m in self.members]

    def map(
        self,
        image: str | Path | Image.Image | np.ndarray,
        inside: np.ndarray | None = None,
        scale: float | str = "auto",
        uncertainty: bool | str = "auto",
        head: str = "fine",
        window: int | None = None,
        stride: int | None = None,
        batch_size: int = 8,
        blend: str = "gaussian",
        full_size: bool = True,
        on_windows_done: Callable[[int], None] | None = None,
        on_windows_total: Callable[[int], None] | None = None,
    ) -> SegmentationResult:
        """One image mapped as the model was trained (`scale`: see inference/mapping.scan_scale); `inside`: where
        an RGB array shows the object (a file or PIL image brings its own alpha). Outside the object the classes
        are `ignore_index` and the confidence and uncertainty 0. `head`: another head than the fine classes
        (heads=multitask: `binary`, `coarse`), mapped without uncertainty."""
        rgb, alpha = read_image(image)
        inside = alpha if inside is None else inside
        height, width = rgb.shape[:2]
        factor = scan_scale(scale, self.protocol, width, height)
        if head == "fine":
            fns, classes = self.logits, self.labels.num_classes
            views = uncertainty_views(uncertainty, len(self.members), len(self.transforms))
        else:
            fns, classes, views = self.head(head), len(task_classes(self.labels, head)), 0
        maps = map_scan(
            rgb,
            fns,
            self.protocol,
            classes,
            factor,
            self.transforms,
            bool(views),
            self.device,
            window=window,
            stride=stride,
            batch_size=batch_size,
            blend=blend,
            full_size=full_size,
            on_windows_done=on_windows_done,
            on_windows_total=on_windows_total,
        )
        mask, confidence, spread = maps.mask, maps.confidence, maps.uncertainty
        if inside is not None:  # a cut-out's transparent pixels are not object
            if inside.shape != mask.shape:
                inside = np.asarray(Image.fromarray(inside).resize(mask.shape[::-1], Image.Resampling.NEAREST))
            mask = np.where(inside, mask, np.uint8(self.labels.ignore_index))
            confidence = np.where(inside, confidence, np.uint8(0))
            if spread is not None:
                spread = np.where(inside, spread, np.uint8(0))
        return SegmentationResult(
            mask, confidence, spread, self.labels, inside, factor, maps.window, maps.stride, maps.windows, views
        )

    @torch.no_grad()
    def features(self, image: str | Path | Image.Image | np.ndarray) -> np.ndarray:
        """The ensemble's pooled encoder features of an image squashed to the training size (each member's
        normalised, concatenated): what select compares scans by."""
        rgb, _ = read_image(image)
        size = self.protocol.image_size
        small = np.array(Image.fromarray(rgb).resize((size, size), Image.Resampling.BILINEAR, reducing_gap=3.0))
        batch = torch.from_numpy(small).permute(2, 0, 1)[None].to(self.device)
        return np.concatenate([normalised(m.pooled_features(batch).cpu().numpy())[0] for m in self.members])


def _task(member, task: str, images: torch.Tensor) -> torch.Tensor:
    return member.task_logits(images)[task]
