"""Sweeps: a real submitit_local multirun, a failing job among good ones, the SLURM config, DDP on CPU."""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
from datetime import datetime

import pytest
import torch
from hydra.utils import instantiate

from heritage_seg.core.configs import compose
from heritage_seg.tasks.aggregate import aggregate
from tests.conftest import REPO
from tests.helpers import scan_folder

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


def _cli(command: str, cwd, timeout=600):
    """A command line as a user pastes it into a shell."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(command, shell=True, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{command}\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


@pytest.mark.slow
def test_the_readme_sweep_then_evaluate_predict_export_and_an_ensemble_from_the_paths_it_printed(tmp_path, sample_root):
    """Issue 25: the README's sweep (tiny, two encoders on one fold, one job after another on this machine) prints
    each run's checkpoint and the aggregate command; every later command takes those paths pasted as they are,
    through the real CLI and a shell: aggregate, the evaluate command its page prints, predict, an ensemble, and
    export of a run folder named as sweeps named them before (`encoder=…,fold=…`)."""
    sweep_args = "-m encoder=convnext,mit_b3 fold=0 n_folds=2 hydra/launcher=submitit_local experiment=sample"
    out = _cli(f"{sys.executable} -m heritage_seg.train {sweep_args} debug=tiny data.root={sample_root}", tmp_path)
    assert "all 2 job(s) finished" in out
    printed = dict(re.findall(r"^  .*encoder=(\w+) .*: (ckpt=\S+)$", out, flags=re.M))
    (summary_command,) = re.findall(r"summary: (python -m heritage_seg\.aggregate \S+)$", out, flags=re.M)
    assert sorted(printed) == ["convnext", "mit_b3"]
    jobs = [tmp_path / printed[e].removeprefix("ckpt=").removesuffix("/checkpoints/best.ckpt") for e in printed]
    assert all(re.fullmatch(r"[\w.+-]+", job.name) for job in jobs), [j.name for j in jobs]
    for job in jobs:
        for name in (
            "checkpoints/last.ckpt",
            "splits.json",
            "metrics.json",
            "metrics_tta.json",
            ".hydra/overrides.yaml",
        ):
            assert (job / name).is_file(), f"{job.name}/{name}"
        assert json.loads((job / "splits.json").read_text())["fold"] == 0
    first, second = sorted(_log_span(job / "train.log") for job in jobs)
    assert first[1] <= second[0], "local jobs must run one at a time"

    _cli(summary_command.replace("python", sys.executable, 1), tmp_path)
    sweep = jobs[0].parent
    summary = json.loads((sweep / "cv_results.json").read_text())
    assert len(summary["groups"]) == 2 and all(g["folds"] == [0] for g in summary["groups"].values())
    page = html.unescape((sweep / "report.html").read_text())
    hints = [line for line in page.splitlines() if line.startswith("python -m heritage_seg.evaluate")]
    assert len(hints) == 2
    _cli(hints[0].replace("python", sys.executable, 1), tmp_path)
    aggregate([sweep])
    assert "best01_" in (sweep / "report.html").read_text(), "the evaluation the page asked for adds its panels"

    scan_folder(sample_root, tmp_path / "scans", 2)  # input=scans, in the work folder
    _cli(f"{sys.executable} -m heritage_seg.predict {printed['convnext']} input=scans output=mapped", tmp_path)
    assert len(list((tmp_path / "mapped").glob("*_mask.png"))) == 2
    ensemble = f"ckpt=[{printed['convnext'].removeprefix('ckpt=')},{printed['mit_b3'].removeprefix('ckpt=')}]"
    out = _cli(f"{sys.executable} -m heritage_seg.evaluate {ensemble} hydra.run.dir=ensemble", tmp_path)
    assert json.loads((tmp_path / "ensemble" / "metrics.json").read_text())["num_images"] > 0

    # a run folder of a sweep started before issue 25, pasted unquoted
    legacy = sweep / "encoder=mit_b3,fold=0"
    jobs[1].rename(legacy)
    assert "=" in legacy.name and "," in legacy.name
    _cli(f"{sys.executable} -m heritage_seg.export ckpt={legacy}/checkpoints/best.ckpt output=model.onnx", tmp_path)
    assert (tmp_path / "model.onnx").stat().st_size > 0 and (tmp_path / "model_card.md").is_file()


@pytest.mark.slow
def test_a_failing_job_does_not_stop_the_sweep_and_is_reported(tmp_path):
    sweep = tmp_path / "sweep"
    proc = _run(["-m", "hydra/launcher=submitit_local", "fold=0,7", *TINY, f"hydra.sweep.dir={sweep}"], tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "1 of 2 job(s) failed" in out and "fold=7" in out and "must be an integer in [0, n_folds)" in out
    assert re.search(r"logs: \S+\.out", out)
    (good,) = [p for p in sweep.iterdir() if p.name.endswith("fold-0") or "+fold-0+" in p.name]
    assert (good / "metrics.json").is_file()


def _hydra_cfg(*overrides):
    return compose("train", ["run_dir=/tmp/x", *overrides], return_hydra_config=True)


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
