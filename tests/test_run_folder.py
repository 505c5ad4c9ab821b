"""Run folders: never shared by two runs, unique default names, never written into once they hold results."""

from __future__ import annotations

import re
import threading

import pytest
from omegaconf import OmegaConf

from heritage_seg.rundir import claim_run_dir
from tests.conftest import CONF


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


@pytest.mark.parametrize("config", ["train", "evaluate", "predict", "lr_find"])
def test_default_run_folder_names_differ_below_the_second(config):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        overrides = {"train": [], "evaluate": ["ckpt=x"], "predict": ["ckpt=x", "input=y"], "lr_find": []}[config]
        dirs = [compose(config, overrides=overrides, return_hydra_config=True).hydra.run.dir for _ in range(2)]
    assert all(re.search(r"/\d{4}-\d\d-\d\d/\d\d-\d\d-\d\d-\d{6}$", d) for d in dirs), dirs
    assert dirs[0] != dirs[1]
