"""Fail fast when the Hugging Face hub cannot be reached.

Offline, huggingface_hub retries each download for tens of seconds before it gives up. Users of this tool
often sit on air-gapped clusters, so before any hub access we check within a few seconds whether the hub is
reachable; if not, huggingface_hub is switched to its offline mode, in which files already in the local cache
still load and missing ones fail at once (the caller turns that into a message that says what to do).
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse


def hub_is_reachable(timeout_s: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=timeout_s):
            return True
    except OSError:
        return False


def offline_unless_reachable() -> bool:
    """Returns whether the hub is reachable; if not, puts huggingface_hub into offline mode for this process."""
    if hub_is_reachable():
        return True
    from huggingface_hub import constants

    constants.HF_HUB_OFFLINE = True  # read at call time by huggingface_hub's download functions
    return False
