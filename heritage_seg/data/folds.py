"""K-fold over SOURCE images, stratified by each source's rarest class, seeded.

Earlier work split offline-augmented copies at random and validated on flipped copies of training images.
Here every copy/tile of a source lands in the same fold. Class presence is read at the source resolution
(cache.PreparedData.class_presence), so folds do not move with the image size. Folds depend only on the data,
`n_folds` and `seed` (never on the encoder), so every encoder is compared on identical folds.
Written by hand: sklearn's StratifiedGroupKFold would do, but sklearn is not a dependency.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)
SPLITS = ("source", "material", "content")  # K-fold over source images, or leave one material / content out
DEFAULT_SPLIT = "source"


@dataclass(frozen=True)
class FoldSplit:
    fold: int
    n_folds: int
    seed: int
    train_idx: np.ndarray
    val_idx: np.ndarray
    fold_of_sample: np.ndarray  # fold index of every sample
    strata: dict[str, int]  # source id -> stratum class id (-1: no class present)
    split: str = DEFAULT_SPLIT  # one of SPLITS
    held_out: str | None = None  # split=material/content: the group this fold validates on
    groups: tuple[str, ...] = ()  # split=material/content: every group, in fold order
    train_fraction: float = 1.0  # data.train_fraction: the share of the training sources kept


def assign_folds(source_ids: list[str], presence: np.ndarray, n_folds: int, seed: int) -> tuple[np.ndarray, dict]:
    """Fold index per sample. `presence` is (N, C) bool: which classes occur in each sample."""
    sources = sorted(set(source_ids))
    if len(sources) < n_folds:
        raise ValueError(
            f"n_folds={n_folds}: the data set has only {len(sources)} source image(s); "
            f"it needs at least {n_folds} (lower n_folds or add data)"
        )
    members: dict[str, list[int]] = {s: [] for s in sources}
    for i, s in enumerate(source_ids):
        members[s].append(i)
    group_presence = {s: presence[members[s]].any(axis=0) for s in sources}
    # Rarity = in how many source images a class occurs; a source is stratified by its rarest class.
    images_with_class = np.sum([group_presence[s] for s in sources], axis=0)
    strata = {}
    for s in sources:
        present = np.flatnonzero(group_presence[s])
        strata[s] = int(present[np.argmin(images_with_class[present])]) if present.size else -1

    rng = np.random.default_rng(seed)
    per_fold_stratum = np.zeros((n_folds, presence.shape[1] + 1), dtype=np.int64)
    per_fold_total = np.zeros(n_folds, dtype=np.int64)
    group_fold: dict[str, int] = {}
    # Rarest strata first, so the scarce images are spread before the common ones fill the folds.
    order = sorted(set(strata.values()), key=lambda c: (images_with_class[c] if c >= 0 else np.inf, c))
    for stratum in order:
        groups = [s for s in sources if strata[s] == stratum]
        for s in (groups[i] for i in rng.permutation(len(groups))):
            col = stratum + 1
            # fewest of this stratum, then fewest samples, then a seeded random tie-break
            keys = np.lexsort((rng.random(n_folds), per_fold_total, per_fold_stratum[:, col]))
            fold = int(keys[0])
            group_fold[s] = fold
            per_fold_stratum[fold, col] += 1
            per_fold_total[fold] += len(members[s])
    fold_of_sample = np.array([group_fold[s] for s in source_ids], dtype=np.int64)
    return fold_of_sample, strata


def check_split_kind(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(
            f"split={split}: choose source (K-fold over source images), material or content "
            "(leave one material / content type out)"
        )


def choose_split(
    source_ids: list[str],
    presence: np.ndarray,
    split: str,
    fold: int,
    n_folds: int,
    seed: int,
    train_fraction: float = 1.0,
    group_of_sample: list[str] | None = None,
) -> FoldSplit:
    """A run's fold of a cached data set: K-fold over sources (split=source) or one material / content type left
    out (`group_of_sample`: each image's), then `train_fraction` of the training sources kept; logged."""
    check_split_kind(split)
    if split == "source":
        chosen = make_split(source_ids, presence, fold, n_folds, seed)
    else:
        chosen = leave_one_group_out(source_ids, list(group_of_sample or []), fold, split)
        log.info(
            "split=%s: fold %d holds out '%s' (%d groups: %s)",
            split,
            fold,
            chosen.held_out,
            len(chosen.groups),
            ", ".join(chosen.groups),
        )
    chosen = keep_training_fraction(chosen, source_ids, train_fraction, seed)
    share = f", {train_fraction:.0%} of its training sources" if train_fraction < 1 else ""
    log.info(
        "fold %d/%d: %d train / %d val images (%d / %d sources)%s",
        fold,
        n_folds,
        len(chosen.train_idx),
        len(chosen.val_idx),
        len({source_ids[i] for i in chosen.train_idx}),
        len({source_ids[i] for i in chosen.val_idx}),
        share,
    )
    return chosen


def check_fold(fold: int, n_folds: int) -> None:
    if not isinstance(n_folds, int) or n_folds < 2:
        raise ValueError(f"n_folds={n_folds}: K-fold needs an integer n_folds >= 2")
    if not isinstance(fold, int) or not 0 <= fold < n_folds:
        raise ValueError(f"fold={fold}: must be an integer in [0, n_folds) = [0, {n_folds})")


def make_split(source_ids: list[str], presence: np.ndarray, fold: int, n_folds: int, seed: int) -> FoldSplit:
    check_fold(fold, n_folds)
    fold_of_sample, strata = assign_folds(source_ids, presence, n_folds, seed)
    val_idx = np.flatnonzero(fold_of_sample == fold)
    train_idx = np.flatnonzero(fold_of_sample != fold)
    if val_idx.size == 0 or train_idx.size == 0:
        raise ValueError(f"fold={fold} of n_folds={n_folds}: empty split; lower n_folds")
    return FoldSplit(fold, n_folds, seed, train_idx, val_idx, fold_of_sample, strata)


def leave_one_group_out(source_ids: list[str], group_of_sample: list[str], fold: int, split: str) -> FoldSplit:
    """Fold k validates on the k-th group (material or content type, sorted by name) and trains on the rest.

    A source image's group is its own metadata's, so all its copies sit on one side. Every group is its own fold
    (no merging of small groups): `n_folds` is the number of groups.
    """
    group_of_source: dict[str, str] = {}
    for source, group in zip(source_ids, group_of_sample):
        if group_of_source.setdefault(source, group) != group:
            raise ValueError(
                f"split={split}: source image '{source}' has copies in two groups "
                f"('{group_of_source[source]}', '{group}'); fix metadata.csv"
            )
    groups = tuple(sorted(set(group_of_source.values())))
    if len(groups) < 2:
        raise ValueError(
            f"split={split}: the data set has only {len(groups)} {split} group(s) {list(groups)}; "
            "leave-one-group-out needs at least 2"
        )
    if not isinstance(fold, int) or not 0 <= fold < len(groups):
        raise ValueError(
            f"fold={fold}: split={split} has {len(groups)} groups {list(groups)}, so fold must be in [0, {len(groups)})"
        )
    fold_of_sample = np.array([groups.index(group_of_source[s]) for s in source_ids], dtype=np.int64)
    return FoldSplit(
        fold,
        len(groups),
        -1,
        np.flatnonzero(fold_of_sample != fold),
        np.flatnonzero(fold_of_sample == fold),
        fold_of_sample,
        {},
        split,
        groups[fold],
        groups,
    )


def keep_training_fraction(split: FoldSplit, source_ids: list[str], fraction: float, seed: int) -> FoldSplit:
    """The fold with only `fraction` of its training source images (with their _augN copies), the validation images
    unchanged: a learning curve over the number of annotations. The sources kept are the first of one seeded order,
    so a smaller fraction's are a subset of a larger one's; at least one source is kept."""
    if not 0 < fraction <= 1:
        raise ValueError(f"data.train_fraction={fraction}: must be in (0, 1]")
    if fraction == 1:
        return split
    sources = sorted({source_ids[i] for i in split.train_idx})
    order = np.random.default_rng(seed).permutation(len(sources))
    kept = {sources[i] for i in order[: max(1, math.ceil(fraction * len(sources)))]}
    train_idx = np.asarray([i for i in split.train_idx if source_ids[i] in kept], dtype=split.train_idx.dtype)
    return dataclasses.replace(split, train_idx=train_idx, train_fraction=fraction)


def splits_payload(split: FoldSplit, ids: list[str], source_ids: list[str], extra: dict) -> dict:
    """What `splits.json` in the run folder holds (heritage_seg.runs.records.SplitsRecord writes it): the contract
    later tools read instead of re-deriving folds."""
    payload = {
        "fold": split.fold,
        "n_folds": split.n_folds,
        "seed": split.seed,
        "split": split.split,
        "held_out": split.held_out,
        "groups": list(split.groups),
        "train_fraction": split.train_fraction,
        "train_ids": [ids[i] for i in split.train_idx],
        "val_ids": [ids[i] for i in split.val_idx],
        "train_sources": sorted({source_ids[i] for i in split.train_idx}),
        "val_sources": sorted({source_ids[i] for i in split.val_idx}),
        "stratum_of_source": split.strata,
        **extra,
    }
    return payload
