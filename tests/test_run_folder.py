"""Run folders: never shared by two runs, unique default names, never written into once they hold results."""

from __future__ import annotations

import re
import threading

import pytest
from omegaconf import OmegaConf

from heritage_seg.runs.claim import claim_run_dir


def test_runs_started_at_once_into_one_folder_cannot_both_claim_it(tmp_path):
    """Two jobs with the same run folder (same-second default names, a copied command): exactly one wins."""
    cfg = OmegaConf.create({"fold": 0})
    barrier, outcomes = threading.Barrier(6), []

    def start():
        barrier.wait()
        try:
            claim_run_dir(tmp_path / "run", cfg, finished_markers=("checkpoints/*.ckpt", "splits.json"))
            outcomes.append("claimed")
        except FileExistsError as err:
            outcomes.append(str(err))

    threads = [threading.Thread(target=start) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("claimed") == 1, outcomes
    assert all("already claimed by process" in o and "resume=auto" in o for o in outcomes if o != "claimed")
    # the same run requeued before it saved anything (resume=auto) takes its folder back
    claim_run_dir(tmp_path / "run", cfg, finished_markers=("checkpoints/*.ckpt",), reclaim=True)


@pytest.mark.parametrize("config", ["train", "evaluate", "predict", "select", "lr_find"])
def test_default_run_folder_names_differ_below_the_second(config):
    from heritage_seg.core.configs import compose

    overrides = {"evaluate": ["ckpt=x"], "predict": ["ckpt=x", "input=y"], "select": ["ckpt=x", "input=y"]}.get(
        config, []
    )
    dirs = [compose(config, overrides, return_hydra_config=True).hydra.run.dir for _ in range(2)]
    assert all(re.search(r"/\d{4}-\d\d-\d\d/\d\d-\d\d-\d\d-\d{6}$", d) for d in dirs), dirs
    assert dirs[0] != dirs[1]


FOLDERS = {  # where each command writes by default, from the shared bases (conf/hydra/): issue 36, point 3
    "train": "outputs/<date>/<time>",
    "lr_find": "outputs/lr_find/<date>/<time>",
    "pretrain": "outputs/pretrain/<date>/<time>",
    **{c: f"outputs/{c}/<date>/<time>" for c in ("evaluate", "predict", "select", "preannotate", "export")},
    "import_annotations": "outputs/import_annotations/<date>/<time>",
    "aggregate": ".",
    "download": ".",
}


@pytest.mark.parametrize("config", sorted(FOLDERS))
def test_every_command_writes_where_its_help_says_and_hydra_writes_no_record_before_the_check(config):
    from heritage_seg.core.configs import compose

    cfg = compose(config, [], return_hydra_config=True)
    hydra = cfg.hydra
    folder = re.sub(r"\d{4}-\d\d-\d\d/\d\d-\d\d-\d\d-\d{6}$", "<date>/<time>", hydra.run.dir)
    assert folder == FOLDERS[config]
    # .hydra/ is written by runs/claim.py after it checked the folder holds no finished run; paths given on the
    # command line stay relative to where the user is
    assert hydra.output_subdir is None and not hydra.job.chdir
    if config in ("train", "pretrain"):  # a sweep's jobs: one folder each, named by what they change
        subdir = OmegaConf.to_container(hydra.sweep, resolve=False)["subdir"]
        assert subdir.startswith("${sweep_dirname:"), subdir
        assert "data.root" in hydra.job.config.override_dirname.exclude_keys
    # the inference commands share one device/precision base
    if config in ("evaluate", "predict", "select", "preannotate"):
        assert (cfg.device, cfg.precision) == ("auto", "auto")


def test_sweep_folder_names_stay_one_folder_of_legal_length_and_are_stable():
    from heritage_seg.core.sweep_names import MAX_DIRNAME, sweep_dirname

    assert sweep_dirname("encoder=mit_b3,fold=1") == "encoder-mit_b3+fold-1"
    with_path = "encoder.weights=/models/convnext.pth,fold=0"
    assert sweep_dirname(with_path) == "encoder.weights-%2Fmodels%2Fconvnext.pth+fold-0"
    long = ",".join(f"+callbacks.c{i}.value={i * 1000}" for i in range(40))
    other = long.replace("c39.value=39000", "c39.value=39001")  # differs only at the end
    assert len(sweep_dirname(long).encode()) <= MAX_DIRNAME < 255
    assert sweep_dirname(long) == sweep_dirname(long) != sweep_dirname(other)  # a requeued job finds its folder
    assert "%2" not in sweep_dirname(long)[-16:-12], "a %XX escape cut in two"


@pytest.mark.parametrize(
    "overrides",
    [
        "encoder=mit_b3,fold=1",
        "data.progressive=[[256,10],[384,20]],fold=0",
        "+callbacks.x._target_='a b',~logger,optim.lr=1e-4,data.root=/x/y:z,labels=m@n#1",
        ",".join(f"+callbacks.c{i}.value=[{i},{i}]" for i in range(40)),
    ],
)
def test_a_sweep_folder_pastes_into_any_option_and_shell_unquoted(overrides):
    """Issue 25: `ckpt=<sweep>/encoder=convnext,fold=0/checkpoints/best.ckpt` failed in Hydra's parser. The path
    a sweep writes must parse as one plain value, and need no quoting in a shell."""
    import shlex

    from hydra.core.override_parser.overrides_parser import OverridesParser

    from heritage_seg.core.sweep_names import sweep_dirname

    path = f"multirun/2026-12-02/10-00-00-123456/{sweep_dirname(overrides)}/checkpoints/best.ckpt"
    assert OverridesParser.create().parse_override(f"ckpt={path}").value() == path
    assert shlex.quote(path) == path and "/" not in sweep_dirname(overrides)


def test_a_sweep_started_before_the_new_names_resumes_into_its_own_folders(tmp_path):
    from heritage_seg.core.sweep_names import sweep_dirname

    (tmp_path / "encoder=mit_b3,fold=1").mkdir()
    assert sweep_dirname("encoder=mit_b3,fold=1", str(tmp_path)) == "encoder=mit_b3,fold=1"
    assert sweep_dirname("encoder=mit_b3,fold=0", str(tmp_path)) == "encoder-mit_b3+fold-0"  # a job not run then
    assert sweep_dirname("encoder=mit_b3,fold=1", str(tmp_path / "new")) == "encoder-mit_b3+fold-1"


def test_the_sweep_config_finds_an_old_sweeps_folder_and_names_new_ones_plainly(tmp_path):
    """conf/train.yaml passes the sweep folder to the name rule: a relaunch of a sweep started before issue 25
    lands in its old job folders (and resume=auto continues there), a new job gets the new name."""
    from hydra.core.hydra_config import HydraConfig

    from heritage_seg.core.configs import compose

    (tmp_path / "encoder=mit_b3,fold=1").mkdir()
    names = []
    for fold in (1, 0):
        overrides = ["encoder=mit_b3", f"fold={fold}", f"hydra.sweep.dir={tmp_path}", "data.root=/elsewhere"]
        cfg = compose("train", overrides, return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
        names.append(OmegaConf.select(cfg, "hydra.sweep.subdir"))
    assert names == ["encoder=mit_b3,fold=1", "encoder-mit_b3+fold-0"]
