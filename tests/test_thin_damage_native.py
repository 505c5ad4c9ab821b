"""Thin damage on large images: the squashed figure and the native one differ, and the native one is the
saved full-size prediction masks counted against the annotations as stored (an independent numpy count)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from heritage_seg.tasks.evaluate import evaluate
from heritage_seg.tasks.train import train
from tests.conftest import compose_config, tiny_train_overrides

WIDTH, HEIGHT = 1600, 1000
CRACKS, STAINING = 9, 10  # raw values = class ids in the ARTeFACT label map


def make_thin_line_folder(root, n=6):
    """n photographs of 1,600 x 1,000 px, each with 2-px cracks (raw 9) and one stain (raw 10)."""
    rng = np.random.default_rng(3)
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    for i in range(n):
        image = rng.integers(150, 200, (HEIGHT, WIDTH, 3), dtype=np.uint8)
        mask = np.zeros((HEIGHT, WIDTH), np.uint8)
        for _ in range(4):
            row, col = int(rng.integers(50, HEIGHT - 50)), int(rng.integers(0, WIDTH // 2))
            mask[row : row + 2, col : col + WIDTH // 2] = CRACKS  # 2 px thick, 800 px long
            column = int(rng.integers(50, WIDTH - 50))
            mask[100 : HEIGHT - 100, column : column + 2] = CRACKS
        mask[600:800, 1200:1450] = STAINING
        image[mask == CRACKS] = 40
        image[mask == STAINING] = (120, 160, 90)
        Image.fromarray(image).save(root / "images" / f"photo{i}.png")
        Image.fromarray(mask, mode="L").save(root / "annotations" / f"photo{i}.png")
    return root


@pytest.mark.slow
def test_native_figure_is_the_full_size_masks_counted_and_differs_from_the_squashed(tmp_path, labels):
    root = make_thin_line_folder(tmp_path / "photos")
    run = tmp_path / "run"
    train(compose_config(tiny_train_overrides(run, root) + ["data.sample=null", "n_folds=2"]))
    out = tmp_path / "eval"
    payload = evaluate(
        compose_config([f"ckpt={run / 'checkpoints' / 'best.ckpt'}", "num_examples=0"], config_name="evaluate"), out
    )
    val_ids = json.loads((run / "splits.json").read_text())["val_ids"]

    cm = np.zeros((16, 16), np.int64)
    crack_pixels = 0
    for sample_id in val_ids:
        pred = np.asarray(Image.open(out / "predictions" / "masks" / f"{sample_id}.png"))
        truth = np.asarray(Image.open(root / "annotations" / f"{sample_id}.png"))
        assert pred.shape == truth.shape == (HEIGHT, WIDTH)  # saved at the annotation's own size
        cm += np.bincount(truth.astype(np.int64).ravel() * 16 + pred.ravel(), minlength=256).reshape(16, 16)
        crack_pixels += int((truth == CRACKS).sum())
    np.testing.assert_array_equal(cm, np.asarray(payload["confusion_matrix"]))
    assert payload["per_class"]["Cracks"]["gt_pixels"] == crack_pixels

    squashed = payload["train_resolution"]
    scale = 64 * 64 / (WIDTH * HEIGHT)
    squashed_cracks = squashed["per_class"]["Cracks"]["gt_pixels"]
    # nearest-neighbour squashing to 64 px does not keep the cracks' share of the image: they vanish or fatten
    assert squashed_cracks != pytest.approx(crack_pixels * scale, rel=0.2)
    assert squashed["miou"] != pytest.approx(payload["miou"], rel=0.05)
