"""Does the model's confidence, and its uncertainty map, mean something? Pixel counts per bin on a validation fold.

- Calibration of the softmax: the maximum class probability of every scored pixel in 15 equal-width bins (as
  Guo et al. 2017 count it), with the share of those pixels predicted right: the reliability diagram, and the
  expected calibration error ECE = sum over bins of (pixels in bin / pixels) x |accuracy - mean confidence|.
- Where an uncertainty map exists (TTA or an ensemble): the error rate of the pixels in each tenth of the
  uncertainty range. A map worth reading has error rates that rise with it.
Counted where the metrics are counted (each mask's own resolution, or the model's input size), ignored pixels
left out. torchmetrics' CalibrationError takes (N, C) probabilities in memory; these are counted strip by strip.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

CONFIDENCE_BINS = 15
MAX_TEMPERATURE = 100.0  # above it the tempered softmax is practically uniform: the fit has run away
MIN_TEMPERATURE = 0.01
UNCERTAINTY_BINS = 10
log = logging.getLogger(__name__)


class Calibration:
    def __init__(self, device: torch.device | str = "cpu"):
        zeros = lambda n: torch.zeros(n, dtype=torch.float64, device=device)  # noqa: E731
        self.pixels, self.confidence, self.correct = (
            zeros(CONFIDENCE_BINS),
            zeros(CONFIDENCE_BINS),
            zeros(CONFIDENCE_BINS),
        )
        self.uncertain_pixels, self.uncertain_errors = zeros(UNCERTAINTY_BINS), zeros(UNCERTAINTY_BINS)
        self.has_uncertainty = False

    @torch.no_grad()
    def add(
        self, probs: torch.Tensor, target: torch.Tensor, ignore_index: int, uncertainty: torch.Tensor | None = None
    ) -> None:
        """`probs` (C, ...) class probabilities, `target` (...) class ids, `uncertainty` (...) in 0..1 or None."""
        valid = target != ignore_index
        best, pred = probs.max(dim=0)
        best, correct = best[valid].double(), (pred[valid] == target[valid]).double()
        bins = (best * CONFIDENCE_BINS).long().clamp_(0, CONFIDENCE_BINS - 1)
        self.pixels += torch.bincount(bins, minlength=CONFIDENCE_BINS)
        self.confidence += torch.bincount(bins, weights=best, minlength=CONFIDENCE_BINS)
        self.correct += torch.bincount(bins, weights=correct, minlength=CONFIDENCE_BINS)
        if uncertainty is not None:
            self.has_uncertainty = True
            bins = (uncertainty[valid].double() * UNCERTAINTY_BINS).long().clamp_(0, UNCERTAINTY_BINS - 1)
            self.uncertain_pixels += torch.bincount(bins, minlength=UNCERTAINTY_BINS)
            self.uncertain_errors += torch.bincount(bins, weights=1 - correct, minlength=UNCERTAINTY_BINS)

    def ece(self) -> float | None:
        total = float(self.pixels.sum())
        if not total:
            return None
        gap = (self.correct - self.confidence).abs()  # per bin: pixels x |accuracy - confidence|
        return float(gap.sum() / total)

    def payload(self) -> dict[str, Any]:
        """metrics.json's `ece`, `reliability` and `error_by_uncertainty` (null without an uncertainty map)."""
        reliability = [
            {
                "lower": round(b / CONFIDENCE_BINS, 4),
                "upper": round((b + 1) / CONFIDENCE_BINS, 4),
                "pixels": int(n),
                "confidence": float(c / n) if n else None,
                "accuracy": float(a / n) if n else None,
            }
            for b, (n, c, a) in enumerate(zip(self.pixels.tolist(), self.confidence.tolist(), self.correct.tolist()))
        ]
        by_uncertainty = None
        if self.has_uncertainty:
            by_uncertainty = [
                {
                    "lower": round(b / UNCERTAINTY_BINS, 4),
                    "upper": round((b + 1) / UNCERTAINTY_BINS, 4),
                    "pixels": int(n),
                    "error_rate": float(e / n) if n else None,
                }
                for b, (n, e) in enumerate(zip(self.uncertain_pixels.tolist(), self.uncertain_errors.tolist()))
            ]
        return {"ece": self.ece(), "reliability": reliability, "error_by_uncertainty": by_uncertainty}


def fit_temperature(log_probs: torch.Tensor, target: torch.Tensor, iterations: int = 100) -> tuple[float, bool]:
    """Temperature scaling (Guo et al. 2017): the one T > 0 that minimises the cross-entropy of softmax(z / T)
    on held-out pixels, `log_probs` (N, C) (logits or log-probabilities: softmax is the same for both, and so is
    its tempered form) against `target` (N,). Fitted over log T by L-BFGS, as the reference implementation does
    over T; one number, so it changes confidences, never which class wins at a pixel. Returns (T, bounded):
    a model whose probabilities are no better than guessing every class alike (untrained, or other data) has
    its optimum at T -> infinity; T is then held at MAX_TEMPERATURE (near-uniform probabilities) and `bounded`
    is true, with a warning, instead of a number that means nothing."""
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    z, y = log_probs.double(), target.long()
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=iterations, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(z / log_t.exp(), y)
        loss.backward()
        return loss

    optimizer.step(closure)
    temperature = float(log_t.detach().exp())
    bounded = not MIN_TEMPERATURE <= temperature <= MAX_TEMPERATURE
    if bounded:
        log.warning(
            "calibrate=true: the fitted temperature runs off to %.3g: on this validation fold the model's "
            "probabilities are no better than guessing every class alike; it is held at %g. Check that the "
            "checkpoint was trained, and on data like this fold's.",
            temperature,
            MAX_TEMPERATURE if temperature > MAX_TEMPERATURE else MIN_TEMPERATURE,
        )
        temperature = min(max(temperature, MIN_TEMPERATURE), MAX_TEMPERATURE)
    return temperature, bounded


def sample_pixels(
    probs: torch.Tensor, target: torch.Tensor, ignore_index: int, per_image: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Up to `per_image` seeded random scored pixels of each image of a batch: (log-probabilities (n, C), targets)
    on the CPU, so that fitting a temperature on a whole validation fold holds a few MB, not every pixel."""
    logs, targets = [], []
    for p, t in zip(probs, target):
        flat_t = t.reshape(-1)
        valid = torch.nonzero(flat_t != ignore_index).squeeze(1).cpu()
        chosen = valid[torch.randperm(len(valid), generator=generator)[:per_image]]
        flat_p = p.reshape(p.shape[0], -1)
        logs.append(flat_p[:, chosen.to(p.device)].T.clamp_min(1e-12).log().float().cpu())
        targets.append(flat_t[chosen.to(t.device)].cpu())
    return torch.cat(logs), torch.cat(targets)
