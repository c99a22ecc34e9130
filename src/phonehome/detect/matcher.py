"""One pass over the bytes for every literal needle at once.

Hyperscan (or Vectorscan, its portable fork, through the ``hyperscan`` package) compiles all
needles into one automaton; where it cannot load, a pure-Python Aho-Corasick automaton gives the
same matches, slower. Both report ``(pattern index, end offset)`` for every occurrence,
overlapping ones included, so callers never depend on which engine ran.
"""

from __future__ import annotations

import hashlib
from array import array
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from phonehome.cache import cache_folder, read_entry, save_entry


class Engine(Protocol):
    name: str

    def scan(self, data: bytes) -> list[tuple[int, int]]:
        """Every (pattern index, end offset) of ``data``, in no particular order."""
        ...


class AhoCorasick:
    """Aho-Corasick automaton (Aho & Corasick 1975) over bytes, with dictionary-suffix links."""

    name = "aho-corasick"

    def __init__(self, patterns: Sequence[bytes]) -> None:
        goto: list[dict[int, int]] = [{}]
        out: list[list[int]] = [[]]
        for idx, pattern in enumerate(patterns):
            state = 0
            for byte in pattern:
                nxt = goto[state].get(byte)
                if nxt is None:
                    nxt = len(goto)
                    goto[state][byte] = nxt
                    goto.append({})
                    out.append([])
                state = nxt
            out[state].append(idx)
        fail = [0] * len(goto)
        queue: deque[int] = deque(goto[0].values())
        while queue:
            state = queue.popleft()
            for byte, nxt in goto[state].items():
                queue.append(nxt)
                f = fail[state]
                while f and byte not in goto[f]:
                    f = fail[f]
                target = goto[f].get(byte, 0)
                fail[nxt] = target if target != nxt else 0
                out[nxt] = out[nxt] + out[fail[nxt]]
        self._goto = goto
        self._fail = fail
        self._out = out

    def scan(self, data: bytes) -> list[tuple[int, int]]:
        goto, fail, out = self._goto, self._fail, self._out
        hits: list[tuple[int, int]] = []
        state = 0
        for pos, byte in enumerate(data):
            nxt = goto[state].get(byte)
            while nxt is None and state:
                state = fail[state]
                nxt = goto[state].get(byte)
            state = nxt or 0
            if out[state]:
                hits.extend((idx, pos + 1) for idx in out[state])
        return hits


class Hyperscan:
    """Hyperscan block-mode database of literal patterns, cached on disk by content.

    Compiling a 10,000-contact profile takes seconds; the compiled database is saved under the
    user's cache folder, named by :func:`patterns_key`, so the next audit with the same profile
    starts at once. A caller that already knows that key (a cached needle table keeps it) finds
    the database with :meth:`cached` without making the patterns at all. A cache that cannot be
    read or written is ignored.
    """

    name = "hyperscan"

    def __init__(self, patterns: Sequence[bytes], cache_dir: Path | None = None) -> None:
        import hyperscan

        # The hyperscan package measures literal patterns as C strings, so a pattern holding a
        # NUL byte would be cut short; those few go to an Aho-Corasick automaton beside it.
        self._ids: list[int] = []  # database index -> pattern index, when some patterns are beside it
        self._side_ids: list[int] = []
        self._side: AhoCorasick | None = None
        if any(b"\0" in p for p in patterns):
            self._ids = [i for i, p in enumerate(patterns) if b"\0" not in p]
            self._side_ids = [i for i, p in enumerate(patterns) if b"\0" in p]
            self._side = AhoCorasick([patterns[i] for i in self._side_ids])
            patterns = [patterns[i] for i in self._ids]
        self._empty = not patterns
        self._db: Any = None
        if self._empty:
            return
        path = _cache_path(patterns_key(patterns), cache_dir)
        if path is not None:
            self._db = _load_database(path)
        if self._db is None:
            self._db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
            self._db.compile(
                expressions=list(patterns),
                ids=list(range(len(patterns))),
                elements=len(patterns),
                flags=[0] * len(patterns),
                literal=True,
            )
            if path is not None and len(patterns) >= CACHE_MIN_PATTERNS:
                save_entry(path, hyperscan.dumpb(self._db))

    @classmethod
    def cached(cls, key: str, cache_dir: Path | None = None) -> Hyperscan | None:
        """The database of the patterns whose :func:`patterns_key` is ``key`` (none with a NUL), if cached."""
        path = _cache_path(key, cache_dir)
        database = _load_database(path) if path is not None else None
        if database is None:
            return None
        engine = cls.__new__(cls)
        engine._ids, engine._side_ids, engine._side = [], [], None
        engine._empty, engine._db = False, database
        return engine

    @property
    def database_scan(self) -> Any:
        """The compiled database's own ``scan`` method, where its match ids are the pattern
        indexes (no pattern beside it): phonehome._detect calls it with its own match handler.
        None otherwise."""
        return None if self._empty or self._side is not None else self._db.scan

    def scan(self, data: bytes) -> list[tuple[int, int]]:
        if not data:
            return []
        hits: list[tuple[int, int]] = []
        if not self._empty:
            append = hits.append
            ids = self._ids if self._side is not None else None

            def on_match(idx: int, _start: int, end: int, _flags: int, _ctx: object) -> None:
                append((ids[idx] if ids is not None else idx, end))

            self._db.scan(data, match_event_handler=on_match)
        if self._side is not None:
            hits.extend((self._side_ids[i], end) for i, end in self._side.scan(data))
        return hits


# Below this, compiling is faster than reading a cache file.
CACHE_MIN_PATTERNS = 5000


def patterns_key(patterns: Sequence[bytes]) -> str:
    """What names the compiled database of ``patterns`` in the cache: a digest of them, in order."""
    digest = hashlib.sha256(array("I", map(len, patterns)).tobytes())
    digest.update(b"".join(patterns))
    return digest.hexdigest()[:32]


def _cache_path(key: str, cache_dir: Path | None) -> Path | None:
    directory = cache_folder(cache_dir)
    if directory is None:
        return None
    import hyperscan

    version = getattr(hyperscan, "__version__", "0")
    return directory / f"hs-{version}-{key}.db"


def _load_database(path: Path) -> Any:
    """The block-mode database cached at ``path`` with its scratch space, or None."""
    import hyperscan

    data = read_entry(path)
    if data is None:
        return None
    try:
        database = hyperscan.loadb(data, mode=hyperscan.HS_MODE_BLOCK)
        database.scratch = hyperscan.Scratch(database)
    except hyperscan.error:
        return None
    return database


def hyperscan_available() -> bool:
    try:
        import hyperscan  # noqa: F401
    except ImportError:
        return False
    return True


def build_engine(patterns: Sequence[bytes], prefer: str = "auto") -> Engine:
    """The fastest engine that loads here; ``prefer`` = "hyperscan", "aho-corasick" or "auto"."""
    if prefer in ("auto", "hyperscan") and hyperscan_available():
        return Hyperscan(patterns)
    if prefer == "hyperscan":
        raise RuntimeError("the hyperscan package cannot be loaded on this machine")
    return AhoCorasick(patterns)


def cached_engine(key: str | None, prefer: str = "auto") -> Engine | None:
    """The engine :func:`build_engine` would give for the patterns named ``key``, when it is cached."""
    if key is None or prefer not in ("auto", "hyperscan") or not hyperscan_available():
        return None
    return Hyperscan.cached(key)
