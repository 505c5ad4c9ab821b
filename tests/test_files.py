"""Atomic writes: a crash leaves the earlier file/folder or nothing, never half of one."""

from __future__ import annotations

import json

import numpy as np
import pytest

from heritage_seg.core import files
from heritage_seg.core.files import atomic_folder, save_image, write_json_atomic


def test_failed_folder_build_leaves_nothing_behind(tmp_path):
    target = tmp_path / "cache"
    with pytest.raises(RuntimeError):
        with atomic_folder(target) as tmp:
            (tmp / "images.npy").write_bytes(b"half")
            raise RuntimeError("crash while building")
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_folder_appears_complete_and_replaces_an_empty_one(tmp_path):
    target = tmp_path / "sample"
    target.mkdir()
    with atomic_folder(target) as tmp:
        (tmp / "sample.json").write_text("{}")
        assert not (target / "sample.json").exists()  # not visible before the block ends
    assert (target / "sample.json").read_text() == "{}"
    assert [p.name for p in tmp_path.iterdir()] == ["sample"]


def test_a_folder_finished_first_by_another_process_is_kept(tmp_path):
    target = tmp_path / "cache"
    with atomic_folder(target) as tmp:
        (tmp / "meta.json").write_text("ours")
        target.mkdir()
        (target / "meta.json").write_text("theirs")
    assert (target / "meta.json").read_text() == "theirs"
    assert [p.name for p in tmp_path.iterdir()] == ["cache"]


def test_failed_json_write_keeps_the_earlier_file(tmp_path):
    path = tmp_path / "metrics.json"
    write_json_atomic(path, {"miou": 0.5})
    with pytest.raises(ValueError):
        write_json_atomic(path, {"miou": float("nan")})  # NaN refused: undefined metrics are null
    assert json.loads(path.read_text()) == {"miou": 0.5}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_save_image_names_unsupported_suffix(tmp_path):
    with pytest.raises(ValueError, match="mask.tif"):
        save_image(tmp_path / "mask.tif", np.zeros((4, 4), np.uint8))
    save_image(tmp_path / "mask.png", np.zeros((4, 4), np.uint8))
    assert [p.name for p in tmp_path.iterdir()] == ["mask.png"]


def test_outputs_get_the_users_usual_permissions_not_private_temp_ones(tmp_path, monkeypatch):
    """tempfile makes 0600 files and 0700 folders: results and the data cache would be unreadable to colleagues
    sharing a project folder on a cluster."""
    monkeypatch.setattr(files, "UMASK", 0o022)
    files.write_json_atomic(tmp_path / "metrics.json", {"miou": 0.5})
    files.save_image(tmp_path / "mask.png", np.zeros((4, 4), np.uint8))
    with files.atomic_folder(tmp_path / "cache") as tmp:
        (tmp / "meta.json").write_text("{}")
    assert (tmp_path / "metrics.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "mask.png").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "cache").stat().st_mode & 0o777 == 0o755
