"""The end-of-fit report evaluates on the device the model was trained on, with the training precision."""

from __future__ import annotations

import json

import pytest
from lightning.pytorch.strategies import SingleDeviceStrategy

import heritage_seg.training.callbacks as callbacks
from heritage_seg.tasks.train import train
from tests.conftest import compose_config, tiny_train_overrides


@pytest.mark.slow
def test_the_report_runs_before_lightning_moves_the_model_off_the_training_device(tmp_path, sample_root, monkeypatch):
    """Lightning's strategy teardown moves the module to the CPU before `on_fit_end`; a report there would run
    on the CPU after every GPU run. Checked on the CPU by the order of events and the recorded device."""
    events = []
    evaluate, teardown = callbacks.run_evaluation, SingleDeviceStrategy.teardown

    def spy_evaluate(logits, batches, num_classes, ignore_index, transforms, device, **kwargs):
        events.append(("evaluate", str(device)))
        return evaluate(logits, batches, num_classes, ignore_index, transforms, device, **kwargs)

    def spy_teardown(strategy):
        events.append(("teardown", str(strategy.root_device)))
        return teardown(strategy)

    monkeypatch.setattr(callbacks, "run_evaluation", spy_evaluate)
    monkeypatch.setattr(SingleDeviceStrategy, "teardown", spy_teardown)
    train(compose_config(tiny_train_overrides(tmp_path, sample_root) + ["callbacks.final_validation_report.tta=true"]))
    assert [e[0] for e in events] == ["evaluate", "evaluate", "teardown"]
    assert {e[1] for e in events} == {"cpu"}  # the trainer's root device
    for name in ("metrics.json", "metrics_tta.json"):
        metrics = json.loads((tmp_path / name).read_text())
        assert (metrics["device"], metrics["precision"]) == ("cpu", "32-true")
        assert metrics["seconds"] > 0


@pytest.mark.slow
def test_checkpoints_are_written_in_the_background_and_the_report_waits_for_best_ckpt(
    tmp_path, sample_root, monkeypatch
):
    """Epochs do not wait for their checkpoint files (AsyncCheckpointIO); the report must not read best.ckpt
    before its last write has landed (here every write is slowed down: without the wait the report reads a
    best.ckpt that does not exist yet)."""
    import time

    import torch
    from lightning.pytorch.plugins.io import AsyncCheckpointIO

    from heritage_seg.runs.checkpoints import LocalAtomicCheckpointIO
    from heritage_seg.training.trainer import trainer_plugins

    plugin = trainer_plugins(compose_config(tiny_train_overrides(tmp_path, sample_root)))[0]
    assert isinstance(plugin, AsyncCheckpointIO) and isinstance(plugin.checkpoint_io, LocalAtomicCheckpointIO)
    save = LocalAtomicCheckpointIO.save_checkpoint

    def slow_save(self, checkpoint, path, storage_options=None):
        time.sleep(1.5)
        save(self, checkpoint, path, storage_options)

    monkeypatch.setattr(LocalAtomicCheckpointIO, "save_checkpoint", slow_save)
    train(compose_config(tiny_train_overrides(tmp_path, sample_root) + ["callbacks.final_validation_report.tta=true"]))
    best = torch.load(tmp_path / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False)
    assert best["epoch"] == 0 and (tmp_path / "metrics_tta.json").is_file()
    assert json.loads((tmp_path / "metrics.json").read_text())["checkpoint"].endswith("best.ckpt")
