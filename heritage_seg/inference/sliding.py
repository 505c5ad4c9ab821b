"""Sliding-window inference over a full-resolution scan, with memory bounded by one strip of windows.

The scan is cut into overlapping windows of the training size; softmax probabilities (optionally TTA-averaged)
are blended with a smooth weight that is highest at a window's centre, so seams do not show. Windows are
processed one row (strip) at a time: the accumulator holds only `window` rows of 16-class probabilities, and a
row of output is finalised into a uint8 class map and a uint8 confidence map as soon as no later window covers it.
A 12,000 x 9,000 scan thus needs ~0.3 GB of accumulator, not the 6.9 GB of a full float probability map.
Written by hand: smp and timm have no tiled inference, and MONAI's sliding_window_inference keeps the full map.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch

from heritage_seg.core.geometry import reflect_pad, reflection_steps
from heritage_seg.core.protocol import Protocol
from heritage_seg.inference.tta import ensemble_probabilities
from heritage_seg.inference.uncertainty import to_uint8


def default_stride(window: int) -> int:
    """2/3 of the window (a third of overlap): predict's default, and the crop protocol's validation."""
    return max(1, round(window * 2 / 3))


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """Starts of windows covering [0, length); the last window ends exactly at `length` (length >= window)."""
    if not 0 < stride <= window:
        raise ValueError(f"stride={stride}: must be in (0, window={window}]")
    if length < window:
        raise ValueError(f"length {length} is shorter than the window {window}; pad first")
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] != length - window:
        starts.append(length - window)
    return starts


def blend_weights(window: int, kind: str = "gaussian") -> np.ndarray:
    """(window, window) weights, 1 at the centre, small but > 0 at the edges (every pixel stays covered)."""
    x = np.arange(window, dtype=np.float64) - (window - 1) / 2
    if kind == "gaussian":
        profile = np.exp(-0.5 * (x / (window / 4)) ** 2)  # sigma = window/4, as nnU-Net uses 1/8 of the patch
    elif kind == "cosine":
        profile = np.cos(np.pi * x / (window + 1)) ** 2
    elif kind == "uniform":
        profile = np.ones(window)
    else:
        raise ValueError(f"blend={kind}: choose gaussian, cosine or uniform")
    weights = np.outer(profile, profile)
    return np.maximum(weights / weights.max(), 1e-3).astype(np.float32)


def count_windows(height: int, width: int, window: int, stride: int) -> int:
    (pad_h, pad_w), _ = _layout(height, width, window, stride)
    return len(window_starts(pad_h, window, stride)) * len(window_starts(pad_w, window, stride))


def _layout(height: int, width: int, window: int, stride: int) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
    """Padded size and (top, bottom, left, right) reflection margins: a margin of half the overlap on every
    side keeps border pixels away from window edges, and small images are padded up to one window."""
    margin = (window - stride) // 2
    pads = []
    for length in (height, width):
        before = margin
        after = max(margin, window - length - before)
        pads += [before, after]
    top, bottom, left, right = pads
    return (height + top + bottom, width + left + right), (top, bottom, left, right)


@torch.no_grad()
def sliding_window_predict(
    image: np.ndarray,
    logits_fn: Callable[[torch.Tensor], torch.Tensor] | Sequence[Callable[[torch.Tensor], torch.Tensor]],
    num_classes: int,
    window: int,
    stride: int,
    batch_size: int = 8,
    transforms: Sequence[str] = ("identity",),
    blend: str = "gaussian",
    device: torch.device | str = "cpu",
    on_windows_done: Callable[[int], None] | None = None,
    uncertainty: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(H, W, 3) uint8 scan -> (H, W) uint8 class ids, (H, W) uint8 confidence (max probability x 255) and, with
    `uncertainty`, (H, W) uint8 disagreement of the views x 255 (inference/uncertainty.py), else None.
    `logits_fn` may be several models (an ensemble): their probabilities are averaged, each after its own TTA."""
    fns = list(logits_fn) if isinstance(logits_fn, (list, tuple)) else [logits_fn]
    height, width = image.shape[:2]
    (pad_h, pad_w), pads = _layout(height, width, window, stride)
    top, _, left, _ = pads
    padded = reflect_pad(image, *pads)
    weights = torch.from_numpy(blend_weights(window, blend)).to(device)
    ys, xs = window_starts(pad_h, window, stride), window_starts(pad_w, window, stride)

    classes = np.zeros((height, width), dtype=np.uint8)
    confidence = np.zeros((height, width), dtype=np.uint8)
    spread = np.zeros((height, width), dtype=np.uint8) if uncertainty else None
    channels = num_classes + (1 if uncertainty else 0)  # + the views' disagreement
    strip = torch.zeros((channels, window, pad_w), dtype=torch.float32, device=device)
    strip_weight = torch.zeros((window, pad_w), dtype=torch.float32, device=device)
    origin = 0  # padded row of strip[0]
    for row, y in enumerate(ys):
        if y != origin:  # shift the accumulator up to this row of windows
            shift = y - origin
            strip = torch.roll(strip, -shift, dims=1)
            strip_weight = torch.roll(strip_weight, -shift, dims=0)
            strip[:, window - shift :] = 0
            strip_weight[window - shift :] = 0
            origin = y
        for batch_xs in _chunks(xs, batch_size):
            crops = np.stack([padded[y : y + window, x : x + window] for x in batch_xs])
            batch = torch.from_numpy(crops).to(device).permute(0, 3, 1, 2)
            probs = ensemble_probabilities(fns, batch, transforms, spread=uncertainty)
            for probs_one, x in zip(probs, batch_xs):
                strip[:, :, x : x + window] += probs_one * weights
                strip_weight[:, x : x + window] += weights
            if on_windows_done is not None:
                on_windows_done(len(batch_xs))
        # rows no later window covers are final
        final_end = (ys[row + 1] if row + 1 < len(ys) else pad_h) - origin
        _finalise(
            strip[:, :final_end],
            strip_weight[:final_end],
            origin,
            top,
            left,
            height,
            width,
            classes,
            confidence,
            spread,
        )
    return classes, confidence, spread


@torch.no_grad()
def sliding_window_probabilities(
    image: torch.Tensor,
    logits_fn: Callable[[torch.Tensor], torch.Tensor] | Sequence[Callable[[torch.Tensor], torch.Tensor]],
    window: int,
    stride: int,
    batch_size: int = 8,
    transforms: Sequence[str] = ("identity",),
    blend: str = "gaussian",
    spread: bool = False,
) -> torch.Tensor:
    """(3, H, W) image (uint8 or float 0..255, on the model's device) -> (C, H, W) blended softmax probabilities
    (with `spread`, + the views' disagreement as a last channel; `logits_fn` may be an ensemble).

    The same windows, padding and blending as `sliding_window_predict`, but the whole probability map is kept:
    for validation over images cached at a bounded size (data.max_side), where the map is at most tens of MB and
    native-resolution scoring needs the probabilities, not the class map."""
    fns = list(logits_fn) if isinstance(logits_fn, (list, tuple)) else [logits_fn]
    height, width = image.shape[1:]
    (pad_h, pad_w), margins = _layout(height, width, window, stride)
    padded = image.float()
    for t, b, l, r, mode in reflection_steps(height, width, *margins):  # as reflect_pad, on the model's device
        padded = torch.nn.functional.pad(
            padded[None], (l, r, t, b), mode="reflect" if mode == "reflect" else "replicate"
        )[0]
    weights = torch.from_numpy(blend_weights(window, blend)).to(image.device)
    corners = [(y, x) for y in window_starts(pad_h, window, stride) for x in window_starts(pad_w, window, stride)]
    total = weight = None
    for batch in _chunks(corners, batch_size):
        crops = torch.stack([padded[:, y : y + window, x : x + window] for y, x in batch])
        probs = ensemble_probabilities(fns, crops, transforms, spread).float()
        if total is None:
            total = torch.zeros((probs.shape[1], pad_h, pad_w), dtype=torch.float32, device=image.device)
            weight = torch.zeros((pad_h, pad_w), dtype=torch.float32, device=image.device)
        for one, (y, x) in zip(probs, batch):
            total[:, y : y + window, x : x + window] += one * weights
            weight[y : y + window, x : x + window] += weights
    return (total / weight)[:, margins[0] : margins[0] + height, margins[2] : margins[2] + width]


def protocol_probabilities(protocol: Protocol | None, window_batch_size: int = 8) -> Callable[..., torch.Tensor]:
    """How a batch of validation images becomes (N, C, H, W) probabilities under a model's training protocol,
    as `(logits_fn or an ensemble's list, images, transforms=("identity",), spread=False)`: squash = the model
    on the batch as it is; crops = each whole cached image by sliding windows of the crop size, as predict maps
    a scan. With `spread`, one more channel: the views' disagreement (inference/uncertainty.py)."""

    def members(logits_fn) -> list:
        return list(logits_fn) if isinstance(logits_fn, (list, tuple)) else [logits_fn]

    if protocol is None or not protocol.crops:

        def whole(logits_fn, images: torch.Tensor, transforms: Sequence[str] = ("identity",), spread=False):
            return ensemble_probabilities(members(logits_fn), images, transforms, spread)

        return whole
    window = protocol.image_size

    def probabilities(logits_fn, images: torch.Tensor, transforms: Sequence[str] = ("identity",), spread=False):
        return torch.stack(
            [
                sliding_window_probabilities(
                    image,
                    members(logits_fn),
                    window,
                    default_stride(window),
                    window_batch_size,
                    transforms,
                    spread=spread,
                )
                for image in images
            ]
        )

    return probabilities


def _finalise(probs, weight, origin, top, left, height, width, classes, confidence, spread) -> None:
    """Write padded rows [origin, origin + len) of the blended probabilities into the image-sized outputs."""
    rows = np.arange(origin, origin + probs.shape[1]) - top
    keep = (rows >= 0) & (rows < height)
    if not keep.any():
        return
    blended = probs[:, torch.from_numpy(keep).to(probs.device)] / weight[torch.from_numpy(keep).to(probs.device)]
    blended = blended[:, :, left : left + width]
    out_rows = slice(rows[keep][0], rows[keep][-1] + 1)
    if spread is not None:
        spread[out_rows] = to_uint8(blended[-1]).cpu().numpy()
        blended = blended[:-1]
    best, ids = blended.max(dim=0)
    classes[out_rows] = ids.to(torch.uint8).cpu().numpy()
    confidence[out_rows] = (best.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()


def _chunks(items: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
