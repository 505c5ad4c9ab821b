"""Fetching ARTeFACT's parquet shards (the command: python -m heritage_seg.download root=data/artefact).

Online, `huggingface_hub.snapshot_download` does the work (resumable, only the shards). Offline, it fails
within seconds and says where to put files fetched elsewhere.
"""

from __future__ import annotations

import logging
from pathlib import Path

from heritage_seg.core.hub import hub_is_reachable

log = logging.getLogger(__name__)


class HubUnreachable(FileNotFoundError):
    pass


def download(root: str | Path, repo_id: str, revision: str = "main", pattern: str = "data/train-*.parquet") -> Path:
    root = Path(root).expanduser()
    if not hub_is_reachable():
        raise HubUnreachable(
            f"cannot reach the Hugging Face hub (offline, or HF_HUB_OFFLINE=1), so {repo_id} cannot be fetched. "
            f"On a machine with internet run `hf download {repo_id} --repo-type dataset "
            f"--include '{pattern}' --local-dir <folder>` (or this command), then copy the shards to "
            f"{root / pattern} and train with data.root={root}"
        )
    from huggingface_hub import snapshot_download

    log.info("downloading %s (%s) into %s — about 4 GB", repo_id, pattern, root)
    snapshot_download(
        repo_id=repo_id, repo_type="dataset", revision=revision, allow_patterns=[pattern], local_dir=str(root)
    )
    shards = sorted(root.glob(pattern))
    if not shards:
        raise FileNotFoundError(f"{root}: download finished but no file matches {pattern}")
    log.info("%d shard(s) in %s; train with: python -m heritage_seg.train data.root=%s", len(shards), root, root)
    return root


if __name__ == "__main__":  # the command's earlier spelling: python -m heritage_seg.data.download
    import runpy
    import sys

    print(
        "python -m heritage_seg.data.download is now python -m heritage_seg.download (the same options); running that",
        file=sys.stderr,
    )
    runpy.run_module("heritage_seg.download", run_name="__main__", alter_sys=True)
