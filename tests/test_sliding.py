"""Sliding windows cover every pixel, blend smoothly, equal whole-image inference, and keep memory bounded."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from heritage_seg.core.geometry import reflect_pad
from heritage_seg.inference.sliding import (
    _layout,
    blend_weights,
    count_windows,
    default_stride,
    sliding_window_predict,
    window_starts,
)
from heritage_seg.models.unet import build_unet
from tests.conftest import REPO
from tests.helpers import run_benchmark


@pytest.mark.parametrize("length,window,stride", [(64, 64, 43), (300, 64, 43), (1000, 384, 256), (129, 64, 64)])
def test_windows_cover_every_pixel_and_end_at_the_border(length, window, stride):
    starts = window_starts(length, window, stride)
    covered = np.zeros(length, int)
    for s in starts:
        covered[s : s + window] += 1
    assert covered.min() >= 1 and starts[0] == 0 and starts[-1] + window == length
    assert all(0 < b - a <= stride for a, b in zip(starts, starts[1:]))


@pytest.mark.parametrize("kind", ["gaussian", "cosine", "uniform"])
def test_blend_weights_are_positive_and_peak_in_the_centre(kind):
    w = blend_weights(64, kind)
    assert w.min() > 0 and w.max() == pytest.approx(1.0)
    assert w[32, 32] >= w[0, 0] and np.allclose(w, w.T) and np.allclose(w, w[::-1, ::-1])


def test_reflect_pad_handles_pads_larger_than_the_image():
    img = np.arange(12, dtype=np.uint8).reshape(3, 4)
    out = reflect_pad(img, 5, 6, 7, 8)
    assert out.shape == (14, 19)
    np.testing.assert_array_equal(out[5:8, 7:11], img)
    np.testing.assert_array_equal(reflect_pad(img, 1, 0, 0, 0)[0], img[1])  # a real reflection


def _pointwise_model():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 16, 1)
    return lambda x: conv(x.float() / 255)


@pytest.mark.parametrize("shape", [(300, 500), (40, 70), (129, 64), (64, 64), (1, 1)])
def test_sliding_equals_whole_image_for_a_pointwise_model(shape):
    """Every window predicts a pixel the same way, so any bookkeeping error in placement or blending shows."""
    model = _pointwise_model()
    image = np.random.default_rng(1).integers(0, 255, (*shape, 3), dtype=np.uint8)
    classes, confidence, _ = sliding_window_predict(image, model, 16, window=64, stride=40, batch_size=3)
    with torch.no_grad():
        probs = model(torch.from_numpy(image).permute(2, 0, 1)[None]).softmax(1)[0]
    np.testing.assert_array_equal(classes, probs.argmax(0).numpy())
    assert np.abs(confidence.astype(int) - (probs.max(0).values * 255).round().int().numpy()).max() <= 1


def test_sliding_matches_whole_image_for_a_real_unet_up_to_border_effects():
    torch.manual_seed(0)
    model = build_unet("tu-convnext_tiny", None, 16).eval()
    image = np.random.default_rng(2).integers(0, 255, (192, 192, 3), dtype=np.uint8)

    def logits(x):
        return model(x.float() / 127.5 - 1)

    classes, _, _ = sliding_window_predict(image, logits, 16, window=128, stride=64, batch_size=4)
    with torch.no_grad():
        whole = logits(torch.from_numpy(image).permute(2, 0, 1)[None]).argmax(1)[0].numpy()
    inner = (slice(32, -32), slice(32, -32))
    assert (classes[inner] == whole[inner]).mean() > 0.9  # windows see less context than the whole image


def test_tta_per_window_keeps_a_pointwise_model_unchanged():
    model = _pointwise_model()
    image = np.random.default_rng(3).integers(0, 255, (100, 90, 3), dtype=np.uint8)
    plain, _, _ = sliding_window_predict(image, model, 16, 64, 40)
    tta, _, _ = sliding_window_predict(image, model, 16, 64, 40, transforms=("identity", "hflip", "vflip", "rot90"))
    np.testing.assert_array_equal(plain, tta)


MEMORY_PROBE = """
import resource, numpy as np, torch
from heritage_seg.inference.sliding import sliding_window_predict
conv = torch.nn.Conv2d(3, 16, 1)
image = np.random.default_rng(0).integers(0, 255, (4096, 4096, 3), dtype=np.uint8)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
classes, conf, _ = sliding_window_predict(image, lambda x: conv(x.float() / 255), 16, 256, 192, batch_size=8)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((peak - base) * 1024)
"""


@pytest.mark.slow
def test_memory_for_a_4096_scan_stays_far_below_a_full_probability_map():
    proc = subprocess.run([sys.executable, "-c", MEMORY_PROBE], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    extra = int(proc.stdout.strip().splitlines()[-1])
    full_map = 16 * 4096 * 4096 * 4  # 1 GiB of float32 probabilities
    assert extra < full_map / 4, f"peak grew by {extra / 2**20:.0f} MiB"


def test_layout_pads_small_images_up_to_one_window():
    (h, w), (top, bottom, left, right) = _layout(10, 300, 64, 40)
    assert h >= 64 and w == 300 + left + right and top == left == 12


@pytest.mark.slow
def test_predict_benchmark_script_runs_and_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "benchmarks/predict_benchmark.py", "--sizes", "96", "--window", "64", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    import json

    results = json.loads(out.read_text())["results"]
    assert [(r["size"], r["tta"]) for r in results] == [(96, False), (96, True)]
    assert all(r["seconds"] > 0 and r["windows"] == 9 for r in results)


@pytest.mark.slow
def test_predict_benchmark_measures_the_whole_predict_path_on_a_scan(tmp_path):
    """--scan-outputs runs predict_image itself with a stand-in model: it must keep up with what predict reads."""

    payload, printed = run_benchmark("predict_benchmark.py", "--scan-outputs 300 200 --window 64", timeout=300)
    (result,) = payload["results"]
    assert (result["width"], result["height"]) == (300, 200) and result["windows"] > 1
    assert set(result["stage_seconds"]) >= {"decode", "mapping", "statistics", "viewer"}
    assert result["viewer_s"] >= 0 and result["rgba_copy_of_the_scan_mib"] == round(300 * 200 * 4 / 2**20)


@pytest.mark.slow
def test_predict_benchmark_end_to_end_times_the_whole_predict_path_warm_with_a_real_unet(tmp_path):
    """--end-to-end: what the GPU target 'predict a 4096² scan in <= 4 s' is read from; its split must add up."""

    payload, printed = run_benchmark(
        "predict_benchmark.py", "--end-to-end 256 192 --encoder resnet18 --window 64", timeout=300
    )
    (result,) = payload["results"]
    assert (result["width"], result["height"], result["device"], result["precision"]) == (256, 192, "cpu", "32-true")
    assert [case["tta"] for case in result["cases"]] == [False, True]
    for case in result["cases"]:
        stages = case["stage_seconds"]
        assert set(stages) == {"decode", "mapping", "statistics", "overlay_and_files", "viewer"}
        assert case["viewer_s"] == pytest.approx(stages["viewer"], abs=0.02)  # the viewer's tiles, timed apart
        assert case["viewer_rss_growth_mib"] >= 0 and case["viewer_tiles"] > 0
        assert case["viewer_pictures"] >= 1 and case["viewer_pyramids"] == 0  # 256 x 192: layers are pictures
        assert case["mapping_s"] == stages["mapping"] > 0
        assert case["windows"] == count_windows(192, 256, 64, default_stride(64)) > 1
        assert case["all_but_mapping_s"] == pytest.approx(sum(stages.values()) - stages["mapping"], abs=1e-3)
        assert case["seconds"] >= case["mapping_s"] + case["all_but_mapping_s"] - 0.02
    assert "end to end" in printed
