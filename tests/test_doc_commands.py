"""Every `python -m heritage_seg.…` command of the README and the docs runs (issue 25): a renamed option or a
broken flow is caught here, not by a user. How commands are found and marked: tests/doc_commands.py; how they are
shrunk to tiny size on generated data: tests/doc_runner.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.doc_commands import MARKS, extract, pages, stray_commands


def test_every_command_in_the_docs_is_in_code_where_a_reader_sees_where_it_ends():
    stray = [line for page in pages() for line in stray_commands(page)]
    assert not stray, "commands outside code (indent the block, or put the command in `…`):\n" + "\n".join(stray)


def test_commands_are_read_as_a_reader_copies_them_and_a_mark_must_be_a_known_one(tmp_path):
    readme, _ = extract(REPO / "README.md")
    assert [c.text for c in readme][:2] == [
        "python -m heritage_seg.train experiment=quickstart",
        "python -m heritage_seg.download root=/data/artefact",
    ]
    assert readme[1].needs == {"artefact"}
    page = tmp_path / "page.md"
    page.write_text(
        "Some text with `python -m heritage_seg.train\nfold=1`<!-- needs: gpu --> in it.\n\n"
        "    python -m heritage_seg.train -m a=1,2 \\\n        b=3  # needs: slurm, gpu\n"
        "    python -m heritage_seg.aggregate runs=x  # a comment that marks nothing\n\n"
        '```yaml title="conf_of_mine/labels/x.yaml"\nclean: Intact\n```\n'
    )
    commands, files = extract(page)
    assert [(c.text, set(c.needs)) for c in commands] == [
        ("python -m heritage_seg.train fold=1", {"gpu"}),
        ("python -m heritage_seg.train -m a=1,2 b=3", {"slurm", "gpu"}),
        ("python -m heritage_seg.aggregate runs=x", set()),
    ]
    assert files == {"conf_of_mine/labels/x.yaml": "clean: Intact\n"}
    # a Python snippet that imports the package is run whole; other Python is only shown
    page.write_text("```python\nfrom heritage_seg import Segmenter\nx = 1\n```\n\n```python\nprint(2)\n```\n")
    (snippet,) = extract(page)[0]
    assert snippet.python and snippet.text == "from heritage_seg import Segmenter\nx = 1\n"
    page.write_text("    python -m heritage_seg.train  # needs: tpu\n")
    with pytest.raises(ValueError, match=r"page.md:1: unknown mark.*tpu.*known: \['artefact', 'gpu', 'slurm'\]"):
        extract(page)
    assert MARKS == {"artefact", "gpu", "slurm"}
    page.write_text("Text.\n\npython -m heritage_seg.train fold=1\n    python -m heritage_seg.train fold=2\n")
    assert [line.split(": ", 1)[0] for line in stray_commands(page)] == [f"{page}:3", f"{page}:4"]


@pytest.mark.slow
def test_every_command_of_the_readme_and_the_docs_runs_at_tiny_size(tmp_path, cluster):
    """The docs' commands one after another at tiny size, then a page of two that must fail: a renamed option and
    a flow that points at a checkpoint no command made."""
    broken = tmp_path / "broken.md"
    broken.write_text(
        "    python -m heritage_seg.train encoder=no_such_encoder\n"
        "    python -m heritage_seg.evaluate ckpt=outputs/<date>/<time>/checkpoints/none.ckpt\n"
    )
    out = tmp_path / "result.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "tests.doc_runner", "--work", str(tmp_path / "work"), "--out", str(out), str(broken)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=2400,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads(out.read_text())
    print("\n".join(f"{r['status']:8} {r.get('seconds', ''):>6} {r['source']}: {r['command']}" for r in results))
    ours = [r for r in results if not r["source"].startswith(str(broken))]
    failed = [r for r in ours if r["status"] == "failed"]
    assert not failed, "\n\n".join(f"{r['source']}: {r['command']}\n{r['why']}\n{r.get('log', '')}" for r in failed)
    assert all(r["why"].startswith("needs ") for r in ours if r["status"] == "skipped")
    ran = [r for r in ours if r["status"] == "passed"]
    assert len(ran) >= 20, "fewer commands ran than the docs hold: is the extraction broken?"
    renamed, dangling = [r for r in results if r["source"].startswith(str(broken))]
    assert renamed["status"] == "failed" and "no_such_encoder" in renamed["log"]
    assert dangling["status"] == "failed" and "none.ckpt" in dangling["log"]
