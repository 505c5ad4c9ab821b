"""Folds never leak a source image, partition the data, are reproducible, and spread rare classes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from heritage_seg.core.protocol import Protocol
from heritage_seg.data.cache import build_cache, load_cache
from heritage_seg.data.folds import assign_folds, make_split
from heritage_seg.data.labels import LabelMap
from heritage_seg.data.readers import open_reader
from tests.conftest import compose_config


def _toy(n_sources=30, n_classes=6, seed=0):
    rng = np.random.default_rng(seed)
    source_ids, presence = [], []
    for s in range(n_sources):
        row = np.zeros(n_classes, bool)
        row[0] = True
        row[rng.integers(1, n_classes - 1)] = True
        for _copy in range(1 + (s % 3 == 0)):  # every third source also has an _aug1 copy
            source_ids.append(f"src{s}")
            presence.append(row)
    presence = np.array(presence)
    return source_ids, presence


def test_no_source_on_both_sides_and_folds_partition_the_samples():
    source_ids, presence = _toy()
    seen_val = []
    for fold in range(3):
        split = make_split(source_ids, presence, fold, 3, seed=42)
        train_src = {source_ids[i] for i in split.train_idx}
        val_src = {source_ids[i] for i in split.val_idx}
        assert not train_src & val_src
        assert sorted(np.concatenate([split.train_idx, split.val_idx])) == list(range(len(source_ids)))
        seen_val.extend(split.val_idx.tolist())
    assert sorted(seen_val) == list(range(len(source_ids))), "each sample is validated exactly once"


def test_folds_are_reproducible_and_change_with_the_seed():
    source_ids, presence = _toy()
    a, _ = assign_folds(source_ids, presence, 3, seed=42)
    b, _ = assign_folds(source_ids, presence, 3, seed=42)
    c, _ = assign_folds(source_ids, presence, 3, seed=7)
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()


def test_rare_classes_are_spread_over_the_folds():
    source_ids, presence = _toy(n_sources=30, n_classes=6)
    rare = np.zeros((len(source_ids), 1), bool)
    rare_sources = ["src1", "src5", "src10", "src20", "src25", "src29"]  # 6 images with the rare class
    for i, s in enumerate(source_ids):
        rare[i] = s in rare_sources
        if rare[i]:
            presence[i, 1:] = False  # Clean + the rare class only
    presence = np.concatenate([presence, rare], axis=1)
    for seed in range(5):
        folds, strata = assign_folds(source_ids, presence, 3, seed=seed)
        per_fold = [len({s for s, f in zip(source_ids, folds) if f == k and s in rare_sources}) for k in range(3)]
        assert per_fold == [2, 2, 2], f"seed {seed}: rare class spread {per_fold}"
        assert all(strata[s] == 6 for s in rare_sources)


def test_balanced_fold_sizes():
    source_ids, presence = _toy(n_sources=60)
    folds, _ = assign_folds(source_ids, presence, 3, seed=1)
    sizes = np.bincount(folds)
    assert sizes.max() - sizes.min() <= 3


@pytest.mark.parametrize("fold", [-1, 3, 7])
def test_fold_out_of_range_is_refused(fold):
    source_ids, presence = _toy()
    with pytest.raises(ValueError, match=rf"fold={fold}: must be an integer in \[0, n_folds\) = \[0, 3\)"):
        make_split(source_ids, presence, fold, 3, seed=0)


def test_data_set_too_small_for_n_folds():
    source_ids, presence = _toy(n_sources=2)
    with pytest.raises(ValueError, match="only 2 source image"):
        make_split(source_ids, presence, 0, 3, seed=0)


def test_leave_one_material_out_holds_exactly_one_material_and_none_of_its_sources_in_training(
    sample_root, labels, tmp_path
):
    from heritage_seg.data.folds import leave_one_group_out

    data = load_cache(build_cache(open_reader(sample_root), Protocol("squash", 64), labels, tmp_path))
    sources = [r.source_id for r in data.records]
    materials = [r.material for r in data.records]
    groups = sorted(set(materials))
    assert len(groups) == 6
    for fold in range(len(groups)):
        split = leave_one_group_out(sources, materials, fold, "material")
        assert {materials[i] for i in split.val_idx} == {groups[fold]} == {split.held_out}
        assert groups[fold] not in {materials[i] for i in split.train_idx}
        assert not {sources[i] for i in split.val_idx} & {sources[i] for i in split.train_idx}
        assert split.n_folds == 6
    with pytest.raises(ValueError, match=r"fold=6: split=material has 6 groups"):
        leave_one_group_out(sources, materials, 6, "material")


def test_folds_do_not_move_with_the_image_size(sample_root, labels, tmp_path):
    """Class presence is read at the source resolution: thin damage that the 32 px cache loses keeps its fold."""
    splits = {}
    for size in (32, 128):
        data = load_cache(build_cache(open_reader(sample_root), Protocol("squash", size), labels, tmp_path))
        sources = [r.source_id for r in data.records]
        splits[size] = [
            make_split(sources, data.class_presence(labels.num_classes), f, 3, 42).val_idx.tolist() for f in range(3)
        ]
        if size == 32:  # the premise: at 32 px some masks lose a class they hold at full resolution
            resized = np.stack([np.bincount(m.reshape(-1), minlength=256)[:16] > 0 for m in data.masks])
            assert (resized != data.class_presence(labels.num_classes)).any()
    assert splits[32] == splits[128]


@pytest.mark.parametrize("split,attribute,n_groups", [("material", "material", 6), ("content", "content", 4)])
def test_the_datamodule_holds_out_one_metadata_group_per_fold(
    split, attribute, n_groups, sample_root, labels, tmp_path
):
    """split=material|content through the real datamodule: fold k validates on the k-th group by name."""
    from heritage_seg.data.build import build_datamodule
    from tests.conftest import compose_config, tiny_train_overrides

    seen = set()
    for fold in (0, n_groups - 1):
        cfg = compose_config(
            tiny_train_overrides(tmp_path, sample_root)
            + [f"split={split}", f"fold={fold}", f"data.cache_dir={tmp_path / 'cache'}"]
        )
        datamodule = build_datamodule(cfg, labels)
        datamodule.setup("fit")
        records = datamodule.data.records
        held_out = {getattr(records[i], attribute) for i in datamodule.split.val_idx}
        trained_on = {getattr(records[i], attribute) for i in datamodule.split.train_idx}
        assert held_out == {datamodule.split.held_out} and datamodule.split.held_out not in trained_on
        assert datamodule.split.n_folds == n_groups == len(trained_on) + 1
        seen.add(datamodule.split.held_out)
    assert len(seen) == 2


def test_a_training_fraction_keeps_nested_shares_of_the_training_sources_and_the_validation_fold():
    """data.train_fraction (issue 26's learning curves): a seeded share of the training sources with their _augN
    copies; 10 % of them within 25 %, within 50 %; the validation images untouched."""
    from heritage_seg.data.folds import keep_training_fraction

    sources = [f"s{i}" for i in range(40) for _ in (0, 1)]  # every source with one augmented copy
    split = make_split(sources, np.zeros((80, 2), bool), 0, 4, seed=3)
    kept = {f: keep_training_fraction(split, sources, f, seed=3) for f in (0.1, 0.25, 0.5, 1.0)}
    train_sources = {f: {sources[i] for i in k.train_idx} for f, k in kept.items()}
    assert [len(train_sources[f]) for f in (0.1, 0.25, 0.5, 1.0)] == [3, 8, 15, 30]
    assert train_sources[0.1] < train_sources[0.25] < train_sources[0.5] < train_sources[1.0]
    for k in kept.values():
        assert np.array_equal(k.val_idx, split.val_idx)
        assert all(sources.count(s) == 2 for s in {sources[i] for i in k.train_idx})
        assert len(k.train_idx) == 2 * len({sources[i] for i in k.train_idx}), "an augmented copy lost its source"
    assert kept[1.0] is split and kept[0.1].train_fraction == 0.1
    assert len(keep_training_fraction(split, sources, 0.001, seed=3).train_idx) == 2  # at least one source
    with pytest.raises(ValueError, match=r"data.train_fraction=0: must be in \(0, 1\]"):
        keep_training_fraction(split, sources, 0, seed=3)


def test_a_run_on_a_fraction_records_it_and_validates_on_the_same_images(sample_root):
    from heritage_seg.data.build import build_datamodule

    def record(*extra):
        cfg = compose_config(["experiment=sample", "debug=tiny", f"data.root={sample_root}", "run_dir=.", *extra])
        datamodule = build_datamodule(cfg, LabelMap.from_config(cfg.labels))
        datamodule.setup("fit")
        return datamodule.splits_record()

    full, quarter = record(), record("data.train_fraction=0.25")
    assert quarter["train_fraction"] == 0.25 and full["train_fraction"] == 1.0
    assert quarter["val_ids"] == full["val_ids"]
    assert set(quarter["train_ids"]) < set(full["train_ids"])
    assert len(quarter["train_sources"]) == math.ceil(0.25 * len(full["train_sources"]))
