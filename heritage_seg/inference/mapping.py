"""One scan -> its class, confidence and uncertainty maps, sized as the model was trained: what `predict` writes
and what `select` ranks scans by. Memory is bounded by one strip of windows (inference/sliding.py) or one
squashed pass (inference/upsample.py), never by a float map of the whole scan.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from heritage_seg.core.geometry import scaled_size
from heritage_seg.core.protocol import Protocol
from heritage_seg.inference.sliding import count_windows, default_stride, sliding_window_predict
from heritage_seg.inference.tta import ensemble_probabilities
from heritage_seg.inference.uncertainty import check_views
from heritage_seg.inference.upsample import native_class_map


def scan_scale(setting, protocol: Protocol, width: int, height: int) -> float | str:
    """The factor a scan is resized by before sliding windows, or "squash" (whole scan in one pass).

    `auto`: for a crop-trained model (data.resize=longest_side), the factor that gives the scan the training
    images' pixel density: its longest side at most max_side, as the cache made them (never upscaled). A
    squash-trained model saw every image squashed to image_size x image_size, so no single factor matches a scan
    (each training image was shrunk by its own); it gets the scan squashed the same way, one pass, probabilities
    upsampled to the scan's size: the path native-resolution evaluation scores. A number: that factor, windows."""
    if str(setting) == "auto":
        scale = protocol.scan_scale(height, width)
        return "squash" if scale is None else scale
    try:
        scale = float(setting)
    except ValueError:
        raise ValueError(f"scale={setting}: auto, or a resize factor > 0 (e.g. 0.25)") from None
    if not scale > 0:
        raise ValueError(f"scale={setting}: must be > 0")
    return scale


def uncertainty_views(setting, members: int, transforms: int) -> int:
    """How many views an uncertainty map compares (0: no map). `auto`: one where it costs nothing extra (TTA or
    an ensemble); `true`: asked for (refused with one view); `false`: none."""
    views = members * transforms
    if str(setting) == "auto":
        return views if views > 1 else 0
    if setting is True:
        check_views(views)
        return views
    if setting is False:
        return 0
    raise ValueError(f"uncertainty={setting}: auto (with tta=true or an ensemble), true or false")


@dataclass
class ScanMaps:
    mask: np.ndarray  # (H, W) uint8 class ids
    confidence: np.ndarray  # (H, W) uint8, max probability x 255
    uncertainty: np.ndarray | None  # (H, W) uint8 disagreement of the views x 255, or None
    window: int
    stride: int | None  # None: one squashed pass
    windows: int


def map_scan(
    image: np.ndarray,
    logits_fns: Sequence[Callable[[torch.Tensor], torch.Tensor]],
    protocol: Protocol,
    num_classes: int,
    scale: float | str,
    transforms: Sequence[str],
    uncertainty: bool,
    device: torch.device | str,
    window: int | None = None,
    stride: int | None = None,
    batch_size: int = 8,
    blend: str = "gaussian",
    full_size: bool = True,
    on_windows_done: Callable[[int], None] | None = None,
    on_windows_total: Callable[[int], None] | None = None,
) -> ScanMaps:
    """Map an (H, W, 3) uint8 scan with an ensemble of one or more models (`scale` from `scan_scale`). With
    `full_size` the maps are at the scan's own size (probabilities upsampled for a squash pass, maps resized back
    after a scaled sliding pass); without, at the size the model worked at (enough to rank scans)."""
    height, width = image.shape[:2]
    if scale == "squash":  # what a squash-trained model saw: the whole scan at image_size x image_size
        size = protocol.image_size
        small = np.array(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR, reducing_gap=3.0))
        batch = torch.from_numpy(small).permute(2, 0, 1)[None].to(device)
        probs = ensemble_probabilities(list(logits_fns), batch, transforms, spread=uncertainty)[0]
        out_h, out_w = (height, width) if full_size else (size, size)
        mask, confidence, spread = native_class_map(probs, out_h, out_w, uncertainty=uncertainty)
        return ScanMaps(mask, confidence, spread, size, None, 1)
    work = image
    if scale != 1.0:
        size = scaled_size(height, width, scale)[::-1]  # PIL's (width, height)
        work = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0))
    window = int(window or protocol.image_size)
    stride = int(stride or default_stride(window))
    total = count_windows(work.shape[0], work.shape[1], window, stride)
    if on_windows_total is not None:
        on_windows_total(total)
    mask, confidence, spread = sliding_window_predict(
        work,
        list(logits_fns),
        num_classes,
        window,
        stride,
        batch_size,
        transforms,
        blend,
        device,
        on_windows_done,
        uncertainty=uncertainty,
    )
    if full_size and work is not image:  # back to the scan's own pixels
        mask = np.asarray(Image.fromarray(mask).resize((width, height), Image.Resampling.NEAREST))
        confidence = np.asarray(Image.fromarray(confidence).resize((width, height), Image.Resampling.BILINEAR))
        if spread is not None:
            spread = np.asarray(Image.fromarray(spread).resize((width, height), Image.Resampling.BILINEAR))
    return ScanMaps(mask, confidence, spread, window, stride, total)
