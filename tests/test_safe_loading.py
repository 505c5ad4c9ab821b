"""A model file from another institution is data, never code (issue 37): every command and option that reads a
checkpoint refuses one holding pickled objects, and the object's code never runs (a marker file is not created)."""

from __future__ import annotations

import os
import shutil

import pytest
import torch

from heritage_seg.models.stored import CHECKPOINT_FORMAT
from tests.conftest import compose_config, tiny_train_overrides
from tests.helpers import scan_folder


class _Payload:
    """What a hostile checkpoint carries: unpickling it calls os.system."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture
def hostile(tmp_path):
    """A checkpoint shaped like the project's (so a loader that unpickles gets as far as running it)."""
    marker = tmp_path / "PWNED"
    path = tmp_path / "shared_model.ckpt"
    torch.save(
        {"state_dict": {}, "hyper_parameters": {"run_config": _Payload(marker)}, "heritage_seg": {"format": 1}}, path
    )
    assert CHECKPOINT_FORMAT == 1
    return path, marker


def _refused(call, path, marker, option="ckpt"):
    with pytest.raises(ValueError, match=rf"{option}=.*{path.name}: refused: it holds pickled Python objects"):
        call()
    assert not marker.exists(), "the checkpoint's code ran"


def test_inference_commands_and_ensembles_refuse_a_pickled_checkpoint_without_running_it(
    hostile, trained_run, sample_root, tmp_path
):
    from heritage_seg.tasks.evaluate import evaluate
    from heritage_seg.tasks.preannotate import preannotate
    from heritage_seg.tasks.predict import predict
    from heritage_seg.tasks.select import select

    path, marker = hostile
    good = trained_run / "checkpoints" / "best.ckpt"
    scans = scan_folder(sample_root, tmp_path / "scans")
    for name, ckpt in (("single", f"ckpt={path}"), ("ensemble", f"ckpt=[{good},{path}]")):
        out = tmp_path / name
        _refused(lambda c=ckpt, o=out: evaluate(compose_config([c], "evaluate"), o / "evaluate"), path, marker)
        _refused(
            lambda c=ckpt, o=out: predict(compose_config([c, f"input={scans}"], "predict"), o / "predict"), path, marker
        )
        _refused(
            lambda c=ckpt, o=out: select(compose_config([c, f"input={scans}", "tta=true"], "select"), o / "select"),
            path,
            marker,
        )
        _refused(
            lambda c=ckpt, o=out: preannotate(compose_config([c, f"input={scans}"], "preannotate"), o / "pre"),
            path,
            marker,
        )
        assert not any((out / sub).exists() for sub in ("evaluate", "predict", "select", "pre")), "a folder was made"


def test_export_refuses_a_pickled_checkpoint_without_running_it(hostile, tmp_path):
    pytest.importorskip("onnx")
    from heritage_seg.tasks.export import export

    path, marker = hostile
    _refused(lambda: export(compose_config([f"ckpt={path}"], "export"), tmp_path / "model.onnx"), path, marker)
    folder = compose_config([f"ckpt={path}", "format=safetensors"], "export")
    _refused(lambda: export(folder, tmp_path / "model"), path, marker)
    assert not (tmp_path / "model").exists()


def test_train_refuses_a_pickled_init_from_or_resume_checkpoint_and_claims_no_folder(hostile, sample_root, tmp_path):
    from heritage_seg.tasks.train import train

    path, marker = hostile
    run_dir = tmp_path / "run"
    cfg = compose_config(tiny_train_overrides(run_dir, sample_root) + [f"init_from={path}"])
    _refused(lambda: train(cfg), path, marker, option="init_from")
    assert not run_dir.exists(), "a refused init_from left a claimed run folder"
    from heritage_seg.tasks.lr_find import lr_find

    lr_dir = tmp_path / "lr"
    cfg = compose_config([*tiny_train_overrides(lr_dir, sample_root), f"init_from={path}"], "lr_find")
    _refused(lambda: lr_find(cfg), path, marker, option="init_from")
    assert not lr_dir.exists(), "a refused init_from left lr_find's folder claimed"

    resumed = tmp_path / "resumed"
    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copy(path, resumed / "checkpoints" / "last.ckpt")
    cfg = compose_config(tiny_train_overrides(resumed, sample_root) + ["resume=true"])
    _refused(lambda: train(cfg), resumed / "checkpoints" / "last.ckpt", marker, option="resume")


def test_lightnings_own_resume_reads_weights_only(hostile):
    """Lightning's `ckpt_path` resume goes through the project's checkpoint IO, which never unpickles objects."""
    from heritage_seg.runs.checkpoints import LocalAtomicCheckpointIO

    path, marker = hostile
    with pytest.raises(Exception, match="Weights only load failed|weights_only"):
        LocalAtomicCheckpointIO().load_checkpoint(path, weights_only=False)
    assert not marker.exists()
