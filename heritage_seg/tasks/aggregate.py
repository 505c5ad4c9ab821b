"""What `python -m heritage_seg.aggregate` does, as a function of its composed config (tests and benchmarks
call it directly). Cross-validation summary of a sweep:
    python -m heritage_seg.aggregate runs=multirun/2026-11-24/10-00-00

Runs are grouped by every override except `fold` and the bookkeeping ones (heritage_seg/runs/folder.py), so an
encoder sweep and an ablation sweep (loss=…, loss.class_weighting=…) are summarised the same way. Because all
groups share the same folds, the honest comparison is the PAIRED per-fold difference between groups, reported
beside the mean ± std (heritage_seg/study/: runs, statistics, tables and chart)."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from heritage_seg.core.files import write_json_atomic, write_text_atomic
from heritage_seg.runs.folder import CV_COMPARISON_PNG, CV_RESULTS_JSON, CV_RESULTS_MD, CV_RESULTS_TEX, STUDY_HTML
from heritage_seg.study.compare import comparison_viewers
from heritage_seg.study.page import study_html
from heritage_seg.study.render import plot_comparison, to_latex, to_markdown
from heritage_seg.study.runs import find_runs
from heritage_seg.study.stats import summarise

log = logging.getLogger(__name__)


def aggregate(
    paths: Sequence[str | Path], out_dir: str | Path | None = None, baseline: str | None = None, viewer: bool = True
) -> dict[str, Any]:
    paths = [Path(p) for p in paths]
    runs = find_runs(paths)
    out = (
        Path(out_dir)
        if out_dir
        else (paths[0] if len(paths) == 1 else Path(os.path.commonpath([str(p) for p in paths])))
    )
    summary = summarise(runs, baseline)
    write_json_atomic(out / CV_RESULTS_JSON, summary)
    markdown = to_markdown(summary)
    write_text_atomic(out / CV_RESULTS_MD, markdown)
    write_text_atomic(out / CV_RESULTS_TEX, to_latex(summary))
    plot_comparison(summary, out / CV_COMPARISON_PNG)
    comparisons = comparison_viewers(summary, out) if viewer else {}
    write_text_atomic(out / STUDY_HTML, study_html(summary, out / CV_COMPARISON_PNG, out, comparisons))
    print(markdown)
    log.info("wrote cv_results.json, cv_results.md, cv_results.tex, cv_comparison.png, report.html to %s", out)
    return summary
