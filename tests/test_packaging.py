"""What a user installs without the source tree (pip install heritage_seg, a wheel on a cluster's shared disk, a
container image; not `pip install -e`): the configs, label maps, templates and viewer scripts travel, checked by
running the commands from the installed wheel, not by listing its files."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from tests.conftest import REPO


def test_every_package_of_the_source_tree_is_listed_for_the_wheel():
    """pyproject.toml lists its packages (conf/ ships as heritage_seg.conf): a new subpackage left out of the list
    would be missing from every install but an editable one."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {
        ".".join(init.parent.relative_to(REPO).parts)
        for top in ("heritage_seg", "hydra_plugins")
        for init in (REPO / top).rglob("__init__.py")
    }
    assert found | {"heritage_seg.conf", "hydra_plugins"} == listed


@pytest.fixture(scope="module")
def installed_python(tmp_path_factory) -> Path:
    """The wheel built from this checkout, installed (not editable) into a fresh venv that sees the test venv's
    dependencies (a .pth line, which does not run the test venv's editable-install hook) but not this checkout."""
    work = tmp_path_factory.mktemp("wheel")
    build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(work)]
    proc = subprocess.run([*build, str(REPO)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = work.glob("heritage_seg-*.whl")
    env_dir = work / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True
    ).stdout.strip()
    Path(site, "test_venv_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", str(wheel)]
    proc = subprocess.run(install, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return python


def _run(python: Path, cwd: Path, command: str, *overrides: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [str(python), "-m", f"heritage_seg.{command}", *overrides], cwd=cwd, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, f"{command}: {proc.stdout[-1500:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.mark.slow
def test_an_installed_wheel_trains_evaluates_maps_and_aggregates_from_another_folder(installed_python, tmp_path):
    python, here = installed_python, tmp_path / "elsewhere"
    here.mkdir()
    where = subprocess.run(
        [python, "-c", "import heritage_seg, heritage_seg.conf as c; print(heritage_seg.__file__, c.__file__)"],
        cwd=here,
        capture_output=True,
        text=True,
    ).stdout
    assert str(REPO) not in where and str(python.parents[1]) in where, where  # the wheel's package, not this tree
    # the quick start's settings (its label map, data generation, crop protocol) at tiny size
    run = here / "run"
    _run(
        python,
        here,
        "train",
        "experiment=quickstart",
        "debug=tiny",
        "trainer.check_val_every_n_epoch=1",
        f"data.root={here / 'data'}",
        f"hydra.run.dir={run}",
    )
    best = run / "checkpoints" / "best.ckpt"
    assert best.is_file() and (run / "metrics.json").is_file()
    _run(python, here, "evaluate", f"ckpt={best}", f"hydra.run.dir={run / 'evaluate'}")
    assert "miou" in json.loads((run / "evaluate" / "metrics.json").read_text())
    scan = sorted((here / "data" / "images").iterdir())[0]
    _run(python, here, "predict", f"ckpt={best}", f"input={scan}", f"output={here / 'mapped'}")
    page = (here / "mapped" / "report.html").read_text()  # a Jinja2 template of the package
    assert scan.stem in page
    viewer = here / "mapped" / f"{scan.stem}_viewer.html"
    assert viewer.is_file() and re.search(r"openseadragon[^\"']*\.js", viewer.read_text())
    assert any(here.joinpath("mapped").rglob("openseadragon.min.js"))  # the viewer's static files travel
    _run(python, here, "aggregate", f"runs=[{run}]", f"out={here / 'summary'}")
    assert (here / "summary" / "cv_results.json").is_file()
