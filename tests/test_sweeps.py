"""Sweeps: a real submitit_local multirun, a failing job among good ones, the SLURM config, DDP on CPU."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import datetime

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from heritage_seg.tasks.aggregate import aggregate
from tests.conftest import CONF, REPO

TINY = ["experiment=sample", "debug=tiny"]


def _run(args, tmp_path, timeout=600):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "heritage_seg.train", *args, f"data.root={tmp_path / 'sample'}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _log_span(train_log):
    stamps = re.findall(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+)\]", train_log.read_text(), flags=re.M)
    parse = [datetime.strptime(s, "%Y-%m-%d %H:%M:%S,%f") for s in stamps]
    return parse[0], parse[-1]


@pytest.mark.slow
def test_local_sweep_2x2_runs_one_after_another_and_aggregates(tmp_path):
    sweep = tmp_path / "sweep"
    sweep_args = "-m hydra/launcher=submitit_local encoder=convnext,mit_b3 fold=0,1 n_folds=2".split()
    proc = _run([*sweep_args, *TINY, f"hydra.sweep.dir={sweep}"], tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "all 4 job(s) finished" in proc.stdout + proc.stderr
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert len(jobs) == 4
    for job in jobs:
        assert re.search(r"encoder=(convnext|mit_b3),experiment=sample,fold=[01]", job.name), job.name
        for name in (
            "checkpoints/best.ckpt",
            "checkpoints/last.ckpt",
            "splits.json",
            "metrics.json",
            "metrics_tta.json",
            ".hydra/overrides.yaml",
        ):
            assert (job / name).is_file(), f"{job.name}/{name}"
        splits = json.loads((job / "splits.json").read_text())
        assert splits["fold"] == int(job.name.split("fold=")[1][0]) and splits["n_folds"] == 2
    spans = sorted(_log_span(job / "train.log") for job in jobs)
    assert all(prev[1] <= nxt[0] for prev, nxt in zip(spans, spans[1:])), "local jobs must run one at a time"
    summary = aggregate([sweep])
    assert len(summary["groups"]) == 2 and summary["warnings"] == []
    assert all(g["folds"] == [0, 1] for g in summary["groups"].values())


@pytest.mark.slow
def test_a_failing_job_does_not_stop_the_sweep_and_is_reported(tmp_path):
    sweep = tmp_path / "sweep"
    proc = _run(["-m", "hydra/launcher=submitit_local", "fold=0,7", *TINY, f"hydra.sweep.dir={sweep}"], tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "1 of 2 job(s) failed" in out and "fold=7" in out and "must be an integer in [0, n_folds)" in out
    assert re.search(r"logs: \S+\.out", out)
    (good,) = [p for p in sweep.iterdir() if p.name.endswith("fold=0") or ",fold=0," in p.name]
    assert (good / "metrics.json").is_file()


def _hydra_cfg(*overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=["run_dir=/tmp/x", *overrides], return_hydra_config=True)


def test_slurm_launcher_has_project_defaults_and_resolves_without_a_cluster():
    cfg = _hydra_cfg("hydra/launcher=submitit_slurm")
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.heritage_seg_launchers.launchers.SlurmLauncher"
    assert (launcher.gpus_per_node, launcher.tasks_per_node, launcher.max_num_timeout) == (1, 1, 3)
    assert launcher.timeout_min == 240 and launcher.partition is None and launcher.array_parallelism == 9
    ddp = _hydra_cfg("hydra/launcher=submitit_slurm", "trainer=ddp", "trainer.devices=4").hydra.launcher
    assert (ddp.gpus_per_node, ddp.tasks_per_node) == (4, 4)


def test_a_requeued_job_comes_back_with_resume_auto():
    launcher = instantiate(_hydra_cfg("hydra/launcher=submitit_slurm").hydra.launcher)
    delayed = launcher.checkpoint(["encoder=mit_b3", "fold=1", "resume=false"], "hydra.sweep.dir", 3, "j", {})
    assert delayed.args[0] == ["encoder=mit_b3", "fold=1", "resume=auto"]
    assert delayed.args[1:3] == ("hydra.sweep.dir", 3)


def test_local_launcher_runs_jobs_one_at_a_time_unless_told_otherwise():
    launcher = instantiate(_hydra_cfg("hydra/launcher=submitit_local").hydra.launcher)
    launcher.config = _hydra_cfg("hydra/launcher=submitit_local")
    assert launcher._batch_size(4) == 1
    launcher.config = _hydra_cfg("hydra/launcher=submitit_local", "local_sweep_parallelism=2")
    assert launcher._batch_size(4) == 2


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_syncs_metrics_and_only_rank_0_writes(tmp_path):
    run_dir = tmp_path / "run"
    ddp = "trainer=ddp trainer.accelerator=cpu trainer.devices=2 trainer.sync_batchnorm=false".split()
    proc = _run([*ddp, *TINY, "trainer.limit_val_batches=null", f"hydra.run.dir={run_dir}"], tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    state = next(v for k, v in last["callbacks"].items() if k.startswith("ModelCheckpoint") and "val/mIoU" in k)
    synced = float(state["best_model_score"])
    metrics = json.loads((run_dir / "metrics.json").read_text())  # rank 0 alone, whole validation fold
    assert metrics["num_images"] == len(json.loads((run_dir / "splits.json").read_text())["val_ids"])
    # each image counted once across the two ranks: the synced validation score (val/mIoU_gt, the monitor, at
    # the model's input size) equals the single-process one at that size
    assert synced == pytest.approx(metrics["train_resolution"]["miou_gt"], abs=1e-6)
    assert not list(run_dir.glob(".pl_hydra*")) and len(list(run_dir.glob("**/config.yaml"))) == 1


@pytest.mark.slow
def test_a_plain_sbatch_job_requeued_into_its_own_folder_continues(tmp_path):
    """The documented plain-sbatch command: its folder is named by SLURM_JOB_ID (the same after a requeue, unlike
    the default timestamp) and resume=auto continues from last.ckpt when the job script runs again."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "SLURM_JOB_ID": "4242"}
    command = [
        sys.executable,
        "-m",
        "heritage_seg.train",
        *TINY,
        "trainer.max_epochs=3",
        f"data.root={tmp_path / 'sample'}",
        "resume=auto",
        "hydra.run.dir=" + str(tmp_path) + "/sbatch/${oc.env:SLURM_JOB_ID}",
    ]
    preempted = command + ["+callbacks.stop._target_=tests.helpers.StopAfterEpoch", "+callbacks.stop.epochs=1"]
    first = subprocess.run(preempted, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode != 0 and "simulated preemption" in first.stderr + first.stdout
    run_dir = tmp_path / "sbatch" / "4242"
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["epoch"] == 0
    again = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)  # the requeue
    assert again.returncode == 0, again.stderr[-3000:]
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["epoch"] == 2 and last["global_step"] == 6, "continued from epoch 1, not restarted"
    assert json.loads((run_dir / "finished.json").read_text())["epochs"] == 3


def test_a_slurm_job_uses_no_more_cpu_threads_than_it_was_given(monkeypatch):
    from heritage_seg.core.device import respect_cpu_allocation

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
        respect_cpu_allocation()
        assert torch.get_num_threads() == 1
        torch.set_num_threads(2)
        monkeypatch.delenv("SLURM_CPUS_PER_TASK")
        respect_cpu_allocation()  # outside SLURM nothing changes
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
