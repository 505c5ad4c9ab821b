"""Self-supervised pre-training (issue 26): it learns, writes what a training starts from, resumes, and refuses
bad input in one line naming the file or option."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from heritage_seg.core.errors import WeightsUnavailable
from heritage_seg.data.labels import LabelMap
from heritage_seg.models.pretrained import read_pretrained
from heritage_seg.tasks.pretrain import pretrain
from heritage_seg.training.build import build_training
from tests.conftest import compose_config
from tests.helpers import SimulatedPreemption

TINY = ["debug=tiny", "encoder=resnet18"]
pytestmark = pytest.mark.slow  # real pre-training runs of a few seconds each (the shared one: ~15 s)


def _config(run_dir, root, *extra):
    return compose_config([*TINY, f"data.root={root}", f"run_dir={run_dir}", *extra], config_name="pretrain")


@pytest.fixture(scope="module")
def scans(tmp_path_factory, sample_root):
    """A folder of scans without annotations, in two subfolders, with one file that is no image."""
    folder = tmp_path_factory.mktemp("scans")
    images = sorted(p for p in (sample_root / "images").iterdir() if "_aug" not in p.stem)
    for index, image in enumerate(images[:32]):
        target = folder / ("room_a" if index % 2 else "room_b") / image.name
        target.parent.mkdir(exist_ok=True)
        shutil.copy(image, target)
    (folder / "room_a" / "broken.jpg").write_bytes(b"not a jpeg")
    return folder


@pytest.fixture(scope="module")
def pretrained_run(tmp_path_factory, scans, trains):
    run_dir = tmp_path_factory.mktemp("pretrain")
    cfg = _config(
        run_dir, scans, "trainer.max_epochs=8", "trainer.limit_train_batches=null", "trainer.limit_val_batches=null"
    )
    pretrain(cfg)
    return run_dir


def test_pretraining_learns_and_writes_weights_record_and_pictures(pretrained_run, scans):
    record = json.loads((pretrained_run / "pretrained.json").read_text())
    assert record["encoder"] == "resnet18" and record["started_from"] is None
    assert record["num_images"] + record["num_val_images"] == 32
    assert record["skipped"] == [{"file": str(scans / "room_a" / "broken.jpg"), "error": record["skipped"][0]["error"]}]
    assert "cannot decode" in record["skipped"][0]["error"]
    assert record["epochs"] == 8 and record["steps"] > 8
    events = EventAccumulator(str(pretrained_run / "tensorboard"))
    events.Reload()
    val = [e.value for e in events.Scalars("val/loss")]
    train = [e.value for e in events.Scalars("train/loss_epoch")]
    # 8 epochs of 6 steps on 24 images of 64 px: it learns a little, not much (held out: the same patches hidden)
    assert len(val) == 8 and min(val[-3:]) < val[0], f"the held-out pretext loss did not fall: {val}"
    assert train[-1] < 0.9 * train[0], f"the training pretext loss did not fall: {train}"
    pictures = sorted(p.name for p in (pretrained_run / "reconstructions").iterdir())
    assert pictures == ["epoch_005.png", "epoch_008.png"]


def test_a_training_starts_from_exactly_the_pretrained_encoder_and_decoder(pretrained_run, sample_root, tmp_path):
    weights = pretrained_run / "pretrained.pt"
    payload = read_pretrained(weights)
    cfg = compose_config(
        ["experiment=sample", *TINY, f"encoder.weights={weights}", f"data.root={sample_root}", f"run_dir={tmp_path}"]
    )
    _, module, _ = build_training(cfg, LabelMap.from_config(cfg.labels))
    for part in ("encoder", "decoder"):
        state = getattr(module.model, part).state_dict()
        assert state.keys() == payload[f"{part}_state"].keys()
        assert all(torch.equal(state[k], payload[f"{part}_state"][k]) for k in state), part


def test_weights_made_for_another_encoder_or_no_weights_at_all_are_refused_naming_the_file(pretrained_run, tmp_path):
    from heritage_seg.models.unet import build_unet

    weights = pretrained_run / "pretrained.pt"
    with pytest.raises(ValueError, match=rf"encoder.weights={weights}: pre-trained for encoder resnet18, but this"):
        build_unet("tu-convnext_tiny", str(weights), 16)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"no weights here")
    with pytest.raises(WeightsUnavailable, match="junk.pt"):
        build_unet("tu-convnext_tiny", str(junk), 16)


def test_an_empty_or_unreadable_folder_is_refused_naming_data_root(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=rf"data.root={empty}: no images to pre-train on \(none found"):
        pretrain(_config(tmp_path / "run1", empty))
    (empty / "a.png").write_bytes(b"broken")
    with pytest.raises(ValueError, match=r"no images to pre-train on \(1 unreadable"):
        pretrain(_config(tmp_path / "run2", empty))
    with pytest.raises(FileNotFoundError, match="data.root=.*nowhere: folder does not exist"):
        pretrain(_config(tmp_path / "run3", tmp_path / "nowhere"))


def test_an_interrupted_pretraining_resumes_where_it_stopped(tmp_path, scans):
    run_dir = tmp_path / "run"
    stop = ["+callbacks.stop._target_=tests.helpers.StopAfterEpoch", "+callbacks.stop.epochs=1"]
    with pytest.raises(SimulatedPreemption):
        pretrain(_config(run_dir, scans, "trainer.max_epochs=2", *stop))
    assert not (run_dir / "pretrained.pt").exists()
    first = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert first["epoch"] == 0
    with pytest.raises(FileExistsError, match="already holds results"):  # without resume: left alone
        pretrain(_config(run_dir, scans, "trainer.max_epochs=2"))
    with pytest.raises(ValueError, match="was trained with data.image_size=64, this command says data.image_size=96"):
        pretrain(_config(run_dir, scans, "trainer.max_epochs=2", "resume=true", "data.image_size=96"))
    pretrain(_config(run_dir, scans, "trainer.max_epochs=2", "resume=true"))
    record = json.loads((run_dir / "pretrained.json").read_text())
    assert record["epochs"] == 2 and record["steps"] == 2 * first["global_step"]


def test_augmented_copies_and_a_fine_tuning_fold_can_be_left_out(tmp_path, sample_root):
    from heritage_seg.data.unlabelled import load_unlabelled

    images, ids, _, left_out = load_unlabelled(sample_root, 64)
    assert left_out == {"augmented_copies": 8, "excluded_ids": 0} and len(ids) == 40
    _, ids_all, _, _ = load_unlabelled(sample_root, 64, exclude_augmented=False)
    assert len(ids_all) == 48
    cfg = _config(tmp_path / "run", sample_root, "pretrain.exclude_fold=0", "trainer.max_epochs=1")
    from heritage_seg.tasks.pretrain import validation_fold_ids

    val_ids = validation_fold_ids(cfg)
    splits = json.loads((tmp_path / "run" / "splits.json").read_text()) if (tmp_path / "run").exists() else None
    assert splits is None  # finding the fold writes nothing
    pretrain(cfg)
    record = json.loads((tmp_path / "run" / "pretrained.json").read_text())
    assert record["left_out"]["excluded_ids"] == len([i for i in val_ids if "_aug" not in i]) > 0
    assert record["num_images"] + record["num_val_images"] == 40 - record["left_out"]["excluded_ids"]


def test_the_description_beside_pretrained_pt_is_refused_naming_the_file_to_pass(tmp_path):
    """encoder.weights=<run>/pretrained.json (the record beside the weights) gave a page of torch's unpickling
    advice; it says which file to pass instead."""
    from heritage_seg.models.unet import build_unet

    (tmp_path / "pretrained.pt").write_bytes(b"weights")
    (tmp_path / "pretrained.json").write_text("{}")
    with pytest.raises(ValueError, match=r"description of pretrained\.pt.*encoder\.weights=.*pretrained\.pt\)") as err:
        build_unet("resnet18", str(tmp_path / "pretrained.json"), 16)
    assert "weights_only" not in str(err.value)
