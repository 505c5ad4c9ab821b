"""Shared fixtures. Everything runs offline on CPU with tiny images and randomly initialised encoders."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Set before Hydra/huggingface_hub are imported: offline hub calls fail at once, caches stay out of ~.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("HERITAGE_SEG_CACHE", tempfile.mkdtemp(prefix="heritage_seg_test_cache_"))
# pytest-xdist (pyproject's addopts): each worker's torch, and the commands its tests start, on its share of the
# cores. Left at torch's default (a thread per core in every worker) two workers on 2 cores thrash.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    _THREADS = str(max(1, len(os.sched_getaffinity(0)) // _WORKERS))
    for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_name, _THREADS)

import pytest  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from heritage_seg.core.configs import compose  # noqa: E402
from heritage_seg.data.labels import LabelMap  # noqa: E402
from heritage_seg.data.sample import generate_sample  # noqa: E402

if _WORKERS > 1:  # torch may have been imported before the variables were set
    import torch  # noqa: E402

    torch.set_num_threads(int(_THREADS))

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"


def compose_config(overrides: list[str], config_name: str = "train", return_hydra_config: bool = False):
    return compose(config_name, overrides, return_hydra_config)


@pytest.fixture(scope="session")
def labels() -> LabelMap:
    return LabelMap.from_config(OmegaConf.load(CONF / "labels" / "artefact.yaml"))


@pytest.fixture(scope="session")
def sample_root(tmp_path_factory, labels) -> Path:
    """The project's sample data (as data=sample generates it), shared by the whole session."""
    return generate_sample(tmp_path_factory.mktemp("data") / "sample", labels)


def tiny_train_overrides(run_dir: Path, sample_root: Path, encoder: str = "convnext") -> list[str]:
    """A real training run shrunk to seconds: 64 px, 2 training steps, 1 validation batch, and the end-of-fit
    report without its TTA pass (a third of such a run; the tests of that report ask for it)."""
    return [
        "experiment=sample",
        "debug=tiny",
        f"encoder={encoder}",
        f"data.root={sample_root}",
        f"run_dir={run_dir}",
        "callbacks.final_validation_report.tta=false",
    ]


@pytest.fixture(scope="session")
def trains() -> None:
    """Requested by every test and fixture that trains a model (directly or through a fixture): what keeps a test
    out of the unit tier (`pytest -m unit`), where training is refused (below)."""


@pytest.fixture(scope="session")
def cluster() -> None:
    """Requested by a test that may send jobs to the SLURM cluster without being a `slurm` test (the doc runner, for
    its commands marked `needs: slurm`): it runs in the cluster's xdist group."""


@pytest.fixture(scope="session")
def spawns() -> None:
    """Requested by every test and fixture that starts another process (a command line, a browser): out of the
    unit tier too, where starting one is refused."""


def pytest_collection_modifyitems(config, items):
    """The unit tier: every test that is not slow, needs no GPU or cluster, and requests neither `trains` nor
    `spawns` (directly or through its fixtures)."""
    for item in items:
        if not {"slow", "gpu", "slurm"} & set(item.keywords) and not {"trains", "spawns"} & set(item.fixturenames):
            item.add_marker(pytest.mark.unit)
        if "slurm" in item.keywords or "cluster" in item.fixturenames:
            # the one-node cluster has 2 CPUs: its tests run one after another on one xdist worker (--dist
            # loadgroup), so no job waits in its queue behind another test's past a time limit
            item.add_marker(pytest.mark.xdist_group("slurm"))


@pytest.fixture(autouse=True)
def _the_unit_tier_trains_and_spawns_nothing(request, monkeypatch):
    """A unit test that trains or starts a process fails, naming the fixture to request, so the tier stays what it
    says in every run."""
    if request.node.get_closest_marker("unit") is None:
        return
    import subprocess

    import lightning as L

    def refuse(what: str, fixture: str):
        def refused(*args, **kwargs):
            raise AssertionError(
                f"{request.node.nodeid} {what}, but is in the unit tier: request the `{fixture}` fixture"
            )

        return refused

    monkeypatch.setattr(L.Trainer, "fit", refuse("trains a model", "trains"))
    monkeypatch.setattr(subprocess.Popen, "__init__", refuse("starts a process", "spawns"))


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, sample_root, trains) -> Path:
    """One tiny real training run (64 px, 2 steps), shared by the tests that need a checkpoint."""
    from heritage_seg.tasks.train import train

    run_dir = tmp_path_factory.mktemp("trained")
    # with the TTA report (tiny_train_overrides leave it out): tests read metrics_tta.json of this run
    train(compose_config(tiny_train_overrides(run_dir, sample_root) + ["callbacks.final_validation_report.tta=true"]))
    return run_dir
