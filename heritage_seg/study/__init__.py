"""Comparing trained runs (what `heritage_seg.aggregate` prints): find runs, summarise, render."""
