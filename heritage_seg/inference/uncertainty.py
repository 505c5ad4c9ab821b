"""How far to trust a damage map: how much the views that made it disagree (the TTA transforms and the members of
an ensemble).

The map is the mutual information between the prediction and the view, H(mean_k p_k) - mean_k H(p_k) (BALD,
Houlsby et al. 2011), divided by the largest value it can take, log(min(views, classes)), so that it reads 0..1:
0 where every view gives the same probabilities, 1 where the views are each certain of a different class. Why
this and not the softmax's entropy: one view's own confidence is written already (<scan>_confidence.png, and
calibrated by a temperature), a model that is confidently wrong the same way under every flip shows nothing
new in it, and where flipped views or ensemble members disagree the answer depends on how the scan was looked
at, which is what an annotator should check and what teaches a model most (the active-learning rule uses it).
It is computed per window from that window's views and then blended like the probabilities: overlapping
windows that see a pixel in different context are not counted as disagreeing views. One view (no TTA, one
checkpoint) cannot disagree with itself: there is no map then.
"""

from __future__ import annotations

import math

import torch

MEASURE = "disagreement of the views: mutual information / log(min(views, classes)), 0..1"


def check_views(views: int) -> None:
    if views < 2:
        raise ValueError(
            "uncertainty=true needs at least two views to compare: pass tta=true or several checkpoints "
            "(ckpt=[a.ckpt,b.ckpt]); one view cannot disagree with itself"
        )


def entropy(probs: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Shannon entropy (nats) of probabilities along `dim` (0 log 0 = 0)."""
    return -(probs * probs.clamp_min(1e-12).log()).sum(dim=dim)


def disagreement(mean: torch.Tensor, mean_entropy: torch.Tensor, views: int) -> torch.Tensor:
    """0..1 per pixel: the mutual information H(mean) - mean_entropy of `views` views ((N, C, H, W) mean
    probabilities, (N, H, W) mean of the views' own entropies), over its largest value log(min(views, C)).
    One view: zeros."""
    if views < 2:
        return torch.zeros_like(mean_entropy)
    information = entropy(mean, 1) - mean_entropy
    return (information / math.log(min(views, mean.shape[1]))).clamp_(0, 1)


def to_uint8(values: torch.Tensor) -> torch.Tensor:
    """0..1 -> 0..255 (the PNG written beside a mask)."""
    return (values.clamp(0, 1) * 255).round().to(torch.uint8)
