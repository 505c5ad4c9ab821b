"""Choosing what to annotate: which unannotated scans teach the model most (selection: the rule `select` ranks
scans by). Not inference: it reads the maps and features inference made."""
