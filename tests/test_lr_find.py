"""The learning-rate range test writes its curve, plot and suggestion."""

from __future__ import annotations

import pytest

from tests.conftest import compose_config, tiny_train_overrides


@pytest.mark.slow
def test_lr_finder_writes_its_plot_and_suggestion(tmp_path, sample_root):
    import json

    from PIL import Image

    from heritage_seg.tasks.lr_find import lr_find

    overrides = tiny_train_overrides(tmp_path, sample_root) + [
        "trainer.limit_train_batches=null",
        "trainer.limit_val_batches=null",
    ]
    suggestion = lr_find(compose_config(overrides + ["lr_find.num_training=20"], config_name="lr_find"))
    record = json.loads((tmp_path / "lr_find.json").read_text())
    assert suggestion is not None and 1e-7 <= suggestion <= 1.0 and record["suggested_lr"] == suggestion
    assert len(record["lr"]) == len(record["loss"]) >= 12 and record["lr"] == sorted(record["lr"])
    with Image.open(tmp_path / "lr_find.png") as img:
        img.verify()
