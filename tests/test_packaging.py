"""What a user installs without the source tree (pip install heritage_seg, not -e): the package data travels."""

from __future__ import annotations

import subprocess
import sys
import zipfile

from tests.conftest import REPO


def test_a_built_wheel_ships_the_templates_and_the_viewer_scripts_with_their_licence(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(REPO),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = tmp_path.glob("heritage_seg-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for template in (
        "base.html.j2",
        "macros.html.j2",
        "scan_report.html.j2",
        "study_report.html.j2",
        "model_card.md.j2",
        "viewer.html.j2",
    ):
        assert f"heritage_seg/reporting/templates/{template}" in names, template
    for asset in ("openseadragon.min.js", "LICENSE-openseadragon.txt", "viewer.js", "viewer.css"):
        assert f"heritage_seg/reporting/viewer/static/{asset}" in names, asset  # no download at view time
