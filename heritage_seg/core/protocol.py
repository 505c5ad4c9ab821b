"""The training protocol: how a model's training images were sized. The one validator of sizes (data.image_size,
data.max_side, a progressive stage's size, pre-training's size) and one type that the data cache, the
LightningModule, sliding-window validation, scoring, predict and the model card all read, and that every
checkpoint records (as `to_dict()`), so later tools size a scan as the model was trained.

Two protocols:
  squash        every image and mask resized to image_size x image_size (the seed's; aspect not kept, each image by
                its own factor, so no single factor matches a scan);
  longest_side  every image cached with its longest side at most max_side (aspect kept, never upscaled), training
                on random image_size crops, validation and mapping by sliding windows of image_size (the crop
                protocol: one pixel density, which predict matches on a scan).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from heritage_seg.core.geometry import fit_longest_side, longest_side_scale

RESIZES = ("squash", "longest_side")


@dataclass(frozen=True)
class Protocol:
    resize: str = "squash"
    image_size: int = 384  # squash: the side of every image; longest_side: the side of every crop and window
    max_side: int | None = None  # longest_side: the longest side of the cached images
    # longest_side, measured on the training fold: cached longest side / original longest side (median, min, max)
    scale_median: float | None = None
    scale_min: float | None = None
    scale_max: float | None = None

    def __post_init__(self):
        if self.resize not in RESIZES:
            raise ValueError(
                f"data.resize={self.resize}: choose squash (every image size x size, the seed's protocol) "
                "or longest_side (aspect kept, longest side at most data.max_side, for random crops)"
            )
        if not isinstance(self.image_size, int) or self.image_size < 32:
            raise ValueError(f"data.image_size={self.image_size}: must be an integer >= 32 pixels")
        if self.image_size % 32:  # the U-Net downsamples 5 times
            raise ValueError(
                f"data.image_size={self.image_size}: must be a multiple of 32 (the U-Net downsamples 5 times)"
            )
        if self.crops:
            if not isinstance(self.max_side, int) or self.max_side < 32:
                raise ValueError(f"data.max_side={self.max_side}: must be an integer >= 32 pixels")
            if self.max_side < self.image_size:
                raise ValueError(
                    f"data.max_side={self.max_side} is smaller than the crop size data.image_size={self.image_size}"
                )

    @classmethod
    def from_data_config(cls, data: Mapping[str, Any]) -> Protocol:
        """The protocol a `data` config section asks for (`resize`, `image_size`, `max_side`)."""
        resize = str(data.get("resize", "squash"))
        max_side = data.get("max_side") if resize == "longest_side" else None
        return cls(resize, int(data["image_size"]), None if max_side is None else int(max_side))

    def at_size(self, image_size: int) -> Protocol:
        """The same protocol at another training size (a progressive stage: data/progressive.py), checked as any."""
        return dataclasses.replace(self, image_size=image_size)

    @classmethod
    def from_record(cls, record: Mapping[str, Any] | None, image_size: int) -> Protocol:
        """A checkpoint's record; checkpoints made before it was recorded were squash-trained at their run's
        `image_size`."""
        fields = {f.name for f in dataclasses.fields(cls)}
        known = {k: v for k, v in dict(record or {}).items() if k in fields}
        known.setdefault("resize", "squash")
        known.setdefault("image_size", int(image_size))
        return cls(**known)

    def to_dict(self) -> dict[str, Any]:
        """What a checkpoint records: resize and image_size, and for crops the cache's max_side and scales."""
        record = {"resize": self.resize, "image_size": self.image_size}
        if self.crops:
            record.update({k: v for k, v in dataclasses.asdict(self).items() if k not in record and v is not None})
        return record

    @property
    def crops(self) -> bool:
        """The crop protocol: random crops in training, sliding windows over whole images in validation."""
        return self.resize == "longest_side"

    @property
    def cache_side(self) -> int:
        """The side the data cache sizes images by: image_size (squash) or max_side (crops)."""
        return self.max_side if self.crops else self.image_size

    @property
    def cache_label(self) -> str:
        return f"max{self.cache_side}px" if self.crops else f"{self.cache_side}px"

    def cached_size(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) of an image of this size in the cache."""
        if not self.crops:
            return self.image_size, self.image_size
        return fit_longest_side(height, width, self.max_side)

    def scan_scale(self, height: int, width: int) -> float | None:
        """The factor that gives a scan the training images' pixel density (crops), or None: a squash-trained
        model saw every image shrunk by its own factor, so no single one matches a scan."""
        return longest_side_scale(height, width, self.max_side) if self.crops else None

    def describe(self) -> str:
        """The geometry in words, for the model card."""
        if self.crops:
            return (
                f"crop protocol: images cached with their longest side at most {self.max_side} px (aspect kept, "
                f"never upscaled), trained on random {self.image_size} px crops. Map a scan at that density: "
                f"resize it so its longest side is at most {self.max_side} px, then slide "
                f"{self.image_size} px windows over it (heritage_seg.predict does this with scale=auto)."
            )
        return (
            f"squash protocol: every training image squashed to {self.image_size} x {self.image_size} px "
            "(aspect not kept). Map a scan the same way: squash it to that size, run the model once, "
            "upsample the probabilities to the scan's size (heritage_seg.predict does this with scale=auto)."
        )
