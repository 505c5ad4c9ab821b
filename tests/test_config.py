"""Every encoder composes with the seed's base values; groups build what they name; presets for the sample data."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from tests.conftest import compose_config


@pytest.mark.parametrize(
    "encoder,name,family",
    [
        ("convnext", "tu-convnext_tiny", "CNN"),
        ("mit_b3", "mit_b3", "ViT"),
        ("maxvit", "tu-maxvit_tiny_tf_384", "Hybrid"),
    ],
)
def test_each_encoder_composes_with_the_seed_base_config(encoder, name, family):
    cfg = compose_config([f"encoder={encoder}", "fold=1", "run_dir=/tmp/x"])
    assert (cfg.encoder.name, cfg.encoder.family, cfg.encoder.weights) == (name, family, "imagenet")
    assert (cfg.fold, cfg.n_folds, cfg.seed) == (1, 3, 42)
    assert cfg.data.image_size == 384 and cfg.data.use_preload is True
    assert cfg.trainer.max_epochs == 50 and cfg.trainer.gradient_clip_val == 1.0 and cfg.trainer.precision == "auto"
    opt, sched = cfg.optim.optimizer, cfg.optim.scheduler
    assert (opt._target_, opt.lr, opt.weight_decay, list(opt.betas)) == ("torch.optim.AdamW", 1e-3, 0.01, [0.9, 0.999])
    assert (sched.max_lr, sched.pct_start, sched.anneal_strategy) == (1e-3, 0.3, "cos")
    loss = cfg.loss
    assert (loss.dice_weight, loss.focal_weight, loss.gamma, loss.smooth) == (0.5, 0.5, 2.0, 1.0)
    assert loss.class_weighting == "inverse_sqrt" and loss.ignore_index == 255
    es, ckpt = cfg.callbacks.early_stopping, cfg.callbacks.model_checkpoint
    # one selection rule for both: mIoU over the classes in the validation truth (not the strict mean)
    assert (es.monitor, es.mode, es.patience, es.min_delta) == ("val/mIoU_gt", "max", 10, 0.001)
    assert (ckpt.monitor, ckpt.filename, ckpt.dirpath) == ("val/mIoU_gt", "best", "/tmp/x/checkpoints")
    last = cfg.callbacks.last_checkpoint
    assert (last.filename, last.monitor, last.every_n_epochs, last.dirpath) == ("last", None, 1, "/tmp/x/checkpoints")
    assert "tensorboard" in cfg.logger
    OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves


def test_maxvit_is_built_for_the_training_size():
    cfg = compose_config(["encoder=maxvit", "data.image_size=256", "run_dir=/tmp/x"])
    assert cfg.encoder.kwargs.img_size == 256


def test_data_sample_changes_only_the_data_and_the_sample_preset_adds_what_learns_offline():
    """data=sample is a data group like any other; the random-init encoder and the short schedule that go with it
    are a preset the user names (experiment=sample), not a side effect of choosing the data."""
    plain, default = compose_config(["data=sample", "run_dir=/tmp/x"]), compose_config(["run_dir=/tmp/x"])
    assert plain.data.sample.num_images == 48 and plain.data.root == "data/sample"
    assert {k: plain[k] for k in plain if k != "data"} == {k: default[k] for k in default if k != "data"}
    assert compose_config(["experiment=sample"]).encoder.name == "resnet18"  # the quick start's light encoder
    cfg = compose_config(["experiment=sample", "encoder=mit_b3", "run_dir=/tmp/x"])
    assert cfg.encoder.name == "mit_b3" and cfg.encoder.weights is None and cfg.data.sample.num_images == 48
    assert cfg.data._target_.endswith("ArtefactDataModule") and cfg.augment.batch._target_.endswith("BatchFlipRotate")
    cfg = compose_config(["experiment=sample", "encoder.weights=imagenet", "trainer.max_epochs=3", "run_dir=/tmp/x"])
    assert cfg.encoder.weights == "imagenet" and cfg.trainer.max_epochs == 3


def test_debug_tiny_shrinks_any_run_to_seconds_and_downloads_nothing():
    cfg = compose_config(["experiment=quickstart", "debug=tiny", "encoder=convnext", "run_dir=/tmp/x"])
    assert (cfg.data.image_size, cfg.trainer.max_epochs, cfg.trainer.limit_train_batches) == (64, 1, 2)
    assert cfg.encoder.weights is None and cfg.callbacks.progress_bar is None
    assert cfg.data.resize == "longest_side"  # the rest of the experiment is kept


def test_the_loss_and_augment_groups_build_what_they_name_on_their_own():
    from hydra.utils import instantiate

    from heritage_seg.data.augment import BatchFlipRotate
    from heritage_seg.training.losses import DiceFocalLoss

    for loss in ("dice_focal", "dice", "focal", "ce"):
        assert isinstance(instantiate(compose_config([f"loss={loss}", "run_dir=/tmp/x"]).loss), DiceFocalLoss)
    tensor, albumentations = (
        compose_config([f"augment={a}", "run_dir=/tmp/x"]).augment for a in ("tensor", "albumentations")
    )
    assert isinstance(instantiate(tensor.batch), BatchFlipRotate) and tensor.sample is None
    assert albumentations.batch is None and type(instantiate(albumentations.sample)).__name__ == "Compose"
    assert compose_config(["augment=none", "run_dir=/tmp/x"]).augment == {"batch": None, "sample": None}
    from heritage_seg.models.unet import Encoder

    timm = instantiate(compose_config(["encoder=timm", "encoder.name=resnet50", "run_dir=/tmp/x"]).encoder)
    assert isinstance(timm, Encoder) and timm.name == "tu-resnet50" and timm.weights == "imagenet"
    assert instantiate(compose_config(["encoder=mit_b3", "run_dir=/tmp/x"]).encoder).family == "ViT"


def test_label_map_is_the_shared_one(labels):
    assert labels.num_classes == 16 and labels.ignore_index == 255
    assert labels.names[0] == "Clean" and labels.names[15] == "Lightleak"
    assert labels.colors[9] == (0x00, 0x00, 0xA6)  # Cracks #0000A6


def test_the_config_writes_the_run_folder_names_that_later_tools_read():
    """conf/callbacks/default.yaml spells checkpoints/{best,last}.ckpt for Lightning; resume, evaluate and
    aggregate read them through heritage_seg/runs/folder.py: the two must not drift apart."""
    from heritage_seg.runs import folder as rundir

    cfg = compose_config(["run_dir=/tmp/x"])
    for key, name in (("model_checkpoint", rundir.BEST), ("last_checkpoint", rundir.LAST)):
        callback = cfg.callbacks[key]
        assert f"{callback.dirpath}/{callback.filename}.ckpt" == f"/tmp/x/{name}"
    assert cfg.callbacks.final_validation_report.output_dir == "/tmp/x"


def test_bookkeeping_overrides_are_one_list_for_sweep_folders_and_aggregate():
    from heritage_seg.study.overrides import bookkeeping_keys, is_bookkeeping

    cfg = compose_config(["run_dir=/tmp/x"], return_hydra_config=True)
    excluded = set(cfg.hydra.job.config.override_dirname.exclude_keys)
    assert excluded <= bookkeeping_keys() and {"data.root", "resume"} <= excluded
    assert is_bookkeeping("data.root=/data/artefact") and is_bookkeeping("fold=2")
    assert not is_bookkeeping("encoder=mit_b3") and not is_bookkeeping("loss.class_weighting=none")


def test_the_poc_5_9_preset_pins_the_seeds_experiment_and_the_command_line_still_picks_encoder_and_fold():
    cfg = compose_config(["experiment=poc_5_9", "encoder=maxvit", "fold=2"])
    assert (cfg.data.batch_size, cfg.data.image_size, cfg.data.resize) == (96, 384, "squash")
    assert (cfg.trainer.max_epochs, cfg.n_folds, cfg.split, cfg.seed) == (50, 3, "source", 42)
    assert (cfg.loss.dice_weight, cfg.loss.focal_weight, cfg.loss.gamma, cfg.loss.dice_classes) == (
        0.5,
        0.5,
        2.0,
        "all",
    )
    assert cfg.optim.scheduler._target_.endswith("OneCycleLR") and cfg.optim.scheduler.max_lr == 1e-3
    assert cfg.monitor == cfg.callbacks.early_stopping.monitor == cfg.callbacks.model_checkpoint.monitor == "val/mIoU"
    assert cfg.callbacks.final_validation_report.tta is True
    assert (cfg.encoder.name, cfg.fold) == ("tu-maxvit_tiny_tf_384", 2)
    assert compose_config([]).data.batch_size != 96  # the preset, not the defaults, holds the seed's batch


def test_the_gpu_smoke_preset_runs_on_generated_data_and_insists_on_a_gpu():
    cfg = compose_config(["experiment=gpu_smoke"])
    assert cfg.data.sample is not None and cfg.encoder.weights is None  # no download
    assert (cfg.trainer.accelerator, cfg.data.preload_to) == ("gpu", "cuda")
    assert cfg.trainer.max_epochs <= 3


def test_the_quickstart_preset_is_the_sample_data_trained_on_crops():
    cfg = compose_config(["experiment=quickstart"])
    assert cfg.data.sample is not None and cfg.encoder.name == compose_config(["experiment=sample"]).encoder.name
    assert cfg.encoder.weights is None  # offline: random initialisation
    assert (cfg.data.resize, cfg.data.max_side, cfg.data.image_size) == ("longest_side", 256, 128)
    assert cfg.loss.class_weighting == "none" and cfg.trainer.check_val_every_n_epoch == 8
    # the command line still wins over the preset
    assert compose_config(["experiment=quickstart", "trainer.max_epochs=3"]).trainer.max_epochs == 3
