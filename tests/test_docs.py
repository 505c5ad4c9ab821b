"""The landing page stays a landing page, its links lead somewhere, and the option reference is the configs'."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.conftest import REPO


def test_the_readme_is_short_and_every_link_in_it_resolves():
    readme = (REPO / "README.md").read_text()
    assert len(readme.encode()) <= 12 * 1024, "the README is a landing page: the rest belongs in docs/"
    links = [target for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme) if "://" not in target]
    assert links, "the README links to the documentation"
    missing = [target for target in links if not (REPO / target).exists()]
    assert not missing, f"README links to files that do not exist: {missing}"
    for command in ("pip install -c constraints.txt -e '.[dev]'", "python -m heritage_seg.train experiment=quickstart"):
        assert command in readme


def test_the_option_reference_lists_the_configs_as_they_are(spawns):
    proc = subprocess.run(
        [sys.executable, "tools/config_reference.py", "--check"], cwd=REPO, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr + "\n(run python tools/config_reference.py)"
    page = (REPO / "docs" / "reference" / "options.md").read_text()
    for option in (
        "`data.root`",
        "`encoder.weights`",
        "`loss.class_weighting`",
        "`augment.batch.hflip`",
        "`tta`",
        "`scale`",
        "`min_argmax_agreement`",
        "`lr_find.num_training`",
        "`resume`",
    ):
        assert option in page, option
