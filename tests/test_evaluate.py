"""evaluate end to end on a tiny trained checkpoint: every file, metrics recomputable from the saved masks."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from heritage_seg.core.protocol import Protocol
from heritage_seg.evaluation.metrics import segmentation_metrics
from heritage_seg.tasks.evaluate import evaluate
from tests.conftest import REPO, compose_config
from tests.helpers import scan_folder


@pytest.fixture(scope="module")
def trained(trained_run):
    return trained_run


def _evaluate(ckpt, out_dir, *overrides):
    cfg = compose_config([f"ckpt={ckpt}", "num_examples=3", *overrides], config_name="evaluate")
    return evaluate(cfg, out_dir)


@pytest.fixture(scope="module")
def evaluated(trained, tmp_path_factory):
    out = {}
    for tta in (False, True):
        out_dir = tmp_path_factory.mktemp(f"eval_tta{tta}")
        out[tta] = (out_dir, _evaluate(trained / "checkpoints" / "best.ckpt", out_dir, f"tta={str(tta).lower()}"))
    return out


def test_metrics_json_has_the_documented_schema(evaluated, trained):
    out_dir, payload = evaluated[False]
    on_disk = json.loads((out_dir / "metrics.json").read_text())
    assert on_disk["miou"] == pytest.approx(payload["miou"])
    for key in (
        "miou",
        "pixel_accuracy",
        "mean_dice",
        "per_class",
        "confusion_matrix",
        "classes",
        "tta",
        "num_images",
        "encoder",
        "fold",
        "checkpoint",
        "versions",
    ):
        assert key in on_disk, key
    assert len(on_disk["classes"]) == 16 and np.asarray(on_disk["confusion_matrix"]).shape == (16, 16)
    assert set(on_disk["per_class"]["Clean"]) == {
        "iou",
        "dice",
        "precision",
        "recall",
        "f1",
        "gt_pixels",
        "pred_pixels",
    }
    val_ids = json.loads((trained / "splits.json").read_text())["val_ids"]
    assert on_disk["num_images"] == len(val_ids) and on_disk["fold"] == 0 and on_disk["tta"] is False
    absent = [n for n, row in on_disk["per_class"].items() if row["gt_pixels"] == 0 and row["pred_pixels"] == 0]
    assert all(on_disk["per_class"][n]["iou"] is None for n in absent)  # null, not 0


def _confusion_from_saved_masks(mask_dir, val_ids, truth):
    """An independent count: every saved prediction mask against its truth, with numpy."""
    cm = np.zeros((16, 16), np.int64)
    for sample_id in val_ids:
        pred = np.asarray(Image.open(mask_dir / f"{sample_id}.png"))
        gt = truth(sample_id)
        assert pred.shape == gt.shape, sample_id
        valid = gt != 255
        cm += np.bincount(gt[valid].astype(np.int64) * 16 + pred[valid], minlength=256).reshape(16, 16)
    return cm


def test_metrics_are_recomputed_exactly_from_the_saved_masks(evaluated, trained, labels, sample_root):
    """metrics.json (native) is the saved full-size prediction masks counted against the annotations as stored."""
    out_dir, payload = evaluated[False]
    val_ids = json.loads((trained / "splits.json").read_text())["val_ids"]

    def annotation(sample_id):
        return labels.encode(np.asarray(Image.open(sample_root / "annotations" / f"{sample_id}.png")))

    cm = _confusion_from_saved_masks(out_dir / "predictions" / "masks", val_ids, annotation)
    np.testing.assert_array_equal(cm, np.asarray(payload["confusion_matrix"]))
    assert segmentation_metrics(cm)["miou"] == pytest.approx(payload["miou"], abs=1e-6)


@pytest.mark.slow
def test_input_size_metrics_are_recomputed_exactly_from_the_saved_masks(trained, labels, tmp_path):
    """resolution=train saves (and scores) the masks at the model's input size, against the cached masks."""
    import os

    from heritage_seg.data.cache import cache_path, load_cache
    from heritage_seg.data.readers import open_reader

    payload = _evaluate(trained / "checkpoints" / "best.ckpt", tmp_path, "resolution=train", "num_examples=0")
    data = load_cache(
        cache_path(os.environ["HERITAGE_SEG_CACHE"], open_reader(payload["data_root"]), Protocol("squash", 64), labels)
    )
    val_ids = json.loads((trained / "splits.json").read_text())["val_ids"]
    cm = _confusion_from_saved_masks(
        tmp_path / "predictions" / "masks", val_ids, lambda sample_id: data.masks[data.ids.index(sample_id)]
    )
    np.testing.assert_array_equal(cm, np.asarray(payload["confusion_matrix"]))
    assert payload["resolution"] == "train"


def _native_reference(ckpt, sample_root, labels, val_ids, max_side=None):
    """The plain way: whole-image F.interpolate of each image's probabilities to its mask's stored size."""
    import torch
    import torch.nn.functional as F

    from heritage_seg.models.trained import load_model

    module = load_model(ckpt)
    run_cfg = module.run_config
    size = run_cfg.data.image_size
    cm = np.zeros((16, 16), np.int64)
    for sample_id in val_ids:
        image = Image.open(sample_root / "images" / f"{sample_id}.png").convert("RGB")
        mask = labels.encode(np.asarray(Image.open(sample_root / "annotations" / f"{sample_id}.png")))
        if max_side and max(mask.shape) > max_side:
            scale = max_side / max(mask.shape)
            shape = (round(mask.shape[0] * scale), round(mask.shape[1] * scale))
            mask = np.asarray(Image.fromarray(mask).resize(shape[::-1], Image.Resampling.NEAREST))
        x = torch.from_numpy(np.asarray(image.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=3.0)))
        with torch.no_grad():
            probs = module(x.permute(2, 0, 1)[None]).float().softmax(dim=1)
        pred = F.interpolate(probs, size=mask.shape, mode="bilinear", align_corners=False)[0].argmax(0).numpy()
        valid = mask != 255
        cm += np.bincount(mask[valid].astype(np.int64) * 16 + pred[valid], minlength=256).reshape(16, 16)
    return cm


@pytest.mark.slow
def test_metrics_are_counted_at_each_masks_own_resolution(evaluated, trained, labels, sample_root):
    """Trained at 64 px on larger sample images: metrics.json is scored against the masks as stored."""
    _, payload = evaluated[False]
    assert payload["resolution"] == "native" and payload["max_side"] is None and payload["image_size"] == 64
    val_ids = json.loads((trained / "splits.json").read_text())["val_ids"]
    reference = _native_reference(trained / "checkpoints" / "best.ckpt", sample_root, labels, val_ids)
    stored = sum(
        int((labels.encode(np.asarray(Image.open(sample_root / "annotations" / f"{i}.png"))) != 255).sum())
        for i in val_ids
    )  # every annotated pixel as stored
    assert np.asarray(payload["confusion_matrix"]).sum() == reference.sum() == stored > 64 * 64 * len(val_ids)
    # bilinear weights as F.interpolate's, applied in strips: at most a handful of near-tie pixels may differ
    assert np.abs(np.asarray(payload["confusion_matrix"]) - reference).sum() <= 2 * 1e-4 * reference.sum()


@pytest.mark.slow
def test_resolution_train_and_max_side(trained, evaluated, labels, sample_root, tmp_path):
    ckpt = trained / "checkpoints" / "best.ckpt"
    train_only = _evaluate(ckpt, tmp_path / "train", "resolution=train", "num_examples=0")
    assert train_only["resolution"] == "train" and "train_resolution" not in train_only
    assert train_only["confusion_matrix"] == evaluated[False][1]["train_resolution"]["confusion_matrix"]
    capped = _evaluate(ckpt, tmp_path / "capped", "max_side=96", "num_examples=0")
    val_ids = json.loads((trained / "splits.json").read_text())["val_ids"]
    reference = _native_reference(ckpt, sample_root, labels, val_ids, max_side=96)
    assert capped["max_side"] == 96
    assert np.asarray(capped["confusion_matrix"]).sum() == reference.sum() <= 96 * 96 * len(val_ids)
    assert np.abs(np.asarray(capped["confusion_matrix"]) - reference).sum() <= 2 * 1e-4 * reference.sum()
    for bad, message in (("resolution=full", "resolution=full: choose native"), ("max_side=0", "max_side=0")):
        with pytest.raises(ValueError, match=message):
            _evaluate(ckpt, tmp_path / "bad", bad)
        assert not (tmp_path / "bad").exists()


def test_pictures_and_panels_are_valid_pngs(evaluated):
    out_dir, payload = evaluated[True]
    for name in ("confusion_matrix.png", "class_distribution.png", "iou_per_class.png"):
        with Image.open(out_dir / name) as img:
            img.verify()
    panels = sorted((out_dir / "predictions").glob("*_overlay.png"))
    assert len(panels) == 6  # 3 best + 3 worst
    for stem in {p.name[: -len("_overlay.png")] for p in panels}:
        for suffix, size in (("_input.png", (64, 64)), ("_gt.png", (64, 64)), ("_pred.png", (64, 64))):
            with Image.open(out_dir / "predictions" / f"{stem}{suffix}") as img:
                assert img.size == size
    assert len(list((out_dir / "predictions" / "masks").glob("*.png"))) == payload["num_images"]
    assert payload["tta"] is True and payload["tta_transforms"] == ["identity", "hflip", "vflip", "rot90"]


def test_each_panel_has_a_viewer_of_image_truth_prediction_and_their_difference(evaluated):
    import json
    import re

    out_dir, _ = evaluated[True]
    pages = sorted((out_dir / "predictions").glob("*_viewer.html"))
    assert len(pages) == 6  # one per panel
    for page in pages:
        stem = page.name[: -len("_viewer.html")]
        truth = np.asarray(Image.open(out_dir / "predictions" / f"{stem}_gt.png"))  # palette PNG: the class ids
        pred = np.asarray(Image.open(out_dir / "predictions" / f"{stem}_pred.png"))
        html = page.read_text()
        data = json.loads(re.search(r'<script id="viewer-data" type="application/json">(.*?)</script>', html, re.S)[1])
        layers = {layer["id"]: layer for layer in data["layers"]}
        assert layers["uncertainty"]["kind"] == "heat"  # evaluated with tta=true: the views' disagreement too
        assert [c["class_id"] for c in layers["truth"]["items"]] == sorted(set(np.unique(truth)) - {0, 255})
        assert [c["class_id"] for c in layers["pred"]["items"]] == sorted(set(np.unique(pred)) - {0})
        wrong = (pred != truth) & (truth != 255)
        assert ("diff" in layers) == bool(wrong.any())
        if wrong.any():  # the difference layer covers exactly the box of the wrong pixels
            ys, xs = np.nonzero(wrong)
            box = layers["diff"]["pyramid"]
            assert (box["x"], box["y"], box["width"], box["height"]) == (
                xs.min(),
                ys.min(),
                xs.max() - xs.min() + 1,
                ys.max() - ys.min() + 1,
            )


def test_an_earlier_evaluation_is_never_overwritten(evaluated, trained):
    out_dir, _ = evaluated[False]
    before = (out_dir / "metrics.json").read_bytes()
    with pytest.raises(FileExistsError, match="already holds results"):
        _evaluate(trained / "checkpoints" / "best.ckpt", out_dir)
    assert (out_dir / "metrics.json").read_bytes() == before


def test_bad_checkpoints_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="ckpt=.*missing.ckpt: file not found"):
        _evaluate(tmp_path / "missing.ckpt", tmp_path / "a")
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.ckpt: not a PyTorch checkpoint"):
        _evaluate(tmp_path / "junk.ckpt", tmp_path / "b")
    import torch

    torch.save({"state_dict": {}}, tmp_path / "foreign.ckpt")
    with pytest.raises(ValueError, match="not a heritage_seg checkpoint of a compatible version"):
        _evaluate(tmp_path / "foreign.ckpt", tmp_path / "c")


def _moved_checkpoint(trained, folder):
    """The trained run's checkpoint and splits.json copied to `folder`, its recorded data root gone."""
    import shutil

    import torch

    ckpt = torch.load(trained / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False)
    ckpt["hyper_parameters"]["run_config"]["data"]["root"] = str(folder / "gone")
    ckpt["hyper_parameters"]["run_config"]["data"]["sample"] = None
    (folder / "checkpoints").mkdir(parents=True)
    torch.save(ckpt, folder / "checkpoints" / "best.ckpt")
    shutil.copy(trained / "splits.json", folder / "splits.json")
    return folder / "checkpoints" / "best.ckpt"


def test_moved_data_root_asks_for_data_root(trained, tmp_path):
    moved = _moved_checkpoint(trained, tmp_path / "run")
    with pytest.raises(FileNotFoundError, match="pass data.root="):
        _evaluate(moved, tmp_path / "out")


@pytest.mark.slow
def test_data_moved_elsewhere_is_evaluated_with_data_root(trained, evaluated, sample_root, tmp_path):
    moved = _moved_checkpoint(trained, tmp_path / "run")
    payload = _evaluate(moved, tmp_path / "out", f"data.root={sample_root}", "num_examples=0")
    reference = evaluated[False][1]
    assert payload["data_root"] == str(sample_root)
    assert payload["confusion_matrix"] == reference["confusion_matrix"] and payload["miou"] == reference["miou"]


def test_a_validation_set_that_differs_from_the_runs_splits_json_is_refused(trained, sample_root, tmp_path):
    moved = _moved_checkpoint(trained, tmp_path / "run")
    splits = json.loads((tmp_path / "run" / "splits.json").read_text())
    splits["val_ids"] = splits["val_ids"][1:]  # the data changed since training: one validation image fewer
    (tmp_path / "run" / "splits.json").write_text(json.dumps(splits))
    with pytest.raises(ValueError, match="validation fold rebuilt from .* differs from the run's .*splits.json"):
        _evaluate(moved, tmp_path / "out", f"data.root={sample_root}")
    assert not (tmp_path / "out" / "metrics.json").exists()


@pytest.mark.slow
def test_evaluate_command_line(trained, tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "heritage_seg.evaluate",
            f"ckpt={trained / 'checkpoints' / 'best.ckpt'}",
            "tta=true",
            "num_examples=1",
            f"hydra.run.dir={tmp_path / 'eval'}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Class" in proc.stdout and "mIoU" in proc.stdout and "Lightleak" in proc.stdout
    assert (tmp_path / "eval" / "metrics.json").is_file() and (tmp_path / "eval" / ".hydra" / "config.yaml").is_file()


def test_training_ends_with_metrics_of_the_best_checkpoint_with_and_without_tta(trained, evaluated):
    plain = json.loads((trained / "metrics.json").read_text())
    tta = json.loads((trained / "metrics_tta.json").read_text())
    assert plain["tta"] is False and tta["tta"] is True
    assert plain["checkpoint"].endswith("best.ckpt") and plain["fold"] == 0
    # the callback and `evaluate` are one code path: same checkpoint, same fold -> same numbers
    for flag, payload in ((False, plain), (True, tta)):
        assert payload["resolution"] == "native"
        assert payload["confusion_matrix"] == evaluated[flag][1]["confusion_matrix"]
        assert payload["train_resolution"] == evaluated[flag][1]["train_resolution"]
        assert payload["miou"] == pytest.approx(evaluated[flag][1]["miou"], abs=1e-9)


@pytest.mark.slow
def test_an_ensemble_of_a_checkpoint_with_itself_gives_exactly_its_metrics(trained, evaluated, tmp_path):
    ckpt = trained / "checkpoints" / "best.ckpt"
    payload = _evaluate(f"[{ckpt},{ckpt}]", tmp_path / "ens")
    assert payload["confusion_matrix"] == evaluated[False][1]["confusion_matrix"]
    assert payload["miou"] == evaluated[False][1]["miou"]
    assert payload["members"] == [str(ckpt), str(ckpt)] and payload["family"] == "ensemble"


def test_an_ensemble_mixing_folds_is_refused(trained, tmp_path):
    import torch

    ckpt = torch.load(trained / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False)
    ckpt["hyper_parameters"]["run_config"]["fold"] = 1
    torch.save(ckpt, tmp_path / "fold1.ckpt")
    with pytest.raises(ValueError, match="same validation set.*fold=0.*fold1.ckpt has fold=1"):
        _evaluate(f"[{trained / 'checkpoints' / 'best.ckpt'},{tmp_path / 'fold1.ckpt'}]", tmp_path / "mixed")
    assert not (tmp_path / "mixed").exists()


def test_best_and_worst_panels_rank_only_images_with_scored_pixels(tmp_path, labels):
    from types import SimpleNamespace

    from heritage_seg.evaluation.scoring import EvalResult
    from heritage_seg.tasks.evaluate import write_examples

    good, bad, unscored = np.diag([90, 10]), np.array([[50, 40], [5, 5]]), np.zeros((2, 2), np.int64)
    result = EvalResult(
        confmat=good + bad,
        indices=[0, 1, 2],
        per_image_confmat=[unscored, good, bad],
        predictions=[np.zeros((8, 8), np.uint8)] * 3,
        confidence=[np.full((8, 8), 200, np.uint8)] * 3,
    )
    data = SimpleNamespace(
        ids=["blank", "good", "bad"],
        images=np.zeros((3, 8, 8, 3), np.uint8),
        masks=np.full((3, 8, 8), labels.ignore_index, np.uint8),
    )
    write_examples(tmp_path, result, data, labels, num_examples=5, save_masks=False)
    panels = sorted(p.name for p in (tmp_path / "predictions").glob("*_overlay.png"))
    assert panels == ["best01_good_overlay.png", "worst01_bad_overlay.png"], "an unscored image is neither"


@pytest.mark.slow
def test_bf16_autocast_moves_the_metrics_by_less_than_half_a_point(trained, evaluated, tmp_path):
    """What evaluate/predict use on bf16 GPUs (precision=auto), checked with the CPU's bf16 autocast."""
    reference = evaluated[False][1]
    assert reference["precision"] == "32-true" and reference["device"] == "cpu"  # auto on a CPU: fp32
    bf16 = _evaluate(trained / "checkpoints" / "best.ckpt", tmp_path / "bf16", "precision=bf16", "num_examples=0")
    assert bf16["precision"] == "bf16-mixed"
    for key in ("miou", "miou_gt", "pixel_accuracy"):
        assert abs(bf16[key] - reference[key]) < 0.005, key
    with pytest.raises(ValueError, match="precision=16: choose one of auto, 32, bf16"):
        _evaluate(trained / "checkpoints" / "best.ckpt", tmp_path / "fp16", "precision=16")
    assert not (tmp_path / "fp16").exists()


def test_calibration_and_uncertainty_are_counted_over_the_scored_pixels(evaluated, trained):
    """ECE and the reliability bins always; with TTA also the uncertainty maps, saved at each mask's size, whose
    error-rate bins count the same pixels as the confusion matrix."""
    plain_dir, plain = evaluated[False]
    out_dir, payload = evaluated[True]
    cm = np.asarray(payload["confusion_matrix"])
    for p in (plain, payload):
        bins = p["reliability"]
        assert sum(b["pixels"] for b in bins) == np.asarray(p["confusion_matrix"]).sum()
        gap = sum(b["pixels"] * abs(b["accuracy"] - b["confidence"]) for b in bins if b["pixels"])
        assert p["ece"] == pytest.approx(gap / sum(b["pixels"] for b in bins), abs=1e-9)
    assert plain["error_by_uncertainty"] is None and not (plain_dir / "predictions" / "uncertainty").exists()
    by_uncertainty = payload["error_by_uncertainty"]
    assert payload["uncertainty"]["views"] == 4
    assert sum(b["pixels"] for b in by_uncertainty) == cm.sum()
    errors = sum(round(b["pixels"] * b["error_rate"]) for b in by_uncertainty if b["pixels"])
    assert errors == cm.sum() - np.trace(cm)
    val_ids = json.loads((trained / "splits.json").read_text())["val_ids"]
    for sample_id in val_ids:
        spread = Image.open(out_dir / "predictions" / "uncertainty" / f"{sample_id}.png")
        assert spread.size == Image.open(out_dir / "predictions" / "masks" / f"{sample_id}.png").size
    assert (out_dir / "reliability.png").is_file() and (plain_dir / "reliability.png").is_file()


def test_calibration_lowers_the_error_of_an_over_confident_model_and_predict_uses_it(trained, scans_folder, tmp_path):
    """A head that says Clean (most pixels) with logits x 20 makes an over-confident model that is often right:
    calibrate=true fits a temperature > 1 that lowers its ECE,
    writes calibrated.ckpt, and predict with it gives calibrated confidences; on a scan of the model's own input
    size (nothing interpolated between its pixels) exactly the same mask."""
    import torch

    from heritage_seg.tasks.predict import predict

    checkpoint = torch.load(trained / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False)
    state = checkpoint["state_dict"]
    state["model.segmentation_head.0.bias"][0] += 2.0  # Clean
    for key in [k for k in state if k.startswith("model.segmentation_head.")]:
        state[key] = state[key] * 20
    over = tmp_path / "over.ckpt"
    torch.save(checkpoint, over)
    payload = _evaluate(over, tmp_path / "eval", "calibrate=true", "num_examples=0")
    fitted = payload["calibration"]
    assert fitted["temperature"] > 2 and fitted["ece_after"] < 0.9 * fitted["ece_before"]
    assert fitted["ece_before"] == payload["ece"] and fitted["bounded"] is False
    calibrated = tmp_path / "eval" / "calibrated.ckpt"
    assert fitted["checkpoints"] == [str(calibrated)]
    outputs = {}
    for name, ckpt in (("over", over), ("calibrated", calibrated)):
        cfg = compose_config([f"ckpt={ckpt}", f"input={scans_folder}"], config_name="predict")
        predict(cfg, tmp_path / name)
        outputs[name] = {
            suffix: np.asarray(Image.open(tmp_path / name / f"scan{suffix}"))
            for suffix in ("_mask.png", "_confidence.png")
        }
    np.testing.assert_array_equal(outputs["over"]["_mask.png"], outputs["calibrated"]["_mask.png"])
    assert outputs["calibrated"]["_confidence.png"].mean() < outputs["over"]["_confidence.png"].mean()
    report = json.loads((tmp_path / "calibrated" / "scan_report.json").read_text())
    assert report["temperature"] == pytest.approx(fitted["temperature"], rel=1e-5)


@pytest.fixture
def scans_folder(tmp_path, sample_root):
    return scan_folder(sample_root, tmp_path / "scans", ["sample_003.png"], (64, 64), ["scan.png"])
