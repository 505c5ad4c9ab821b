"""Test-time augmentation: transforms, their exact inverses, and averaging of softmax PROBABILITIES.

One piece shared by `evaluate`, the end-of-training evaluation callback and full-resolution inference.
Each transform is an index operation (flip / rot90), so its inverse is exact, not an interpolation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from heritage_seg.inference.uncertainty import disagreement, entropy

# name -> (forward, inverse) on (..., H, W) tensors
TRANSFORMS: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]] = {
    "identity": (lambda x: x, lambda x: x),
    "hflip": (lambda x: x.flip(-1), lambda x: x.flip(-1)),
    "vflip": (lambda x: x.flip(-2), lambda x: x.flip(-2)),
    "rot90": (lambda x: x.rot90(1, dims=(-2, -1)), lambda x: x.rot90(-1, dims=(-2, -1))),
}
DEFAULT_TTA = ("identity", "hflip", "vflip", "rot90")


def resolve(names: Sequence[str] | bool) -> tuple[str, ...]:
    """`True` -> the default set, `False` -> identity only; unknown names are refused."""
    if names is True:
        return DEFAULT_TTA
    if names is False or names is None:
        return ("identity",)
    unknown = [n for n in names if n not in TRANSFORMS]
    if unknown:
        raise ValueError(f"tta: unknown transform(s) {unknown}; choose from {list(TRANSFORMS)}")
    return tuple(names)


@torch.no_grad()
def predict_probabilities(
    logits_fn: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    transforms: Sequence[str] = ("identity",),
    spread: bool = False,
) -> torch.Tensor:
    """Mean over transforms of softmax(logits_fn(t(x))) mapped back by t's inverse: (N, C, H, W) float32.

    `spread=True` appends one channel: how much the views disagree, 0..1, per pixel (inference/uncertainty.py).
    Both are per-pixel values that blending windows and bilinear upsampling may average."""
    return ensemble_probabilities([logits_fn], images, transforms, spread)


@torch.no_grad()
def ensemble_probabilities(
    logits_fns: Sequence[Callable[[torch.Tensor], torch.Tensor]],
    images: torch.Tensor,
    transforms: Sequence[str] = ("identity",),
    spread: bool = False,
) -> torch.Tensor:
    """`predict_probabilities` over several models (an ensemble): the mean over every member's every view, and
    with `spread` the disagreement of all of those views."""
    total = entropies = None
    for logits_fn in logits_fns:
        for name in transforms:
            forward, inverse = TRANSFORMS[name]
            probs = inverse(logits_fn(forward(images)).float().softmax(dim=1))
            if spread:
                own = entropy(probs)
                entropies = own if entropies is None else entropies.add_(own)
            total = probs if total is None else total.add_(probs)
    views = len(logits_fns) * len(transforms)
    mean = total.div_(views)
    if not spread:
        return mean
    return torch.cat([mean, disagreement(mean, entropies.div_(views), views)[:, None]], dim=1)
