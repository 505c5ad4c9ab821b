"""On a CUDA GPU: training keeps its data and its end-of-fit report on the GPU, evaluate and predict use bf16
autocast there. Skipped where there is no CUDA (CI); benchmarks/gpu_check.sh runs them on a GPU node."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from heritage_seg.tasks.evaluate import evaluate
from heritage_seg.tasks.predict import predict
from heritage_seg.tasks.train import train
from tests.conftest import compose_config, tiny_train_overrides

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (benchmarks/gpu_check.sh)"),
]


@pytest.fixture(scope="module")
def gpu_run(tmp_path_factory, sample_root, trains):
    run_dir = tmp_path_factory.mktemp("gpu_run")
    tta = "callbacks.final_validation_report.tta=true"  # tiny_train_overrides leave the TTA report out
    train(compose_config(tiny_train_overrides(run_dir, sample_root) + ["trainer.accelerator=gpu", tta]))
    return run_dir


def test_the_end_of_fit_report_runs_on_the_gpu_with_the_training_precision(gpu_run):
    expected = "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    for name in ("metrics.json", "metrics_tta.json"):
        metrics = json.loads((gpu_run / name).read_text())
        assert metrics["device"].startswith("cuda") and metrics["precision"] == expected


def test_training_batches_are_drawn_on_the_gpu(sample_root, labels):
    from hydra.utils import instantiate

    cfg = compose_config(
        ["data=sample", f"data.root={sample_root}", "data.image_size=64", "run_dir=/tmp/x", "data.preload_to=cuda"]
    )
    datamodule = instantiate(cfg.data, _partial_=True)(labels=labels, fold=0, n_folds=3, seed=42)
    datamodule.prepare_data()
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["image"].is_cuda and batch["mask"].is_cuda and batch["image"].dtype == torch.uint8
    first = int(batch["index"][0])  # the data-set index of the first sample
    np.testing.assert_array_equal(batch["image"][0].permute(1, 2, 0).cpu().numpy(), datamodule.data.images[first])


def test_evaluate_on_the_gpu_in_bf16_agrees_with_fp32(gpu_run, tmp_path):
    ckpt = gpu_run / "checkpoints" / "best.ckpt"
    runs = {
        p: evaluate(
            compose_config([f"ckpt={ckpt}", "num_examples=0", f"precision={p}", "device=cuda"], config_name="evaluate"),
            tmp_path / p,
        )
        for p in ("auto", "32")
    }
    assert runs["auto"]["device"].startswith("cuda")
    assert runs["auto"]["precision"] == ("bf16-mixed" if torch.cuda.is_bf16_supported() else "32-true")
    for key in ("miou", "miou_gt", "pixel_accuracy"):
        assert abs(runs["auto"][key] - runs["32"][key]) < 0.005, key


def test_predict_on_the_gpu(gpu_run, sample_root, tmp_path):
    scan = tmp_path / "scan.png"
    Image.open(sample_root / "images" / "sample_003.png").convert("RGB").resize((500, 300)).save(scan)
    predict(
        compose_config(
            [f"ckpt={gpu_run / 'checkpoints' / 'best.ckpt'}", f"input={scan}", "device=cuda"], config_name="predict"
        ),
        tmp_path / "out",
    )
    report = json.loads((tmp_path / "out" / "scan_report.json").read_text())
    assert report["precision"] == ("bf16-mixed" if torch.cuda.is_bf16_supported() else "32-true")
    with Image.open(tmp_path / "out" / "scan_mask.png") as mask:
        assert mask.size == (500, 300)


def test_the_gpu_smoke_preset_trains_on_the_gpu(tmp_path, sample_root):
    run = tmp_path / "smoke"
    train(
        compose_config(["experiment=gpu_smoke", f"data.root={sample_root}", f"run_dir={run}", "trainer.max_epochs=1"])
    )
    assert json.loads((run / "metrics_tta.json").read_text())["device"].startswith("cuda")


def test_the_projects_own_training_step_parts_never_wait_for_the_gpu():
    """Augmentation and loss (the parts of a training step heritage_seg writes) make no host-device
    synchronisation: smp's FocalLoss made 32 per step (boolean indexing per class), the old flips several."""
    from heritage_seg.data.augment import BatchFlipRotate
    from heritage_seg.training.losses import DiceFocalLoss

    loss = DiceFocalLoss(class_weights=[1.0 + i / 10 for i in range(16)], dice_classes=list(range(0, 16, 2))).cuda()
    augment = BatchFlipRotate(seed=0)
    images = torch.randint(0, 255, (4, 3, 64, 64), dtype=torch.uint8, device="cuda")
    masks = torch.randint(0, 16, (4, 64, 64), dtype=torch.uint8, device="cuda")
    masks[:, :5] = 255
    logits = torch.randn(4, 16, 64, 64, device="cuda", requires_grad=True)
    augment(images, masks)  # first call: lazy CUDA/generator set-up is not a training step
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        images, masks = augment(images, masks)
        value = loss(logits, masks)
        value.backward()
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert torch.isfinite(value) and logits.grad is not None
