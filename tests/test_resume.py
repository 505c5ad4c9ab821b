"""An interrupted run continues from its last.ckpt: same epoch count, optimizer/scheduler/early-stopping state."""

from __future__ import annotations

import json

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from heritage_seg.core.errors import TrainingDiverged
from heritage_seg.tasks.train import train
from tests.conftest import compose_config, tiny_train_overrides
from tests.helpers import SimulatedPreemption

pytestmark = pytest.mark.slow  # every test here trains, is killed and resumes: end-to-end runs


def _overrides(run_dir, sample_root, *extra):
    return tiny_train_overrides(run_dir, sample_root) + ["trainer.max_epochs=4", *extra]


def _stop_after(epochs: int) -> list[str]:
    """A test callback that kills training like a preemption once `epochs` epochs are checkpointed."""
    return ["+callbacks.stop._target_=tests.helpers.StopAfterEpoch", f"+callbacks.stop.epochs={epochs}"]


def test_killed_run_resumes_at_the_next_epoch_and_finishes_the_schedule(tmp_path, sample_root):
    run_dir = tmp_path / "run"
    with pytest.raises(SimulatedPreemption):
        train(compose_config(_overrides(run_dir, sample_root, *_stop_after(2))))
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


@pytest.mark.parametrize(
    "change,message",
    [
        ("fold=1", "was trained with fold=0, this command says fold=1"),
        ("trainer.max_epochs=2", "trainer.max_epochs=1, this command says trainer.max_epochs=2"),
    ],
)
def test_resume_with_another_run_identity_is_refused(tmp_path, sample_root, change, message):
    run_dir = tmp_path / "run"
    train(compose_config(_overrides(run_dir, sample_root, "trainer.max_epochs=1")))
    with pytest.raises(ValueError, match=message):
        train(compose_config(_overrides(run_dir, sample_root, "trainer.max_epochs=1", "resume=true", change)))


def test_resume_auto_starts_afresh_when_the_job_never_saved_a_checkpoint_and_continues_otherwise(tmp_path, sample_root):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "splits.json").write_text("{}")  # left by an attempt preempted before its first epoch ended
    stop = _stop_after(1)
    with pytest.raises(SimulatedPreemption):
        train(compose_config(_overrides(run_dir, sample_root, "resume=auto", *stop)))
    first = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert first["epoch"] == 0 and json.loads((run_dir / "splits.json").read_text())["fold"] == 0
    train(compose_config(_overrides(run_dir, sample_root, "resume=auto")))  # what a requeued job runs
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["global_step"] == 8
    with pytest.raises(ValueError, match="resume=maybe: choose false, true or auto"):
        train(compose_config(_overrides(tmp_path / "other", sample_root, "resume=maybe")))


def test_a_finished_run_is_left_as_it_is_by_a_relaunch_with_resume(tmp_path, sample_root):
    """An early-stopped run relaunched with resume=auto (a requeued sweep) or true is not trained again."""
    run_dir = tmp_path / "run"
    stop_early = ["callbacks.early_stopping.patience=1", "callbacks.early_stopping.min_delta=1.0"]
    train(compose_config(_overrides(run_dir, sample_root, *stop_early)))
    finished = json.loads((run_dir / "finished.json").read_text())
    assert finished["reason"] == "early stopping" and finished["epochs"] == 2
    files = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()}
    for resume in ("auto", "true"):
        assert train(
            compose_config(_overrides(run_dir, sample_root, *stop_early, f"resume={resume}"))
        ) == pytest.approx(finished["best_score"])
    assert {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()} == files
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["epoch"] == 1


def test_resume_with_another_number_of_steps_is_refused_before_training(tmp_path, sample_root):
    run_dir = tmp_path / "run"
    with pytest.raises(SimulatedPreemption):
        train(compose_config(_overrides(run_dir, sample_root, *_stop_after(1))))
    before = (run_dir / "checkpoints" / "last.ckpt").read_bytes()
    fewer = _overrides(run_dir, sample_root, "trainer.limit_train_batches=1")
    with pytest.raises(ValueError, match="laid out for 8 steps, but this command trains for 4 .*data.batch_size"):
        train(compose_config(fewer + ["resume=true"]))
    assert (run_dir / "checkpoints" / "last.ckpt").read_bytes() == before


def test_a_diverging_run_stops_naming_the_step_and_keeps_the_checkpoint_from_before(tmp_path, sample_root):
    run_dir = tmp_path / "run"
    poison = ["+callbacks.poison._target_=tests.helpers.PoisonWeightsAtEpoch", "+callbacks.poison.epoch=1"]
    with pytest.raises(TrainingDiverged, match=r"NaN/inf at global step 2 \(epoch 2.*lower optim.lr"):
        train(compose_config(_overrides(run_dir, sample_root, *poison)))
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["epoch"] == 0 and all(
        torch.isfinite(v).all() for v in last["state_dict"].values() if v.is_floating_point()
    )
    assert not (run_dir / "metrics.json").exists() and not (run_dir / "finished.json").exists()


@pytest.mark.slow
def test_a_diverging_run_exits_non_zero_with_one_line(tmp_path, sample_root):
    import subprocess
    import sys

    from tests.conftest import REPO

    overrides = [o for o in _overrides(tmp_path / "run", sample_root) if not o.startswith("run_dir=")]
    proc = subprocess.run(
        [sys.executable, "-m", "heritage_seg.train", *overrides, "optim.lr=1e12", f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "training diverged" in proc.stderr + proc.stdout and "Traceback" not in proc.stderr + proc.stdout
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_a_run_made_before_an_option_existed_can_still_be_resumed_but_a_changed_option_is_refused():
    from omegaconf import OmegaConf

    from heritage_seg.core.configs import first_difference
    from heritage_seg.runs.identity import RUN_IDENTITY

    before = OmegaConf.create({"fold": 0, "data": {"image_size": 384}})  # no data.resize / data.max_side yet
    now = OmegaConf.create({"fold": 0, "data": {"image_size": 384, "resize": "squash", "max_side": 1024}})
    assert first_difference(before, now, RUN_IDENTITY) is None
    crops = OmegaConf.create({"fold": 0, "data": {"image_size": 384, "resize": "longest_side", "max_side": 1024}})
    assert first_difference(now, crops, RUN_IDENTITY) == ("data.resize", "squash", "longest_side")
