"""Real training runs, shrunk to seconds (64 px, 2 steps + 1 validation batch), and their run folders."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import time

import numpy as np
import pytest
import timm
import torch

from heritage_seg.core.errors import WeightsUnavailable
from heritage_seg.models.unet import build_unet
from heritage_seg.tasks.train import train
from tests.conftest import REPO, compose_config, tiny_train_overrides


@pytest.fixture(scope="module")
def runs(tmp_path_factory, sample_root, trains):
    """One tiny run per encoder, shared by the tests below."""
    out = {}
    for encoder in ("convnext", "mit_b3", "maxvit"):
        run_dir = tmp_path_factory.mktemp(f"run_{encoder}")
        cfg = compose_config(tiny_train_overrides(run_dir, sample_root, encoder))
        out[encoder] = (run_dir, train(cfg))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("encoder", ["convnext", "mit_b3", "maxvit"])
def test_each_encoder_trains_and_writes_its_run_folder(runs, encoder):
    run_dir, best = runs[encoder]
    assert np.isfinite(best) and 0.0 <= best <= 1.0
    assert (run_dir / "checkpoints" / "best.ckpt").is_file() and (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    ckpt = torch.load(run_dir / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["hyper_parameters"]["run_config"]["encoder"]["name"].endswith(
        encoder.replace("convnext", "convnext_tiny").replace("maxvit", "maxvit_tiny_tf_384")
    )
    weights = json.loads((run_dir / "class_weights.json").read_text())
    assert len(weights["weights"]) == 16 and len(set(np.round(weights["weights"], 6))) > 5


@pytest.mark.slow
def test_best_ckpt_holds_the_weights_and_last_ckpt_everything_resume_needs(runs):
    """best.ckpt (evaluate/predict/export) without AdamW's moments: a third of the size, written each improving
    epoch; last.ckpt keeps the optimiser, scheduler and callback states that resume continues from."""
    run_dir, _ = runs["convnext"]
    best, last = (
        torch.load(run_dir / "checkpoints" / f"{n}.ckpt", map_location="cpu", weights_only=False)
        for n in ("best", "last")
    )
    assert "optimizer_states" not in best and "lr_schedulers" not in best
    assert best["state_dict"].keys() == last["state_dict"].keys() and best["hyper_parameters"]["run_config"]
    assert last["optimizer_states"] and last["lr_schedulers"] and last["callbacks"]
    assert (run_dir / "checkpoints" / "best.ckpt").stat().st_size < 0.5 * (
        run_dir / "checkpoints" / "last.ckpt"
    ).stat().st_size
    assert not list((run_dir / "checkpoints").glob(".*")), "a temporary checkpoint file was left behind"


def test_checkpoints_are_saved_straight_to_a_temporary_file_and_renamed(tmp_path, monkeypatch):
    from heritage_seg.runs.checkpoints import LocalAtomicCheckpointIO
    from heritage_seg.training.trainer import trainer_plugins

    io = LocalAtomicCheckpointIO()
    path = tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.arange(6.0)}, "epoch": 3}, path)
    assert torch.load(path, weights_only=False)["epoch"] == 3 and oct(path.stat().st_mode & 0o777) != "0o600"
    with pytest.raises(
        (pickle.PicklingError, AttributeError, TypeError)
    ):  # a checkpoint that cannot be pickled: the save fails half-way...
        io.save_checkpoint({"state_dict": {"w": torch.zeros(2)}, "epoch": 4, "bad": lambda: None}, path)
    assert torch.load(path, weights_only=False)["epoch"] == 3  # ...and the previous checkpoint is whole
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]  # no temporary file left

    def lightnings_way(*args):  # a whole in-memory copy first, then fsspec: not used for local files
        raise AssertionError("Lightning's _atomic_save was used")

    monkeypatch.setattr("lightning.fabric.plugins.io.torch_io._atomic_save", lightnings_way)
    io.save_checkpoint({"epoch": 5}, path)
    assert torch.load(path, weights_only=False)["epoch"] == 5
    cfg = compose_config(["data=sample", "run_dir=/tmp/x"])
    plugin = trainer_plugins(cfg)[0]  # in the background (AsyncCheckpointIO), by this IO
    assert isinstance(plugin.checkpoint_io, LocalAtomicCheckpointIO)


@pytest.mark.slow
def test_splits_are_written_and_identical_for_every_encoder(runs):
    splits = {e: json.loads((d / "splits.json").read_text()) for e, (d, _) in runs.items()}
    first = splits["convnext"]
    assert (first["fold"], first["n_folds"], first["seed"]) == (0, 3, 42)
    assert not set(first["train_sources"]) & set(first["val_sources"])
    assert len(first["train_ids"]) + len(first["val_ids"]) == 48
    for other in splits.values():
        assert (other["train_ids"], other["val_ids"]) == (first["train_ids"], first["val_ids"])


@pytest.mark.slow
def test_a_finished_run_folder_is_never_overwritten(runs, sample_root):
    run_dir, _ = runs["convnext"]
    before = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()}
    with pytest.raises(FileExistsError, match="already holds results"):
        train(compose_config(tiny_train_overrides(run_dir, sample_root)))
    assert {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize(
    "override,error,message",
    [
        ("fold=3", ValueError, r"fold=3: must be an integer in \[0, n_folds\)"),
        ("encoder.name=tu-not_a_model", ValueError, "timm has no model 'not_a_model'"),
        ("n_folds=50", ValueError, "only 40 source image"),
        ("data.root=/nonexistent/artefact", FileNotFoundError, "data.root=/nonexistent/artefact"),
        ("data.image_size=100", ValueError, "data.image_size=100: must be a multiple of 32"),
    ],
)
def test_bad_options_fail_with_a_message_naming_them(tmp_path, sample_root, override, error, message):
    overrides = tiny_train_overrides(tmp_path / "run", sample_root) + [override]
    if override.startswith("data.root"):
        overrides += ["data=artefact"]
    with pytest.raises(error, match=message):
        train(compose_config(overrides))
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize("encoder", ["tu-convnext_tiny", "mit_b3"])
def test_offline_imagenet_weights_fail_fast_naming_the_three_options(encoder):
    start = time.monotonic()
    with pytest.raises(WeightsUnavailable) as info:
        build_unet(encoder, "imagenet", 16)
    assert time.monotonic() - start < 15
    for option in ("encoder.weights=imagenet", "encoder.weights=/path/to/file", "encoder.weights=null"):
        assert option in str(info.value)


@pytest.mark.slow
@pytest.mark.parametrize("encoder", ["tu-convnext_tiny", "mit_b3"])
def test_local_weights_file_is_loaded(tmp_path, encoder):
    """A weights file as users have it: a plain timm model's state dict, or smp's MiT encoder state dict."""
    if encoder.startswith("tu-"):
        state = timm.create_model(encoder[3:]).state_dict()
    else:
        state = build_unet(encoder, None, 16).encoder.state_dict()
    torch.save(state, tmp_path / "weights.pth")
    model = build_unet(encoder, str(tmp_path / "weights.pth"), 16)
    if encoder.startswith("tu-"):  # timm's feature extractor names `stages.0` as `stages_0`
        loaded = {k.replace("_", ".", 1): v for k, v in model.encoder.model.state_dict().items()}
    else:
        loaded = model.encoder.state_dict()
    keys = [k for k in state if k in loaded and state[k].dtype.is_floating_point and state[k].numel() > 100]
    assert len(keys) > 10
    for key in keys:
        torch.testing.assert_close(loaded[key], state[key])
    with pytest.raises(WeightsUnavailable, match="does not exist"):
        build_unet(encoder, str(tmp_path / "missing.pth"), 16)


@pytest.mark.slow
def test_cli_reports_a_user_error_in_one_line_with_exit_code_2(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "heritage_seg.train", "data=sample", "fold=5", f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "fold=5: must be an integer in [0, n_folds) = [0, 3)" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


@pytest.mark.slow
def test_csv_logger_alone_or_beside_tensorboard(tmp_path, sample_root):
    import csv

    for choice, expected in (("logger=csv", {"csv"}), ("logger=[tensorboard,csv]", {"csv", "tensorboard"})):
        run_dir = tmp_path / choice.replace("[", "").replace("]", "").replace(",", "_").replace("=", "_")
        cfg = compose_config(tiny_train_overrides(run_dir, sample_root) + [choice])
        assert set(cfg.logger) == expected
        train(cfg)
        with open(run_dir / "csv" / "metrics.csv") as handle:
            rows = list(csv.DictReader(handle))
        assert any(row.get("val/mIoU_gt") for row in rows) and any(row.get("train/loss_epoch") for row in rows)
        assert (run_dir / "tensorboard").is_dir() == ("tensorboard" in expected)


@pytest.mark.slow
def test_mlflow_logger_records_the_run_in_a_local_store(tmp_path, sample_root, monkeypatch):
    mlflow = pytest.importorskip("mlflow", reason="the mlflow extra (pip install -e '.[mlflow]'; CI installs it)")
    monkeypatch.chdir(tmp_path)  # the default store is ./mlruns, where the command runs
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    run_dir = tmp_path / "run"
    train(compose_config(tiny_train_overrides(run_dir, sample_root) + ["logger=[csv,mlflow]"]))
    client = mlflow.tracking.MlflowClient(tracking_uri=f"file:{tmp_path / 'mlruns'}")
    (experiment,) = [e for e in client.search_experiments() if e.name == "heritage_seg"]
    (run,) = client.search_runs([experiment.experiment_id])
    assert "val/mIoU_gt" in run.data.metrics and run.data.tags["run_dir"] == str(run_dir)
    assert run.data.params["run_config/encoder/name"] == "tu-convnext_tiny"
    assert (run_dir / "csv" / "metrics.csv").is_file()  # beside the other logger


def test_a_tracker_that_is_not_installed_is_named_with_its_extra(tmp_path, sample_root, monkeypatch):
    from heritage_seg.core.errors import MissingExtra

    monkeypatch.setitem(sys.modules, "wandb", None)  # as on a machine without the wandb extra
    with pytest.raises(MissingExtra, match=r"logger=wandb needs the wandb extra .*pip install -e '\.\[wandb\]'"):
        train(compose_config(tiny_train_overrides(tmp_path / "run", sample_root) + ["logger=wandb"]))
