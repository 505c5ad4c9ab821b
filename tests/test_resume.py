"""An interrupted run continues from its last.ckpt: same epoch count, optimizer/scheduler/early-stopping state."""

from __future__ import annotations

import json

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from heritage_seg.train import train
from tests.conftest import compose_config, tiny_train_overrides
from tests.helpers import SimulatedPreemption


def _overrides(run_dir, sample_root, *extra):
    base = [o for o in tiny_train_overrides(run_dir, sample_root) if not o.startswith("trainer.max_epochs")]
    return base + ["trainer.max_epochs=4", *extra]


def test_killed_run_resumes_at_the_next_epoch_and_finishes_the_schedule(tmp_path, sample_root):
    run_dir = tmp_path / "run"
    with pytest.raises(SimulatedPreemption):
        train(compose_config(_overrides(run_dir, sample_root, "+callbacks.stop._target_=tests.helpers.StopAfterEpoch",
                                        "+callbacks.stop.epochs=2")))
    before = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert before["epoch"] == 1 and before["global_step"] == 4  # 2 epochs x 2 steps done
    assert not (run_dir / "metrics.json").exists()

    train(compose_config(_overrides(run_dir, sample_root, "resume=true")))
    after = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert after["epoch"] == 3 and after["global_step"] == 8  # continued, not restarted: 4 epochs in total
    scheduler = after["lr_schedulers"][0]
    assert scheduler["last_epoch"] == 8 and scheduler["total_steps"] == 8  # OneCycle over the whole run
    assert "EarlyStopping" in "".join(after["callbacks"])
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    val_steps = [e.step for e in events.Scalars("val/mIoU")]
    assert len(val_steps) == 4 and len(set(val_steps)) == 4, val_steps  # epochs 1-2, then 3-4, none twice
    assert (run_dir / "metrics.json").exists()  # the resumed run finished like any other


def test_resume_without_a_checkpoint_is_refused(tmp_path, sample_root):
    with pytest.raises(FileNotFoundError, match="resume=true: .*last.ckpt does not exist"):
        train(compose_config(_overrides(tmp_path / "empty", sample_root, "resume=true")))


@pytest.mark.parametrize("change,message", [
    ("fold=1", "was trained with fold=0, this command says fold=1"),
    ("trainer.max_epochs=2", "trainer.max_epochs=1, this command says trainer.max_epochs=2"),
])
def test_resume_with_another_run_identity_is_refused(tmp_path, sample_root, change, message):
    run_dir = tmp_path / "run"
    train(compose_config(_overrides(run_dir, sample_root, "trainer.max_epochs=1")))
    with pytest.raises(ValueError, match=message):
        train(compose_config(_overrides(run_dir, sample_root, "trainer.max_epochs=1", "resume=true", change)))


def test_resume_auto_starts_afresh_when_the_job_never_saved_a_checkpoint_and_continues_otherwise(tmp_path, sample_root):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "splits.json").write_text("{}")  # left by an attempt preempted before its first epoch ended
    stop = ["+callbacks.stop._target_=tests.helpers.StopAfterEpoch", "+callbacks.stop.epochs=1"]
    with pytest.raises(SimulatedPreemption):
        train(compose_config(_overrides(run_dir, sample_root, "resume=auto", *stop)))
    first = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert first["epoch"] == 0 and json.loads((run_dir / "splits.json").read_text())["fold"] == 0
    train(compose_config(_overrides(run_dir, sample_root, "resume=auto")))  # what a requeued job runs
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["global_step"] == 8
    with pytest.raises(ValueError, match="resume=maybe: choose false, true or auto"):
        train(compose_config(_overrides(tmp_path / "other", sample_root, "resume=maybe")))

