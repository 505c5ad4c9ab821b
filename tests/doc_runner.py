"""Run every `python -m heritage_seg.…` command (and Python snippet) of the README and the docs at tiny size on
generated data.

    python -m tests.doc_runner --work <empty folder> --out <result.json> [extra pages…]

One process runs the commands one after another, each as `python -m` would (runpy, with its own sys.argv, in the
work folder, its output in logs/<n>.log), so the import cost is paid once; a sweep through `submitit_local`
still starts its jobs as processes, and a command marked `slurm` (tests/doc_commands.py) goes through the real
cluster when one is up: a sweep by its launcher, a single command through `srun`. Pages run in order (README
first); a command that comes out the same as one already run (the same text on the same runs) is not run again.

What "tiny size on generated data" means, and nothing else is changed:
- the work folder holds generated ARTeFACT-format data, used for every `data.root=` (a label map of the user's
  own gets data generated in its raw values) and as the default (`ARTEFACT_ROOT`), and the scans the pages
  name: `scans/`, `scan.tif` (from another generated collection: scans nobody annotated);
- `train`, `pretrain` and `lr_find` get `debug=tiny` (64 px, 2 training steps, 1 validation batch, random init),
  `train` its end-of-fit report without the TTA pass, and `lr_find` 5 learning rates instead of 100;
- a sweep (`-m`) keeps the first value of each swept option: one job (an `ablation=` preset: its rows on fold 0),
  through the sweep's own launcher (the
  machinery of many jobs has tests of its own: tests/test_sweeps.py, tests/test_slurm.py);
- placeholders become what the earlier commands made: `outputs/<date>/<time>` (or a dated example such as
  `outputs/2026-11-24/10-00-00`, or `outputs/…`) the latest training run, `outputs/pretrain/<date>/<time>` the
  latest pre-training run, `outputs/select/<date>/<time>` and `outputs/preannotate/<date>/<time>` the latest
  output of those commands (for `train`, e.g. a resume, the latest
  one trained with that command's options), `multirun/<date>/<time>` (or a dated example) the latest sweep (one
  is made first if no page's sweep has run yet). Any other `<…>` left in a command fails it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import runpy
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf
from PIL import Image

from heritage_seg.data.labels import LabelMap
from heritage_seg.data.sample import generate_sample
from tests.doc_commands import DocCommand, extract, pages
from tests.helpers import cluster_up

TRAINING = {"heritage_seg.train", "heritage_seg.lr_find", "heritage_seg.pretrain"}
# outputs/<command>/<date>/<time> of a command that writes one: the file that marks it finished
_COMMAND_OUTPUTS = {"pretrain": "pretrained.pt", "select": "selection.csv", "preannotate": "annotations.json"}
_COMMAND_OUTPUT = rf"outputs/({'|'.join(_COMMAND_OUTPUTS)})/(?:<date>/<time>|\d{{4}}-\d\d-\d\d/[\d-]+|…)"
_RUN = r"outputs/(?:<date>/<time>|\d{4}-\d\d-\d\d/[\d-]+|…)"
_SWEEP = r"multirun/(?:<date>/<time>|\d{4}-\d\d-\d\d/[\d-]+)"


def missing_needs(needs: frozenset[str]) -> list[str]:
    missing = []
    if "gpu" in needs and not torch.cuda.is_available():
        missing.append("a GPU")
    if "slurm" in needs and not cluster_up():
        missing.append("a SLURM cluster")
    if "artefact" in needs:
        missing.append("the ARTeFACT files (or the internet to fetch them)")
    return missing


# An `ablation=` preset's own sweep (conf/ablation/), shrunk: fold 0, and sizes a debug=tiny run can train (the
# stages' total is the run's trainer.max_epochs, as the preset's own 20 + 30 are its 50)
TINY_ABLATION_PARAMS = {"progressive": {"data.progressive": "'null,[[32,1],[64,1]]'"}}
TINY_ABLATION_ARGS = {"progressive": ["trainer.max_epochs=2"]}


def shrink_sweep(args: list[str]) -> list[str]:
    """The first value of each swept option; an `ablation=` preset's rows on fold 0 (TINY_ABLATION_PARAMS)."""
    out = []
    for arg in args:
        key, sep, value = arg.partition("=")
        if sep and "," in value and not value.startswith(("[", "'", '"')) and not key.startswith("hydra"):
            value = value.split(",")[0]
        out.append(f"{key}{sep}{value}")
    for arg in args:
        if arg.startswith("ablation="):
            params = {**TINY_ABLATION_PARAMS.get(arg.partition("=")[2], {}), "fold": "0"}
            out.append("hydra.sweeper.params={" + ",".join(f"{k}:{v}" for k, v in params.items()) + "}")
            out.extend(TINY_ABLATION_ARGS.get(arg.partition("=")[2], []))
    return out


class Runner:
    def __init__(self, work: Path):

        self.work = work
        self.logs = work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        repo = Path(__file__).resolve().parents[1]
        self.labels = LabelMap.from_config(OmegaConf.load(repo / "conf" / "labels" / "artefact.yaml"))
        self.data = generate_sample(work / "generated" / "artefact", self.labels)
        os.environ["ARTEFACT_ROOT"] = str(self.data)
        # scans nobody annotated: another generated collection, not copies of the training data (select skips
        # those as annotated already)
        unannotated = generate_sample(work / "generated" / "unannotated", self.labels, 3, 0, seed=99)
        (work / "scans").mkdir(exist_ok=True)
        for k, image in enumerate(sorted((unannotated / "images").iterdir())):
            shutil.copy(image, work / "scans" / f"scan_{k}.png")
            if not (work / "scan.tif").exists():
                with Image.open(image) as img:
                    img.save(work / "scan.tif")
        self.seen: dict[str, str] = {}
        self.results: list[dict] = []
        self.train_runs: list[Path] = []  # finished training runs, oldest first
        self.latest_sweep: Path | None = None

    # --- what a command becomes -------------------------------------------------------------------------------
    def _data_for(self, args: list[str]) -> Path:
        """Generated data in the raw values of the label map the command trains with."""

        config_dir = next((args[i + 1] for i, a in enumerate(args[:-1]) if a == "--config-dir"), None)
        name = next((a.split("=", 1)[1] for a in args if a.startswith("labels=")), "artefact")
        if config_dir is None or name == "artefact":
            return self.data
        labels = LabelMap.from_config(OmegaConf.load(self.work / config_dir / "labels" / f"{name}.yaml"))
        damage = next(n for n in labels.names if n != labels.clean_name)
        return generate_sample(self.work / "generated" / name, labels, profile="thin", damage=damage)

    def _run_for(self, module: str, args: list[str]) -> Path:
        """The training run a placeholder means: for `train` (resume into it), the latest run trained with this
        command's own options; otherwise the latest run."""

        if not self.train_runs:
            raise ValueError("names a training run, but no training command has run before it")
        if module == "heritage_seg.train":
            wanted = {a for a in args if "=" in a and not a.startswith(("hydra", "resume=", "data.root="))}
            for run in reversed(self.train_runs):
                if wanted <= {str(o) for o in OmegaConf.load(run / ".hydra" / "overrides.yaml")}:
                    return run
        return self.train_runs[-1]

    def _sweep_for_placeholders(self) -> Path:
        if self.latest_sweep is None:  # no page's sweep has run yet: make one, as a user would have
            self._run_module("heritage_seg.train", ["-m", "experiment=sample", "debug=tiny", "fold=0"], "setup")
        assert self.latest_sweep is not None, "the placeholder sweep did not finish"
        return self.latest_sweep

    def prepare(self, command: DocCommand) -> tuple[str, list[str]]:
        words = shlex.split(command.text)
        module, args = words[2], words[3:]
        if module in TRAINING and not {"--cfg", "--help", "-h", "--info"} & set(args):
            args = [*args, "debug=tiny"] + (["lr_find.num_training=5"] if module == "heritage_seg.lr_find" else [])
            if module == "heritage_seg.train":  # the end-of-fit report without its TTA pass: a third of a tiny run
                args.append("callbacks.final_validation_report.tta=false")
        if "-m" in args or "--multirun" in args:
            args = shrink_sweep(args)
        out = []
        for arg in args:
            match = re.search(_COMMAND_OUTPUT, arg)
            if match:
                kind = match.group(1)
                made = sorted(
                    self.work.glob(f"outputs/{kind}/*/*/{_COMMAND_OUTPUTS[kind]}"), key=lambda p: p.stat().st_mtime
                )
                if not made:
                    raise ValueError(f"names an output of {kind}, but no {kind} command has run before it")
                arg = re.sub(_COMMAND_OUTPUT, str(made[-1].parent), arg)
            if re.search(_RUN, arg):
                arg = re.sub(_RUN, str(self._run_for(module, args)), arg)
            if re.search(_SWEEP, arg):
                arg = re.sub(_SWEEP, str(self._sweep_for_placeholders()), arg)
            if arg.startswith("data.root="):
                arg = f"data.root={self._data_for(args)}"
            if re.search(r"<[^>]*>", arg):
                raise ValueError(f"unknown placeholder in {arg!r} (tests/doc_runner.py lists the known ones)")
            out.append(arg)
        return module, out

    # --- running ----------------------------------------------------------------------------------------------
    def _finished_runs(self) -> set[Path]:
        return {p.parent.parent for p in self.work.glob("outputs/**/checkpoints/best.ckpt")}

    def _finished_sweeps(self) -> set[Path]:
        return {p.parent.parent.parent for p in self.work.glob("multirun/*/*/*/checkpoints/best.ckpt")}

    def _run_module(self, module: str, args: list[str], log_name: str, srun: bool = False) -> tuple[int, float]:
        runs, sweeps = self._finished_runs(), self._finished_sweeps()
        log = self.logs / f"{log_name}.log"
        start = time.perf_counter()
        with open(log, "w") as handle:
            if srun:
                cmd = ["srun", "--cpus-per-task=1", "--mem=3G", sys.executable, "-m", module, *args]
                code = subprocess.run(cmd, cwd=self.work, stdout=handle, stderr=subprocess.STDOUT).returncode
            else:
                code = self._in_process(module, args, handle)
        seconds = time.perf_counter() - start
        new_runs = sorted(self._finished_runs() - runs, key=lambda p: p.stat().st_mtime)
        new_sweeps = sorted(self._finished_sweeps() - sweeps, key=lambda p: p.stat().st_mtime)
        if code == 0 and module == "heritage_seg.train" and not new_sweeps:
            self.train_runs.extend(new_runs)
        if code == 0 and new_sweeps:
            self.latest_sweep = new_sweeps[-1]
        return code, seconds

    def _in_process(self, module: str, args: list[str], handle, snippet: str | None = None) -> int:
        """`python -m module args`, or (`snippet`) a page's Python code run whole, in the work folder."""
        saved_argv, saved_cwd = sys.argv, os.getcwd()
        saved_fds = os.dup(1), os.dup(2)
        sys.stdout.flush(), sys.stderr.flush()
        os.dup2(handle.fileno(), 1), os.dup2(handle.fileno(), 2)
        sys.argv = [module, *args]
        os.chdir(self.work)
        code: int = 0
        try:
            if snippet is not None:
                exec(compile(snippet, module, "exec"), {"__name__": "__main__"})
            else:
                runpy.run_module(module, run_name="__main__", alter_sys=True)
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        except BaseException as err:  # noqa: BLE001 - the failure is the result
            print(f"{type(err).__name__}: {err}", file=sys.stderr)
            code = 1
        finally:
            sys.stdout.flush(), sys.stderr.flush()
            os.dup2(saved_fds[0], 1), os.dup2(saved_fds[1], 2)
            os.close(saved_fds[0]), os.close(saved_fds[1])
            sys.argv = saved_argv
            os.chdir(saved_cwd)
        return code

    def prepare_snippet(self, command: DocCommand) -> str:
        """A Python snippet with its placeholders (in its strings) made what the earlier commands made."""
        text = re.sub(_RUN, lambda _: str(self._run_for("python", [])), command.text)
        unknown = re.findall(r"<[\w ]+>", text)
        if unknown:
            raise ValueError(f"unknown placeholder(s) {unknown} (tests/doc_runner.py lists the known ones)")
        return text

    def run_snippet(self, command: DocCommand) -> dict:
        result: dict = {"source": command.source, "command": command.text}
        try:
            snippet = self.prepare_snippet(command)
        except ValueError as err:
            return {**result, "status": "failed", "why": str(err)}
        index = len(self.results)
        log = self.logs / f"{index:02d}.log"
        start = time.perf_counter()
        with open(log, "w") as handle:
            code = self._in_process(command.source, [], handle, snippet)
        result.update(seconds=round(time.perf_counter() - start, 1), rc=code, ran=snippet)
        if code != 0:
            return {**result, "status": "failed", "why": f"exit code {code}", "log": log.read_text()[-3000:]}
        return {**result, "status": "passed"}

    def run(self, command: DocCommand) -> dict:
        if command.python:
            return self.run_snippet(command)
        result: dict = {"source": command.source, "command": command.text}
        missing = missing_needs(command.needs)
        if missing:
            return {**result, "status": "skipped", "why": "needs " + " and ".join(missing)}
        try:
            module, args = self.prepare(command)
        except ValueError as err:
            return {**result, "status": "failed", "why": str(err)}
        ran = f"python -m {module} {shlex.join(args)}"
        result["ran"] = ran
        if ran in self.seen:  # the same command on the same runs: an earlier page's, repeated
            return {**result, "status": "same as", "as": self.seen[ran]}
        self.seen[ran] = command.source
        index = len(self.results)
        srun = "slurm" in command.needs and "-m" not in args
        code, seconds = self._run_module(module, args, f"{index:02d}", srun=srun)
        result.update(seconds=round(seconds, 1), rc=code)
        if code != 0:
            tail = (self.logs / f"{index:02d}.log").read_text(errors="replace")[-3000:]
            return {**result, "status": "failed", "why": f"exit code {code}", "log": tail}
        return {**result, "status": "passed"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("extra", nargs="*", type=Path, help="more pages to run after the docs (the test's own)")
    parser.add_argument("--only", default="", help="only the pages whose path contains this (while writing docs)")
    options = parser.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("HERITAGE_SEG_CACHE", str(options.work.resolve() / "cache"))
    runner = Runner(options.work.resolve())
    for page in [p for p in pages() if options.only in str(p)] + options.extra:
        commands, files = extract(page)
        for name, text in files.items():
            target = runner.work / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        for command in commands:
            runner.results.append(runner.run(command))
            options.out.write_text(json.dumps(runner.results, indent=1))
    options.out.write_text(json.dumps(runner.results, indent=1))


if __name__ == "__main__":
    main()
