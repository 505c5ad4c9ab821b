"""A best.ckpt is a model: Lightning's own `SegmentationModule.load_from_checkpoint` rebuilds it from the checkpoint
alone (no other file), and checkpoints written by earlier versions still load."""

from __future__ import annotations

import pytest
import torch

from heritage_seg.core.protocol import Protocol
from heritage_seg.models.trained import load_model
from heritage_seg.models.unet import build_unet
from heritage_seg.runs.rebuild import rebuild_validation_data
from heritage_seg.training.module import SegmentationModule


def _validation_images(module, ckpt):
    datamodule = rebuild_validation_data(module.run_config, module.labels, ckpt)
    return next(iter(datamodule.val_dataloader()))["image"][:2]


def test_lightnings_load_from_checkpoint_gives_the_trained_model_that_evaluate_uses(trained_run):
    ckpt = trained_run / "checkpoints" / "best.ckpt"
    module = SegmentationModule.load_from_checkpoint(ckpt, map_location="cpu", weights_only=False).eval()
    images = _validation_images(module, ckpt)
    # built by hand from the file's raw weights: the network its config names, normalised with its statistics
    raw = torch.load(ckpt, map_location="cpu", weights_only=False)
    run_config = raw["hyper_parameters"]["run_config"]
    network = build_unet(run_config["encoder"]["name"], None, 16, run_config["encoder"]["kwargs"]).eval()
    network.load_state_dict({k[len("model.") :]: v for k, v in raw["state_dict"].items() if k.startswith("model.")})
    with torch.no_grad():
        by_hand = network((images.float() - raw["state_dict"]["pixel_mean"]) / raw["state_dict"]["pixel_std"])
        evaluates = load_model(ckpt)(images)  # what evaluate, predict, export and ensembles load
        torch.testing.assert_close(module(images), by_hand)
    torch.testing.assert_close(evaluates, by_hand)
    assert module.protocol == Protocol("squash", 64) and module.hparams["protocol"] == module.protocol.to_dict()
    assert module.hparams["class_weights"]["weights"] == pytest.approx(module.loss.class_weights.tolist())


def test_a_checkpoint_written_before_the_module_built_its_own_network_still_loads(trained_run, tmp_path):
    """The hyper-parameters and keys format-1 checkpoints were written with until the package was restructured:
    the network's normalisation as numbers, the loss's target at its old path, a flat augment node, the
    cross-entropy class weights among the weights, and no class-weight record."""
    ckpt = trained_run / "checkpoints" / "best.ckpt"
    raw = torch.load(ckpt, map_location="cpu", weights_only=False)
    run_config = raw["hyper_parameters"]["run_config"]
    run_config["loss"]["_target_"] = "heritage_seg.losses.DiceFocalLoss"
    run_config["augment"] = {
        "_target_": "heritage_seg.augment.BatchFlipRotate",
        "hflip": 0.5,
        "vflip": 0.5,
        "rot90": 0.5,
        "seed": 42,
    }
    raw["hyper_parameters"] = {
        "class_names": ["x"] * 16,
        "ignore_index": 255,
        "mean": [0.5] * 3,
        "std": [0.5] * 3,
        "run_config": run_config,
        "channels_last": False,
    }  # and no protocol
    raw["state_dict"]["loss.ce.weight"] = torch.ones(16)
    old = tmp_path / "old.ckpt"
    torch.save(raw, old)

    module = load_model(old)
    images = torch.randint(0, 255, (1, 3, 64, 64), dtype=torch.uint8)
    with torch.no_grad():
        torch.testing.assert_close(module(images), load_model(ckpt)(images))
    assert module.protocol == Protocol("squash", 64)
    assert not hasattr(module, "loss") and not hasattr(module, "batch_augment"), "inference builds no training parts"


def test_weights_that_do_not_fit_the_network_named_are_refused_naming_the_file(trained_run, tmp_path):
    raw = torch.load(trained_run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False)
    classes = raw["hyper_parameters"]["run_config"]["labels"]["classes"]
    raw["hyper_parameters"]["run_config"]["labels"]["classes"] = classes[:3]  # a 3-class map, 16-class weights
    raw["hyper_parameters"]["run_config"]["labels"].pop("groups", None)  # (its groups would name missing classes)
    torch.save(raw, tmp_path / "other_map.ckpt")
    with pytest.raises(ValueError, match=r"other_map.ckpt: its weights do not fit the tu-convnext_tiny U-Net"):
        load_model(tmp_path / "other_map.ckpt")


def test_a_checkpoint_whose_label_map_cannot_be_read_is_refused_naming_the_file(trained_run, tmp_path):
    """Found by the suite: a 3-class map whose `groups:` still named the 16-class map's classes failed inside the
    module with no file named."""
    raw = torch.load(trained_run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False)
    raw["hyper_parameters"]["run_config"]["labels"]["classes"] = raw["hyper_parameters"]["run_config"]["labels"][
        "classes"
    ][:3]
    torch.save(raw, tmp_path / "broken_map.ckpt")
    with pytest.raises(ValueError, match=r"broken_map.ckpt: its label map: group 'Loss of material' names 'Scratch'"):
        load_model(tmp_path / "broken_map.ckpt")
