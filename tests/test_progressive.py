"""data.progressive (issue 28): training sizes grow by stage, validation stays at the run's final size, the
OneCycle schedule spans every stage, a resumed run lands in its stage, and the checkpoint records the final
protocol so evaluate needs nothing new."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from heritage_seg.core.protocol import Protocol
from heritage_seg.data.progressive import Stage, check, parse_stages, stage_at
from heritage_seg.tasks.aggregate import aggregate
from heritage_seg.tasks.evaluate import evaluate
from heritage_seg.tasks.train import train
from tests.conftest import compose_config, tiny_train_overrides
from tests.helpers import RecordSizes, SimulatedPreemption, fake_run

PROBE = ["+callbacks.sizes._target_=tests.helpers.RecordSizes"]


def test_stages_are_read_checked_and_found_by_epoch():
    stages = parse_stages([[256, 10], [384, 20], [512, 20]])
    assert stages == (Stage(256, 10, 0), Stage(384, 20, 10), Stage(512, 20, 30))
    assert [stage_at(stages, e).size for e in (0, 9, 10, 29, 30, 49, 60)] == [256, 256, 384, 384, 512, 512, 512]
    assert parse_stages(None) == ()
    for bad, message in (
        ([[250, 10]], r"stage \[250, 10\]: data.image_size=250: must be a multiple of 32"),
        ([[256, 0]], r"stage \[256, 0\] needs an integer size >= 32 px and epochs >= 1"),
        ([256, 10], r"stage 256 must be \[size, epochs\]"),
        ([], r"give \[\[size, epochs\], ...\]"),
    ):
        with pytest.raises(ValueError, match=r"data.progressive.*" + message):
            parse_stages(bad)


def test_the_run_config_must_say_the_last_stage_and_the_total_and_nothing_rewrites_it():
    # issue 36: the composed config is what runs; a contradiction is refused naming what to add, not fixed up
    cfg = compose_config(["experiment=sample", "data.progressive=[[64,3],[128,5]]", "trainer.max_epochs=2"])
    composed = OmegaConf.to_yaml(cfg)
    with pytest.raises(
        ValueError,
        match=r"after 8 epochs in all, but the run says trainer.max_epochs=2: .*add trainer.max_epochs=8$",
    ):
        check(cfg)
    assert OmegaConf.to_yaml(cfg) == composed, "the config is left as composed"
    with pytest.raises(
        ValueError,
        match=r"says data.image_size=64 and trainer.max_epochs=2: .*add data.image_size=128 trainer.max_epochs=8$",
    ):
        check(
            compose_config(
                ["experiment=sample", "data.image_size=64", "data.progressive=[[64,3],[128,5]]", "trainer.max_epochs=2"]
            )
        )
    fine = ["experiment=sample", "data.progressive=[[64,3],[128,5]]", "trainer.max_epochs=8"]
    assert [s.size for s in check(compose_config(fine))] == [64, 128]
    cfg = compose_config(["encoder=maxvit", "data.progressive=[[256,3],[384,5]]", "trainer.max_epochs=8"])
    with pytest.raises(ValueError, match=r"built for one input size \(encoder.kwargs.img_size=384\)"):
        check(cfg)
    # a stage's size is checked by the run's protocol, as data.image_size is: a crop no larger than data.max_side
    crops = ["data=artefact_crops", "data.max_side=256", "data.image_size=256", "trainer.max_epochs=8"]
    cfg = compose_config([*crops, "data.progressive=[[384,3],[256,5]]"])
    with pytest.raises(ValueError, match=r"stage \[384, 3\]: data.max_side=256 is smaller than the crop size"):
        check(cfg)
    with pytest.raises(ValueError, match=r"stage \[96, 1\]: data.max_side=64 is smaller"):
        parse_stages([[96, 1]], Protocol("longest_side", 64, 64))


@pytest.mark.slow
def test_a_progressive_run_trains_each_stage_validates_at_the_final_size_and_resumes_in_its_stage(
    tmp_path, sample_root
):
    run = tmp_path / "run"
    overrides = tiny_train_overrides(run, sample_root, "resnet18") + [
        "data.progressive=[[32,2],[64,2]]",
        "trainer.max_epochs=4",
        *PROBE,
    ]
    RecordSizes.seen.clear()
    stop = ["+callbacks.stop._target_=tests.helpers.StopAfterEpoch", "+callbacks.stop.epochs=3"]
    with pytest.raises(SimulatedPreemption):
        train(compose_config(overrides + stop))
    assert [s for s in RecordSizes.seen if s[0] == "train"] == [("train", 0, 32), ("train", 1, 32), ("train", 2, 64)]
    assert {side for kind, _, side in RecordSizes.seen if kind == "val"} == {64}, "validation at the final size"

    RecordSizes.seen.clear()
    train(compose_config(overrides + ["resume=true"]))
    assert [s for s in RecordSizes.seen if s[0] == "train"] == [("train", 3, 64)], "the resumed epoch's stage"
    last = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    scheduler = last["lr_schedulers"][0]
    assert scheduler["total_steps"] == 8 and scheduler["last_epoch"] == 8, "one OneCycle over both stages"
    assert last["hyper_parameters"]["protocol"] == {"resize": "squash", "image_size": 64}
    config = OmegaConf.load(run / ".hydra" / "config.yaml")
    assert config.data.image_size == 64 and config.trainer.max_epochs == 4

    result = evaluate(compose_config([f"ckpt={run / 'checkpoints' / 'best.ckpt'}"], "evaluate"), tmp_path / "ev")
    assert result["image_size"] == 64


@pytest.mark.slow
def test_the_crop_protocol_grows_its_crops(tmp_path, sample_root):
    overrides = tiny_train_overrides(tmp_path / "run", sample_root, "resnet18") + [
        "data.resize=longest_side",
        "data.max_side=128",
        "data.progressive=[[32,1],[64,1]]",
        "trainer.max_epochs=2",
        *PROBE,
    ]
    RecordSizes.seen.clear()
    train(compose_config(overrides))
    assert [s for s in RecordSizes.seen if s[0] == "train"] == [("train", 0, 32), ("train", 1, 64)]


def test_the_ablation_preset_compares_with_a_fixed_size_and_aggregate_pairs_the_rows(tmp_path):
    cfg = compose_config(["ablation=progressive"], return_hydra_config=True)
    assert dict(cfg.hydra.sweeper.params) == {"data.progressive": "null,[[256,20],[384,30]]", "fold": "0,1,2"}
    assert cfg.data.image_size == 384 and cfg.trainer.max_epochs == 50, "both arms: 384 px, 50 epochs"
    for setting, values in {"null": [0.40, 0.50, 0.60], "[[256,20],[384,30]]": [0.42, 0.49, 0.66]}.items():
        for fold, miou in enumerate(values):
            overrides = ["ablation=progressive", f"data.progressive={setting}"]
            fake_run(tmp_path, f"{setting}-{fold}", overrides, fold, miou)
    summary = aggregate([tmp_path])
    rows = {g["label"]: g for g in summary["groups"].values()}
    assert set(rows) == {"data.progressive=null", "+Progressive (256 px × 20 → 384 px × 30)"}
    assert summary["groups"][summary["baseline"]]["label"] == "data.progressive=null", "the default: one size"
    assert rows["+Progressive (256 px × 20 → 384 px × 30)"]["vs_baseline"]["per_fold"] == pytest.approx(
        [0.02, -0.01, 0.06]
    )
