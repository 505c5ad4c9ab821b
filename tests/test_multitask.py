"""heads=multitask (issue 28): damage/clean and coarse-group heads beside the fine one, as an ablation.

It trains (each head's loss fitted to its task's pixels), saves and reloads with every head, scores and exports the
fine head only, and refuses a label map without groups before reading any data."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from heritage_seg.models.trained import load_model
from heritage_seg.tasks.aggregate import aggregate
from heritage_seg.tasks.export import export
from heritage_seg.tasks.train import train
from tests.conftest import compose_config
from tests.helpers import fake_run

MULTITASK = ["experiment=sample", "debug=tiny", "encoder=resnet18", "heads=multitask"]


@pytest.fixture(scope="module")
def multitask_run(tmp_path_factory, sample_root, trains):
    run = tmp_path_factory.mktemp("multitask")
    train(compose_config([*MULTITASK, f"data.root={sample_root}", f"run_dir={run}", "heads.binary.weight=0.3"]))
    return run


def test_each_head_gets_a_loss_fitted_to_its_tasks_pixels(multitask_run, labels):
    record = json.loads((multitask_run / "class_weights.json").read_text())
    fine = np.array(record["train_pixel_counts"])
    binary, coarse = record["heads"]["binary"], record["heads"]["coarse"]
    assert binary["classes"] == ["Clean", "Damage"]
    assert binary["train_pixel_counts"] == [fine[0], fine[1:].sum()]
    assert coarse["classes"] == list(labels.coarse_names)
    for g, (name, ids) in enumerate(labels.groups, start=1):
        assert coarse["train_pixel_counts"][g] == fine[list(ids)].sum(), name
    assert binary["weights"][1] > binary["weights"][0], "damage is the rarer class here: the larger weight"


def test_the_loss_is_the_fine_loss_plus_the_weighted_extra_losses(multitask_run, sample_root):
    from heritage_seg.training.module import SegmentationModule

    ckpt = multitask_run / "checkpoints" / "best.ckpt"
    module = SegmentationModule.load_from_checkpoint(ckpt, map_location="cpu", weights_only=True)  # with its losses
    assert module.aux_weights == {"binary": 0.3, "coarse": 0.5}
    rng = np.random.default_rng(0)
    image = torch.from_numpy(rng.integers(0, 255, (2, 3, 64, 64), dtype=np.uint8))
    mask = torch.from_numpy(rng.integers(0, 16, (2, 64, 64))).long()
    mask[:, :4] = 255  # ignored pixels stay ignored in every task
    logits = module.task_logits(image)
    assert {k: v.shape[1] for k, v in logits.items()} == {"fine": 16, "binary": 2, "coarse": 6}
    assert torch.equal(logits["fine"], module(image)), "the fine head is what forward (and so scoring) gives"
    binary_target = (mask != 0).long()
    binary_target[mask == 255] = 255
    expected = (
        module.loss(logits["fine"], mask)
        + 0.3 * module.aux_losses["binary"](logits["binary"], binary_target)
        + 0.5 * module.aux_losses["coarse"](logits["coarse"], module.coarse_lookup[mask])
    )
    module.log = lambda *args, **kwargs: None  # outside a Trainer
    total = module._multitask_loss({"image": image, "mask": mask})
    assert total.item() == pytest.approx(expected.item(), rel=1e-5)
    total.backward()
    for name in (
        "aux_heads.heads.binary.0.weight",
        "aux_heads.heads.coarse.0.weight",
        "model.segmentation_head.0.weight",
    ):
        grad = dict(module.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, f"{name} learns from the total loss"


def test_the_heads_are_saved_and_reloaded_and_only_the_fine_logits_are_exported(multitask_run, tmp_path):
    ckpt = multitask_run / "checkpoints" / "best.ckpt"
    saved = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    module = load_model(ckpt)
    for key, value in module.state_dict().items():
        if key.startswith("aux_heads."):
            assert torch.equal(value, saved[key]), key
    metrics = json.loads((multitask_run / "metrics.json").read_text())
    assert metrics["binary"]["iou"] is not None and metrics["coarse"]["groups"], "scored as any run is"
    result = export(compose_config([f"ckpt={ckpt}"], config_name="export"), tmp_path / "model.onnx")
    assert result["argmax_agreement"] >= 0.999 and result["max_abs_logit_difference"] < 1e-3
    import onnxruntime as ort

    session = ort.InferenceSession(str(tmp_path / "model.onnx"))
    assert [o.shape[1] for o in session.get_outputs()] == [16], "one output: the fine logits"
    card = (tmp_path / "model_card.md").read_text()
    assert "a binary head (loss weight 0.3) and a coarse head (loss weight 0.5)" in card
    # the shareable folder keeps the heads: predict's binary_map=true needs the damage/clean head
    export(compose_config([f"ckpt={ckpt}", "format=safetensors"], config_name="export"), tmp_path / "folder")
    shared = load_model(tmp_path / "folder")
    image = torch.randint(0, 255, (1, 3, 64, 64), dtype=torch.uint8)
    with torch.no_grad():
        mine, theirs = shared.task_logits(image), module.task_logits(image)
    assert sorted(mine) == ["binary", "coarse", "fine"] and all(torch.equal(mine[k], theirs[k]) for k in theirs)


def test_a_label_map_without_groups_is_refused_before_any_data_is_read(tmp_path):
    cfg = compose_config([*MULTITASK, f"data.root={tmp_path / 'never_made'}", f"run_dir={tmp_path / 'run'}"])
    del cfg.labels.groups
    with pytest.raises(ValueError, match=r"the coarse head needs `groups:` in the label map.*heads\.coarse\.weight=0"):
        train(cfg)
    assert not (tmp_path / "never_made").exists()
    assert not (tmp_path / "run").exists(), "nor is the run folder claimed"


def test_the_ablation_preset_sweeps_both_heads_over_every_fold_and_aggregate_names_the_row(tmp_path):
    cfg = compose_config(["ablation=multitask"], return_hydra_config=True)
    assert dict(cfg.hydra.sweeper.params) == {"heads": "single,multitask", "fold": "0,1,2"}
    assert cfg.heads.name == "single", "without -m it is the baseline's config"

    for heads, values in {"single": [0.50, 0.60, 0.70], "multitask": [0.52, 0.59, 0.75]}.items():
        for fold, miou in enumerate(values):
            overrides = ["ablation=multitask", f"heads={heads}"]
            fake_run(tmp_path, f"ablation-multitask+heads-{heads}+fold-{fold}", overrides, fold, miou)
    summary = aggregate([tmp_path])
    rows = {g["label"]: g for g in summary["groups"].values()}
    assert set(rows) == {"heads=single", "+Multi-Task"}
    assert summary["groups"][summary["baseline"]]["label"] == "heads=single"
    assert rows["+Multi-Task"]["vs_baseline"]["per_fold"] == pytest.approx([0.02, -0.01, 0.05])
    assert "| +Multi-Task |" in (tmp_path / "cv_results.md").read_text()


def test_predict_maps_the_damage_head_on_request_and_refuses_a_model_without_one(multitask_run, trained_run, tmp_path):
    from PIL import Image

    from heritage_seg.tasks.predict import predict

    scan = tmp_path / "scan.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (90, 150, 3), dtype=np.uint8)).save(scan)
    ckpt = multitask_run / "checkpoints" / "best.ckpt"
    out = tmp_path / "out"
    predict(compose_config([f"ckpt={ckpt}", f"input={scan}", "binary_map=true"], config_name="predict"), out)
    binary = np.asarray(Image.open(out / "scan_binary.png"))
    assert binary.shape == (90, 150) and set(np.unique(binary)) <= {0, 255}
    report = json.loads((out / "scan_report.json").read_text())["binary_head"]
    assert report["head_damage_pixels"] == int((binary == 255).sum())
    fine = np.asarray(Image.open(out / "scan_mask.png"))  # palette indices = class ids
    assert report["fine_damage_percent"] == pytest.approx(100 * (fine != 0).mean(), abs=1e-3)

    single = trained_run / "checkpoints" / "best.ckpt"
    cfg = compose_config([f"ckpt={single}", f"input={scan}", "binary_map=true"], config_name="predict")
    with pytest.raises(ValueError, match=r"binary_map=true maps the damage/clean head.*has none"):
        predict(cfg, tmp_path / "refused")
    assert not (tmp_path / "refused").exists()
