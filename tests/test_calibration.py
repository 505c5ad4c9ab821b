"""Calibration counts: ECE as torchmetrics computes it, the reliability bins, the error rate per uncertainty bin."""

from __future__ import annotations

import pytest
import torch
from torchmetrics.classification import MulticlassCalibrationError

from heritage_seg.evaluation.calibration import Calibration


def test_ece_equals_torchmetrics_on_the_same_pixels():
    torch.manual_seed(0)
    probs = (torch.randn(5, 40, 30) * 2).softmax(0)
    target = torch.randint(0, 5, (40, 30))
    target[:3] = 255  # ignored pixels are not counted
    ours = Calibration()
    ours.add(probs[:, :20], target[:20], 255)  # strip by strip, as native scoring counts
    ours.add(probs[:, 20:], target[20:], 255)
    reference = MulticlassCalibrationError(num_classes=5, n_bins=15, norm="l1", ignore_index=255)
    expected = reference(probs.permute(1, 2, 0).reshape(-1, 5), target.reshape(-1))
    assert ours.ece() == pytest.approx(float(expected), abs=1e-5)
    assert sum(b["pixels"] for b in ours.payload()["reliability"]) == int((target != 255).sum())


def _confident(confidence: float, right: float, n: int = 1000):
    """Two classes, every pixel predicted class 0 with `confidence`; a share `right` of them truly class 0."""
    probs = torch.tensor([confidence, 1 - confidence]).view(2, 1).expand(2, n).clone()
    target = (torch.arange(n) >= right * n).long()
    return probs, target


def test_an_over_confident_model_has_a_large_ece_and_a_calibrated_one_none():
    over, calibrated = Calibration(), Calibration()
    over.add(*_confident(0.99, 0.5), 255)
    calibrated.add(*_confident(0.75, 0.75), 255)
    assert over.ece() == pytest.approx(0.49, abs=1e-6)
    assert calibrated.ece() == pytest.approx(0.0, abs=1e-6)
    bins = [b for b in over.payload()["reliability"] if b["pixels"]]
    assert len(bins) == 1 and bins[0]["accuracy"] == pytest.approx(0.5) and bins[0]["confidence"] == pytest.approx(0.99)


def test_error_rate_per_uncertainty_bin_counts_the_wrong_pixels():
    probs, target = _confident(0.9, 0.5, n=100)
    uncertainty = torch.where(target == 1, 0.95, 0.05)  # uncertain exactly where wrong
    counts = Calibration()
    counts.add(probs, target, 255, uncertainty)
    bins = counts.payload()["error_by_uncertainty"]
    assert (bins[0]["pixels"], bins[0]["error_rate"]) == (50, 0.0)
    assert (bins[-1]["pixels"], bins[-1]["error_rate"]) == (50, 1.0)
    assert all(b["pixels"] == 0 and b["error_rate"] is None for b in bins[1:-1])
    assert Calibration().payload()["error_by_uncertainty"] is None and Calibration().ece() is None


def test_the_fitted_temperature_undoes_a_known_over_confidence():
    from heritage_seg.evaluation.calibration import fit_temperature

    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(20000, 6, generator=generator) * 2
    target = torch.multinomial(logits.softmax(1), 1, generator=generator).squeeze(1)  # calibrated by construction
    assert fit_temperature(logits * 3, target) == (pytest.approx(3.0, rel=0.05), False)
    assert fit_temperature(logits, target) == (pytest.approx(1.0, rel=0.05), False)


def test_a_model_worse_than_guessing_is_held_at_the_bound_with_a_warning(caplog):
    from heritage_seg.evaluation.calibration import MAX_TEMPERATURE, fit_temperature

    logits = torch.randn(5000, 4, generator=torch.Generator().manual_seed(1)) * 10
    wrong = (logits.argmax(1) + 1) % 4  # confidently wrong everywhere
    assert fit_temperature(logits, wrong) == (MAX_TEMPERATURE, True)
    assert "the fitted temperature runs off" in caplog.text
