"""The user's cache folder: what costs seconds to build is kept there between runs.

``$XDG_CACHE_HOME/phonehome`` (``~/.cache/phonehome``), or nothing with ``PHONEHOME_NO_CACHE`` set.
Each entry is named by a digest of what it was built from, written whole or not at all, and a
reader that cannot use an entry builds it again: a cache folder that cannot be written only costs
time.
"""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path | None:
    if os.environ.get("PHONEHOME_NO_CACHE"):
        return None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "phonehome"


def cache_folder(cache_dir: Path | None = None) -> Path | None:
    """``cache_dir`` when given, else the default folder; None when caching is off."""
    return cache_dir or default_cache_dir()


def save_entry(path: Path, data: bytes) -> None:
    """Write an entry atomically (a reader never sees half of it); a failure is ignored."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError:
        pass
