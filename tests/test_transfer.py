"""init_from=<checkpoint> (issue 26): fine-tuning a trained model on another collection with another label map."""

from __future__ import annotations

import json

import pytest
import torch

from heritage_seg.data.labels import LabelMap
from heritage_seg.data.sample import generate_sample
from heritage_seg.models.trained import load_model
from heritage_seg.tasks.train import train
from heritage_seg.training.build import build_training
from heritage_seg.training.transfer import head_conv
from tests.conftest import compose_config

MY_LABELS = """\
clean: Clean
ignore_index: 255
ignore_raw: [0]
classes:
  - {name: Clean, raw: 10, color: "#101010"}
  - {name: Ink stain, raw: 50, color: "#00FF00"}
  - {name: Cracks, raw: 200, color: "#FF0000"}
"""


@pytest.fixture(scope="module")
def my_collection(tmp_path_factory):
    """Another collection: three classes, two of them (Clean, Cracks) named as in the ARTeFACT map."""
    conf = tmp_path_factory.mktemp("my_conf")
    (conf / "labels").mkdir()
    (conf / "labels" / "my_labels.yaml").write_text(MY_LABELS)
    from omegaconf import OmegaConf

    labels = LabelMap.from_config(OmegaConf.load(conf / "labels" / "my_labels.yaml"))
    data = generate_sample(tmp_path_factory.mktemp("mine") / "data", labels, profile="thin", damage="Cracks")
    return conf, data


def _overrides(conf, data, run_dir, *extra):
    return [
        "experiment=sample",
        "debug=tiny",
        "encoder=convnext",
        f"hydra.searchpath=[file://{conf}]",
        "labels=my_labels",
        "data.sample.profile=thin",
        "data.sample.damage=Cracks",
        f"data.root={data}",
        f"run_dir={run_dir}",
        *extra,
    ]


def test_init_from_takes_encoder_decoder_and_the_head_rows_of_shared_class_names(trained_run, my_collection, tmp_path):
    conf, data = my_collection
    source = load_model(trained_run / "checkpoints" / "best.ckpt")
    cfg = compose_config(_overrides(conf, data, tmp_path, f"init_from={trained_run}/checkpoints/best.ckpt"))
    _, module, _ = build_training(cfg, LabelMap.from_config(cfg.labels))
    for part in ("encoder", "decoder"):
        mine, theirs = getattr(module.model, part).state_dict(), getattr(source.model, part).state_dict()
        assert all(torch.equal(mine[k], theirs[k]) for k in theirs), part
    head, origin = head_conv(module.model), head_conv(source.model)
    names = list(source.labels.names)
    for row, name in enumerate(["Clean", "Ink stain", "Cracks"]):
        if name in names:
            assert torch.equal(head.weight[row], origin.weight[names.index(name)]), name
            assert torch.equal(head.bias[row], origin.bias[names.index(name)]), name
        else:  # a class the source never had: its own fresh row
            assert not any(torch.equal(head.weight[row], origin.weight[i]) for i in range(len(names)))


def test_init_from_another_encoder_or_no_checkpoint_is_refused_naming_init_from(trained_run, my_collection, tmp_path):
    conf, data = my_collection
    ckpt = trained_run / "checkpoints" / "best.ckpt"
    cfg = compose_config(_overrides(conf, data, tmp_path, f"init_from={ckpt}", "encoder=resnet18"))
    with pytest.raises(ValueError, match=rf"init_from={ckpt}: trained with encoder tu-convnext_tiny, but this run"):
        build_training(cfg, LabelMap.from_config(cfg.labels))
    cfg = compose_config(_overrides(conf, data, tmp_path, f"init_from={tmp_path}/none.ckpt"))
    with pytest.raises(FileNotFoundError, match="none.ckpt"):
        build_training(cfg, LabelMap.from_config(cfg.labels))


@pytest.mark.slow
def test_a_frozen_encoder_does_not_move_and_metrics_say_what_the_run_started_from(trained_run, my_collection, tmp_path):
    conf, data = my_collection
    ckpt = trained_run / "checkpoints" / "best.ckpt"
    train(compose_config(_overrides(conf, data, tmp_path, f"init_from={ckpt}", "freeze_encoder_epochs=1")))
    source = load_model(ckpt)
    tuned = load_model(tmp_path / "checkpoints" / "last.ckpt")
    before, after = source.model.encoder.state_dict(), tuned.model.encoder.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "the frozen encoder (and its BatchNorm) moved"
    assert not all(
        torch.equal(a, b)
        for a, b in zip(source.model.decoder.state_dict().values(), tuned.model.decoder.state_dict().values())
    ), "the decoder must learn while the encoder is frozen"
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["started_from"] == f"init_from {ckpt}" and metrics["classes"] == ["Clean", "Ink stain", "Cracks"]
