"""The README's SLURM sweep on a real (one-node) SLURM cluster: tools/slurm_local.sh starts one, CI does so
before the tests. Jobs train on the CPU through `hydra/launcher=submitit_slurm_cpu`, tiny (64 px, 2 steps)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from heritage_seg.tasks.aggregate import aggregate
from heritage_seg.tasks.train import train
from tests.conftest import REPO, compose_config
from tests.helpers import cluster_up

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.slow,
    pytest.mark.skipif(
        not cluster_up(),
        reason="no SLURM cluster up here; start one with `sudo bash tools/slurm_local.sh start` (CI does)",
    ),
]

TINY = ["experiment=sample", "debug=tiny", "n_folds=2"]
ON_CPU_NODE = [
    "hydra/launcher=submitit_slurm_cpu",
    "trainer.accelerator=cpu",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=3",
]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("slurm_data") / "sample"


def _sweep(args, data_root, timeout=600, background=False):
    command = [sys.executable, "-m", "heritage_seg.train", "-m", *args, f"data.root={data_root}"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if background:
        return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def _digest(run_dir: Path) -> dict[str, str]:
    files = sorted(p for p in run_dir.rglob("*") if p.is_file() and p.name != "train.log")
    return {str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def test_a_2_fold_sweep_runs_on_slurm_aggregates_and_a_relaunch_leaves_finished_runs_untouched(tmp_path, data_root):
    sweep = tmp_path / "sweep"
    args = [*ON_CPU_NODE, "encoder=convnext", "fold=0,1", *TINY, f"hydra.sweep.dir={sweep}"]
    proc = _sweep(args, data_root)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "all 2 job(s) finished" in out
    runs = sorted(p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert len(runs) == 2 and all((r / "metrics.json").is_file() and (r / "finished.json").is_file() for r in runs)
    scripts = list((sweep / ".submitit").glob("*/*_submission.sh"))
    assert scripts and "#SBATCH --cpus-per-task=1" in scripts[0].read_text()
    assert "gpus" not in scripts[0].read_text()  # the CPU preset asks for no GPU
    summary = aggregate([sweep])
    assert len(summary["groups"]) == 1 and summary["warnings"] == []
    assert all(g["folds"] == [0, 1] for g in summary["groups"].values())

    # (d) the same sweep relaunched into its folder, as after a crash of the submitting shell
    before = {r.name: _digest(r) for r in runs}
    again = _sweep(args + ["resume=auto"], data_root)
    assert again.returncode == 0, (again.stdout + again.stderr)[-4000:]
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir() and not p.name.startswith(".")) == sorted(before)
    assert {r.name: _digest(r) for r in runs} == before  # checkpoints, metrics, splits: byte for byte
    for run in runs:
        assert "already finished" in (run / "train.log").read_text()


def test_a_failing_job_is_listed_with_its_log_while_the_other_finishes(tmp_path, data_root):
    sweep = tmp_path / "sweep"
    proc = _sweep([*ON_CPU_NODE, "encoder=convnext", "fold=0,7", *TINY, f"hydra.sweep.dir={sweep}"], data_root)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "1 of 2 job(s) failed" in out and "fold=7" in out and "must be an integer in [0, n_folds)" in out
    logs = re.findall(r"logs: (\S+\.out)\s+(\S+\.err)", out)
    assert logs and all(Path(p).is_file() for p in logs[0])
    job_log = Path(logs[0][0]).read_text() + Path(logs[0][1]).read_text()
    assert "error: fold=7" in job_log  # the job's own log says why it failed
    runs = {
        p: (p / ".hydra" / "overrides.yaml").read_text()
        for p in sweep.iterdir()
        if p.is_dir() and (p / ".hydra" / "overrides.yaml").is_file()
    }
    (good,) = [p for p, overrides in runs.items() if "fold=0" in overrides]
    assert (good / "metrics.json").is_file()


def _job_ids(job_name: str) -> list[tuple[str, str, str]]:
    out = subprocess.run(["squeue", "-h", "-n", job_name, "-o", "%i %T %r"], capture_output=True, text=True).stdout
    return [tuple(line.split(maxsplit=2)) for line in out.splitlines() if line.strip()]


def _time_out_after_first_checkpoint(job_name: str, sweep: Path, deadline: float) -> bool:
    """Send the job the signal SLURM sends before its time limit (USR2, `#SBATCH --signal`) once it has saved a
    last.ckpt: SLURM's own signal may come up to a minute early, i.e. before any checkpoint, which would test
    a restart instead of a resume. Then let the requeued job start at once: SLURM holds a requeued job back for
    about two minutes (its begin time)."""
    signalled = False
    while time.time() < deadline:
        jobs = _job_ids(job_name)
        if not signalled and list(sweep.glob("*/checkpoints/last.ckpt")):
            running = [job_id for job_id, state, _ in jobs if state == "RUNNING"]
            if running:
                subprocess.run(["scancel", "--signal=USR2", running[0]], check=True)
                signalled = True
        for job_id, state, reason in jobs:
            if signalled and state == "PENDING" and reason.strip() == "BeginTime":
                subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], check=True)
                return True
        time.sleep(1)
    return False


def _learning_rates(path: Path) -> dict[int, dict]:
    """The last record of each epoch (a resumed attempt repeats the epoch it resumes at)."""
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return {r["epoch"]: r for r in records}


def test_a_timed_out_job_is_requeued_and_resumes_its_schedule_from_last_ckpt(tmp_path, data_root):
    epochs = 6
    lr_log = tmp_path / "lr_requeued.jsonl"
    sweep = tmp_path / "sweep"
    name = f"requeue{os.getpid()}"
    args = [
        *ON_CPU_NODE,
        "encoder=convnext",
        "fold=0",
        *[o for o in TINY if "max_epochs" not in o],
        f"trainer.max_epochs={epochs}",
        "callbacks.early_stopping=null",
        f"hydra.sweep.dir={sweep}",
        "hydra.launcher.timeout_min=2",
        "hydra.launcher.signal_delay_s=30",
        f"hydra.job.name={name}",
        # the first attempt would outlive its 2-minute limit (6 epochs x 25 s); the requeued one runs at full speed
        "+callbacks.slow._target_=tests.helpers.SlowEpochs",
        "+callbacks.slow.seconds=25",
        "+callbacks.lr._target_=tests.helpers.RecordLearningRate",
        f"+callbacks.lr.path={lr_log}",
    ]
    proc = _sweep(args, data_root, background=True)
    requeued = _time_out_after_first_checkpoint(name, sweep, time.time() + 240)
    out, _ = proc.communicate(timeout=420)
    assert proc.returncode == 0, out[-4000:]
    assert requeued, "the job was never requeued"
    records = [json.loads(line) for line in lr_log.read_text().splitlines()]
    attempts = sorted({r["attempt"] for r in records})
    assert len(attempts) >= 2, records
    resumed = [r for r in records if r["attempt"] != "0"][0]
    assert resumed["epoch"] > 0, "the requeued attempt started again from epoch 0 instead of last.ckpt"
    (run,) = [p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith(".")]
    last = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    finished = json.loads((run / "finished.json").read_text())
    assert finished["epochs"] == epochs and finished["global_step"] == 2 * epochs

    # the same training without SLURM and without interruption: the same schedule, epoch by epoch
    plain_log = tmp_path / "lr_plain.jsonl"
    overrides = [
        o for o in args if not o.startswith(("hydra", "+callbacks.slow", "+callbacks.lr")) and o not in ON_CPU_NODE
    ]
    train(
        compose_config(
            overrides
            + [
                "trainer.accelerator=cpu",
                f"data.root={data_root}",
                f"run_dir={tmp_path / 'plain'}",
                "+callbacks.lr._target_=tests.helpers.RecordLearningRate",
                f"+callbacks.lr.path={plain_log}",
            ]
        )
    )
    requeued, plain = _learning_rates(lr_log), _learning_rates(plain_log)
    assert sorted(requeued) == sorted(plain) == list(range(epochs))
    for epoch in range(epochs):
        assert requeued[epoch]["global_step"] == plain[epoch]["global_step"]
        assert requeued[epoch]["lr"] == pytest.approx(plain[epoch]["lr"], rel=1e-9), epoch
    plain_last = torch.load(tmp_path / "plain" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    steps = [s["step"] for s in last["optimizer_states"][0]["state"].values()]
    assert {float(s) for s in steps} == {float(s["step"]) for s in plain_last["optimizer_states"][0]["state"].values()}
    assert last["lr_schedulers"][0]["last_epoch"] == plain_last["lr_schedulers"][0]["last_epoch"]


def test_the_sbatch_script_asks_for_the_gpus_tasks_and_cpus_of_a_4_gpu_ddp_run(tmp_path, data_root):
    """Read the submission script submitit writes for `trainer=ddp trainer.devices=4` (this node has no GPU, so
    sbatch refuses the job; the script is what a GPU cluster would get)."""
    sweep = tmp_path / "sweep"
    proc = _sweep(
        [
            "hydra/launcher=submitit_slurm",
            "trainer=ddp",
            "trainer.devices=4",
            "fold=0",
            *TINY,
            f"hydra.sweep.dir={sweep}",
        ],
        data_root,
        timeout=120,
    )
    assert proc.returncode != 0  # no GPUs here
    (script,) = list((sweep / ".submitit").glob("**/*submission*.sh"))
    text = script.read_text()
    for line in (
        "#SBATCH --gpus-per-node=4",
        "#SBATCH --ntasks-per-node=4",
        "#SBATCH --cpus-per-task=8",
        "#SBATCH --nodes=1",
        "#SBATCH --mem=64GB",
        "#SBATCH --signal=USR2@120",
        "#SBATCH --time=240",
    ):
        assert line in text, f"{line} missing from {script}:\n{text}"
