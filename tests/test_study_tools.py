"""Issue 8 study tools done so far: more encoders, loss ablations, class-weight ablation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from heritage_seg.losses import build_loss, class_weights_from_counts
from heritage_seg.train import train
from tests.conftest import compose_config, tiny_train_overrides


@pytest.mark.parametrize("encoder_overrides,expected_name", [
    (["encoder=efficientnetv2_s"], "tu-tf_efficientnetv2_s.in21k_ft_in1k"),
    (["encoder=timm", "encoder.name=resnet18", "encoder.family=CNN"], "tu-resnet18"),
])
def test_new_encoders_compose_and_train(tmp_path, sample_root, encoder_overrides, expected_name):
    overrides = [o for o in tiny_train_overrides(tmp_path, sample_root) if not o.startswith("encoder=")]
    cfg = compose_config(overrides + encoder_overrides)
    best = train(cfg)
    assert np.isfinite(best)
    saved = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert saved["hyper_parameters"]["run_config"]["encoder"]["name"] == expected_name


@pytest.mark.parametrize("name,message", [
    ("not_a_model", "timm has no model 'not_a_model'"),
    ("vit_tiny_patch16_224", "cannot be used as a U-Net encoder"),
])
def test_unusable_timm_names_fail_before_any_data_is_loaded(tmp_path, name, message):
    overrides = [o for o in tiny_train_overrides(tmp_path, tmp_path / "no_data_here") if not o.startswith("encoder=")]
    with pytest.raises(ValueError, match=message):
        train(compose_config(overrides + ["encoder=timm", f"encoder.name={name}"]))
    assert not (tmp_path / "no_data_here").exists()


@pytest.mark.parametrize("loss", ["dice_focal", "dice", "focal", "ce"])
def test_each_loss_gives_a_finite_loss_and_a_gradient(loss):
    cfg = OmegaConf.to_container(compose_config([f"loss={loss}", "run_dir=/tmp/x"]).loss, resolve=True)
    fn, _ = build_loss(cfg, counts=[100 * (i + 1) for i in range(16)])
    torch.manual_seed(0)
    logits = torch.randn(2, 16, 16, 16, requires_grad=True)
    target = torch.randint(0, 16, (2, 16, 16))
    target[:, 0] = 255
    value = fn(logits, target)
    value.backward()
    assert torch.isfinite(value) and logits.grad.abs().sum() > 0
    active = {k: cfg[k] for k in ("dice_weight", "focal_weight", "ce_weight") if cfg[k]}
    expected = {"dice_focal": {"dice_weight": 0.5, "focal_weight": 0.5}, "dice": {"dice_weight": 1.0},
                "focal": {"focal_weight": 1.0}, "ce": {"ce_weight": 1.0}}[loss]
    assert active == expected


def test_class_weights_none_really_means_equal_weights(tmp_path, sample_root):
    cfg = compose_config(tiny_train_overrides(tmp_path, sample_root) + ["loss.class_weights=none"])
    train(cfg)
    import json

    record = json.loads((tmp_path / "class_weights.json").read_text())
    assert record["strategy"] == "none" and record["weights"] == [1.0] * 16
    assert len(set(class_weights_from_counts(record["train_pixel_counts"], "inverse_sqrt"))) > 1


def test_split_material_trains_on_other_materials_and_the_aggregate_reports_each_held_out_one(tmp_path, sample_root):
    import json

    from heritage_seg.aggregate import aggregate

    for fold in (0, 5):
        run_dir = tmp_path / "sweep" / f"material_fold{fold}"
        cfg = compose_config(tiny_train_overrides(run_dir, sample_root) + ["split=material", f"fold={fold}"])
        train(cfg)
        (run_dir / ".hydra" / "overrides.yaml").write_text(f"- split=material\n- fold={fold}\n")
        splits = json.loads((run_dir / "splits.json").read_text())
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert splits["split"] == "material" and splits["n_folds"] == 6 and metrics["n_folds"] == 6
        assert metrics["held_out"] == splits["held_out"] == sorted(splits["groups"])[fold]
        assert not set(splits["train_sources"]) & set(splits["val_sources"])
    summary = aggregate([tmp_path / "sweep"])
    assert "missing fold(s) [1, 2, 3, 4]" in summary["warnings"][0]
    (group,) = summary["groups"].values()
    assert group["held_out"] == {0: "Canvas", 5: "Wood"}
    assert "| split=material | Canvas |" in (tmp_path / "sweep" / "cv_results.md").read_text().replace("(defaults)",
                                                                                                        "split=material")


@pytest.mark.slow
def test_lr_finder_writes_its_plot_and_suggestion(tmp_path, sample_root):
    import json

    from PIL import Image

    from heritage_seg.lr_find import lr_find

    overrides = [o for o in tiny_train_overrides(tmp_path, sample_root) if not o.startswith("+trainer.limit")]
    suggestion = lr_find(compose_config(overrides + ["lr_find.num_training=20"], config_name="lr_find"))
    record = json.loads((tmp_path / "lr_find.json").read_text())
    assert suggestion is not None and 1e-7 <= suggestion <= 1.0 and record["suggested_lr"] == suggestion
    assert len(record["lr"]) == len(record["loss"]) >= 12 and record["lr"] == sorted(record["lr"])
    with Image.open(tmp_path / "lr_find.png") as img:
        img.verify()
