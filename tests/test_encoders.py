"""Encoders beyond the three families: any timm backbone smp can use trains; unusable names fail early."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from heritage_seg.models.stored import CHECKPOINT_FORMAT
from heritage_seg.models.trained import load_model
from heritage_seg.runs.identity import RUN_IDENTITY
from heritage_seg.tasks.train import train
from heritage_seg.training.trainer import resume_checkpoint
from tests.conftest import compose_config, tiny_train_overrides


@pytest.mark.parametrize(
    "encoder_overrides,written,expected_name",
    [
        (["encoder=efficientnetv2_s"], "tu-tf_efficientnetv2_s.in21k_ft_in1k", "tu-tf_efficientnetv2_s.in21k_ft_in1k"),
        (["encoder=timm", "encoder.name=resnet18", "encoder.family=CNN"], "resnet18", "tu-resnet18"),
    ],
)
@pytest.mark.slow
def test_new_encoders_compose_and_train(tmp_path, sample_root, encoder_overrides, written, expected_name):
    overrides = [o for o in tiny_train_overrides(tmp_path, sample_root) if not o.startswith("encoder=")]
    cfg = compose_config(overrides + encoder_overrides)
    composed = OmegaConf.to_yaml(cfg)
    best = train(cfg)
    assert OmegaConf.to_yaml(cfg) == composed, "train rewrites no value of the composed config"
    assert np.isfinite(best)
    # the configs keep the name as the user wrote it (nothing rewrites them, issue 36); the network, the metrics
    # and a model rebuilt from the checkpoint are timm's, through smp's tu- route
    assert cfg.encoder.name == written
    assert OmegaConf.load(tmp_path / ".hydra" / "config.yaml").encoder.name == written
    saved = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert saved["hyper_parameters"]["run_config"]["encoder"]["name"] == written
    assert json.loads((tmp_path / "metrics.json").read_text())["encoder"] == expected_name
    model = load_model(tmp_path / "checkpoints" / "last.ckpt")
    assert type(model.model.encoder).__name__ == "TimmUniversalEncoder"


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


def test_resume_compares_encoders_by_the_network_they_build(tmp_path):
    # a run interrupted before issue 36 recorded timm's route (tu-resnet18); its resume command says what the user
    # types, encoder=timm encoder.name=resnet18: the same network, so it continues; another model is refused
    cfg = compose_config(["encoder=timm", "encoder.name=resnet18", f"run_dir={tmp_path}"])
    saved = OmegaConf.to_container(cfg, resolve=False)
    saved["encoder"]["name"] = "tu-resnet18"
    (tmp_path / "checkpoints").mkdir()
    torch.save(
        {"state_dict": {}, "heritage_seg": {"format": CHECKPOINT_FORMAT}, "hyper_parameters": {"run_config": saved}},
        tmp_path / "checkpoints" / "last.ckpt",
    )
    assert resume_checkpoint(tmp_path, cfg, RUN_IDENTITY) == tmp_path / "checkpoints" / "last.ckpt"
    other = compose_config(["encoder=timm", "encoder.name=resnet34", f"run_dir={tmp_path}"])
    with pytest.raises(ValueError, match="trained with encoder.name=tu-resnet18, this command says .*tu-resnet34"):
        resume_checkpoint(tmp_path, other, RUN_IDENTITY)
