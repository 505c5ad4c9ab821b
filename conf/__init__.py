"""The configs, shipped as the package heritage_seg.conf (pyproject.toml maps this folder onto it); Hydra reads
them as pkg://heritage_seg.conf. Nothing to import here."""
