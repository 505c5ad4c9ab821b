"""Encoders beyond the three families: any timm backbone smp can use trains; unusable names fail early."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from heritage_seg.tasks.train import train
from tests.conftest import compose_config, tiny_train_overrides


@pytest.mark.parametrize(
    "encoder_overrides,expected_name",
    [
        (["encoder=efficientnetv2_s"], "tu-tf_efficientnetv2_s.in21k_ft_in1k"),
        (["encoder=timm", "encoder.name=resnet18", "encoder.family=CNN"], "tu-resnet18"),
    ],
)
@pytest.mark.slow
def test_new_encoders_compose_and_train(tmp_path, sample_root, encoder_overrides, expected_name):
    overrides = [o for o in tiny_train_overrides(tmp_path, sample_root) if not o.startswith("encoder=")]
    cfg = compose_config(overrides + encoder_overrides)
    best = train(cfg)
    assert np.isfinite(best)
    saved = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert saved["hyper_parameters"]["run_config"]["encoder"]["name"] == expected_name


@pytest.mark.parametrize(
    "name,message",
    [
        ("not_a_model", "timm has no model 'not_a_model'"),
        ("vit_tiny_patch16_224", "cannot be used as a U-Net encoder"),
    ],
)
def test_unusable_timm_names_fail_before_any_data_is_loaded(tmp_path, name, message):
    overrides = [o for o in tiny_train_overrides(tmp_path, tmp_path / "no_data_here") if not o.startswith("encoder=")]
    with pytest.raises(ValueError, match=message):
        train(compose_config(overrides + ["encoder=timm", f"encoder.name={name}"]))
    assert not (tmp_path / "no_data_here").exists()
