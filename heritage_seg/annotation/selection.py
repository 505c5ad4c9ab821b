"""Which unannotated scans to annotate next: uncertain ones that are also unlike what is annotated or chosen.

Pure uncertainty picks near-duplicates (twenty photographs of the same damaged corner are all uncertain), pure
diversity picks outliers the model already handles. The rule here is a greedy k-center step weighted by
uncertainty, in the spirit of core-set selection (Sener & Savarese 2018) and its uncertainty-weighted variants:

    score(scan) = uncertainty(scan) x (distance to the nearest annotated or already chosen scan / 2) ** diversity

with `uncertainty` the scan's mean disagreement of the views (inference/uncertainty.py, 0..1) and distances
between the encoder's pooled features, L2-normalised (0..2). After each pick the chosen scan joins the covered
set, so its near-duplicates drop to a score near 0. `diversity=0` is uncertainty alone (the ablation's rule);
with nothing annotated the first pick is the most uncertain scan.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from heritage_seg.inference.segmenter import normalised


@dataclass(frozen=True)
class Pick:
    rank: int  # 1 = annotate first
    index: int  # into the candidates
    score: float
    uncertainty: float
    distance: float  # to the nearest covered scan when picked (features L2-normalised: 0..2); 2 with none
    nearest: int | None  # that scan: -1 - k for the k-th annotated one, else the index of a chosen candidate


def select_scans(
    uncertainty: np.ndarray, features: np.ndarray, covered: np.ndarray | None, budget: int, diversity: float = 1.0
) -> list[Pick]:
    """Up to `budget` candidates in the order to annotate them. `uncertainty` (n,), `features` (n, d) of the
    candidates, `covered` (m, d) of the scans annotated already (or None)."""
    if budget < 1:
        raise ValueError(f"budget={budget}: choose at least one scan")
    if diversity < 0:
        raise ValueError(f"diversity={diversity}: 0 (uncertainty alone) or more")
    uncertainty = np.asarray(uncertainty, dtype=np.float64)
    feats = normalised(features)
    nearest_distance = np.full(len(feats), 2.0)
    nearest = np.full(len(feats), -(10**9), dtype=np.int64)  # none yet
    if covered is not None and len(covered):
        distances = np.linalg.norm(feats[:, None, :] - normalised(covered)[None, :, :], axis=2)
        nearest_distance = distances.min(axis=1)
        nearest = -1 - distances.argmin(axis=1)
    available = np.ones(len(feats), dtype=bool)
    picks: list[Pick] = []
    for rank in range(1, min(budget, len(feats)) + 1):
        score = uncertainty * (nearest_distance / 2.0) ** diversity
        score = np.where(available, score, -np.inf)
        best = int(np.argmax(score))  # ties: the earlier candidate (sorted file names)
        picks.append(
            Pick(
                rank,
                best,
                float(score[best]),
                float(uncertainty[best]),
                float(nearest_distance[best]),
                None if nearest[best] == -(10**9) else int(nearest[best]),
            )
        )
        available[best] = False
        to_best = np.linalg.norm(feats - feats[best], axis=1)
        closer = to_best < nearest_distance
        nearest_distance = np.where(closer, to_best, nearest_distance)
        nearest = np.where(closer, best, nearest)
    return picks
