"""The user's cache folder: what costs seconds to build is kept there between runs.

``$XDG_CACHE_HOME/phonehome`` (``~/.cache/phonehome``), or nothing with ``PHONEHOME_NO_CACHE`` set.
Each entry is named by a digest of what it was built from, written whole or not at all, and a
reader that cannot use an entry builds it again: a cache folder that cannot be written only costs
time. Reading an entry marks it used; writing one keeps the folder under its size limit
(``PHONEHOME_CACHE_MB``, default 2048) by removing the entries used least recently.
"""

from __future__ import annotations

import contextlib
import functools
import mmap
import os
import sys
import time
from pathlib import Path

DEFAULT_LIMIT_MB = 2048
# A temporary file this old was left by a writer that died before renaming it.
_STALE_TMP_SECONDS = 3600


def default_cache_dir() -> Path | None:
    if os.environ.get("PHONEHOME_NO_CACHE"):
        return None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "phonehome"


def cache_folder(cache_dir: Path | None = None) -> Path | None:
    """``cache_dir`` when given, else the default folder; None when caching is off."""
    return cache_dir or default_cache_dir()


def package_version(name: str) -> str:
    """The installed version of the distribution ``name``, as ``importlib.metadata.version`` says.

    Cache keys and data sources name the versions of the packages their data comes from, on every
    run. An installed distribution's metadata folder is named ``{name}-{version}.dist-info``
    (the installed-project layout every installer writes, name normalised), so the version is
    read from the folder's name, found on ``sys.path``; importlib.metadata, whose parsers
    (email, csv, zipfile) take a run tens of milliseconds to import, reads it where no such
    folder is found.
    """
    wanted = _normalised(name)
    for entry in sys.path:
        for folder in _dist_infos(entry or "."):
            project, _, version = folder.removesuffix(".dist-info").partition("-")
            if version and _normalised(project) == wanted:
                return version
    from importlib.metadata import version as metadata_version

    return metadata_version(name)


def _normalised(name: str) -> str:
    return name.lower().replace("-", "_").replace(".", "_")


@functools.cache
def _dist_infos(entry: str) -> tuple[str, ...]:
    try:
        return tuple(n for n in os.listdir(entry) if n.endswith(".dist-info"))
    except OSError:
        return ()


def save_entry(path: Path, data: bytes) -> None:
    """Write an entry atomically (a reader never sees half of it), then keep the folder under its
    limit; a failure is ignored."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError:
        return
    prune(path.parent, keep=path)


def read_entry(path: Path) -> bytes | None:
    """The bytes of the entry at ``path``, marked used; None when it is absent or unreadable."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    _used(path)
    return data


def map_entry(path: Path) -> mmap.mmap | None:
    """The entry at ``path`` mapped read-only (its pages are read only when touched), marked used;
    None when it is absent or unreadable."""
    try:
        with open(path, "rb") as fh:
            mapping = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError):  # ValueError: an empty file cannot be mapped
        return None
    _used(path)
    return mapping


def _used(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.utime(path)  # the modification time orders entries by last use


def limit_bytes() -> int:
    """The folder's size limit: ``PHONEHOME_CACHE_MB`` megabytes, or :data:`DEFAULT_LIMIT_MB`."""
    try:
        megabytes = int(os.environ.get("PHONEHOME_CACHE_MB", DEFAULT_LIMIT_MB))
    except ValueError:
        megabytes = DEFAULT_LIMIT_MB
    return max(0, megabytes) * 1_000_000


def prune(directory: Path, limit: int | None = None, keep: Path | None = None) -> list[Path]:
    """Remove the entries of ``directory`` used least recently until it holds at most ``limit``
    bytes (:func:`limit_bytes` when None), never ``keep``; and temporary files writers left
    behind. The files removed."""
    limit = limit_bytes() if limit is None else limit
    now = time.time()
    entries: list[tuple[float, int, Path]] = []
    removed: list[Path] = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        path = directory / name
        try:
            info = path.lstat()
        except OSError:
            continue
        if not path.is_file() or path.is_symlink():
            continue
        if name.endswith(".tmp"):
            if now - info.st_mtime > _STALE_TMP_SECONDS and _remove(path):
                removed.append(path)
            continue
        entries.append((info.st_mtime, info.st_size, path))
    total = sum(size for _mtime, size, _path in entries)
    for _mtime, size, path in sorted(entries):
        if total <= limit:
            break
        if path != keep and _remove(path):
            removed.append(path)
            total -= size
    return removed


def _remove(path: Path) -> bool:
    try:
        path.unlink()
    except OSError:
        return False
    return True
