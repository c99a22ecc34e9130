"""Find every needle in one part of a message, through every layer of encoding.

The :class:`Detector` is built once per profile. For each part it scans the bytes as sent and
every view the decoders peel off them, with one multi-pattern pass per view plus a digest-token
lookup, and reports each identifier once per (part, encoding chain) with its evidence.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from phonehome.detect.compiled import load_needles
from phonehome.detect.decoders import (
    B64_TOKENS,
    BUDGET_SPENT,
    HEX_TOKENS,
    MAX_DEPTH,
    MAX_TOKENS,
    MIN_B64,
    MIN_B64_NESTED,
    MIN_HEX,
    TOO_DEEP,
    Budget,
    Runs,
    base64_runs,
    layer_below,
    take,
    too_deep,
)
from phonehome.detect.matcher import Engine, build_engine, cached_engine
from phonehome.detect.needles import IdentifierLike
from phonehome.model import Part
from phonehome.protocols.compression import decompress
from phonehome.quickinit import quick_init

_Walker: Any
try:  # the optional C walk (setup.py); without it the walk below runs in Python
    from phonehome._detect import Walker as _Walker
except ImportError:  # pragma: no cover - depends on the build
    _Walker = None

EVIDENCE_CONTEXT = 40
# Parts whose scan result is remembered (see Detector.scan): at most this many, of at most this size.
RECENT_PARTS = 4096
RECENT_PART_BYTES = 2048
# Decoders that rewrite a view in place rather than extract new bytes from it.
IN_PLACE = frozenset({"url", "json"})

# Digests travel as hex (32/40/64 characters) or base64 (22-24/27-28/43-44 characters). One pass
# finds every run of base64 characters long enough to hold one, then its "=" padding; the run's
# length says whether it is a base64 digest, and its pieces between "+/_-" whether they are hex.
_HEX_SPLIT = re.compile(rb"[+/_-]")
_HEX_LENGTHS = frozenset({32, 40, 64})
# Unpadded base64 length of a 16, 20 or 32 byte digest -> the padding it may carry.
_B64_PADDING = {22: (0, 2), 27: (0, 1), 43: (0, 1)}
_HEX_CHARS = b"0123456789abcdefABCDEF"
# The shortest digest token (base64 of 16 bytes, unpadded).
_SHORTEST_DIGEST = 22
_PAD = ord("=")
_DIGITS = frozenset(b"0123456789")
_ALNUM = frozenset(b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_B64_OR_PAD = _ALNUM | frozenset(b"+/_-=")


# A matched pattern: length, edge classes before and after (EDGE_*), bounded, and its needles as
# (identifier, form, encoding). The C walk (phonehome._detect) reads the same tuples.
_Matched = tuple[int, int, int, bool, tuple[tuple[int, str, str], ...]]
# Which neighbouring bytes would make a match part of a longer token: none, digits, letters or digits.
EDGE_NONE, EDGE_DIGITS, EDGE_ALNUM = 0, 1, 2
_EDGE_BYTES: tuple[frozenset[int], ...] = (frozenset(), _DIGITS, _ALNUM)


@quick_init
@dataclass(frozen=True, slots=True)
class Hit:
    ident: int
    form: str
    encoding: str  # the full chain, outermost first: "base64(gzip(md5))"
    evidence: str


def wrap_chain(layers: Sequence[str], inner: str) -> str:
    """``("base64", "gzip")`` around ``"md5"`` gives ``"base64(gzip(md5))"``; "plain" is the identity."""
    text = "" if inner == "plain" else inner
    for layer in reversed(layers):
        text = f"{layer}({text})" if text else layer
    return text or "plain"


_PRINTABLE = frozenset(range(0x20, 0x7F)) - {ord("\\")}


_PRINTABLE_BYTES = bytes(sorted(_PRINTABLE))


def escape_bytes(data: bytes) -> str:
    """Bytes as text safe for any terminal or page: printable ASCII kept, the rest as \\xNN."""
    if not data.translate(None, _PRINTABLE_BYTES):  # nothing to escape: the usual case, at C speed
        return data.decode("ascii")
    return "".join(chr(b) if b in _PRINTABLE else f"\\x{b:02x}" for b in data)


def evidence(data: bytes, start: int, end: int) -> str:
    lo = max(0, start - EVIDENCE_CONTEXT)
    hi = min(len(data), end + EVIDENCE_CONTEXT)
    return (
        ("…" if lo else "")
        + escape_bytes(data[lo:start])
        + "«"
        + escape_bytes(data[start:end])
        + "»"
        + escape_bytes(data[end:hi])
        + ("…" if hi < len(data) else "")
    )


# The class of each byte at a pattern's edge: a digit, another letter or digit, or neither.
_BYTE_CLASS = bytes(
    EDGE_DIGITS if b in _DIGITS else EDGE_ALNUM if b in _ALNUM else EDGE_NONE for b in range(256)
)


def _edge_class(pattern: bytes) -> tuple[int, int]:
    """Which neighbouring bytes would make a match part of a longer token, for each edge (EDGE_*):
    a digit glued to a number is part of it; a letter or digit glued to any other token is."""
    core = pattern.lstrip(b"+")
    widen = EDGE_ALNUM if not core.isdigit() else EDGE_DIGITS
    first, last = _BYTE_CLASS[pattern[0]], _BYTE_CLASS[pattern[-1]]
    return (widen if first == EDGE_DIGITS else first), (widen if last == EDGE_DIGITS else last)


class Detector:
    """Everything needed to scan for one profile's identifiers."""

    def __init__(
        self, identifiers: Sequence[IdentifierLike], engine: str = "auto", *, walk: str = "auto"
    ) -> None:
        # Not copied: a large profile's IdentifierTable makes an identifier only when it matched.
        self.identifiers = identifiers
        # Flat tables, loaded from the cache for a profile seen before: a large profile's needles
        # cost seconds to expand and hundreds of megabytes as objects.
        self.needles = load_needles(identifiers)
        # Identical patterns (two contacts sharing a number) share one automaton entry.
        self.engine: Engine = cached_engine(self.needles.engine_key, engine) or build_engine(
            self.needles.patterns(), engine
        )
        self.digests = self.needles.digest_count
        # Per matched pattern, built on its first match: length, edge classes, whether bounded,
        # and its needles as (identifier, form, encoding).
        self._matched: dict[int, _Matched] = {}
        # What scanning gave for recent small parts: an app sends the same User-Agent, Host,
        # configuration query or tracking body on every request, and a part's hits depend on its
        # bytes alone. Bounded in entries and in the size of each part; emptied when full, as
        # dropping the oldest entry of a dict one at a time walks past every entry deleted
        # before it (5% of an audit's instructions, once the parts seen outnumbered it).
        self._recent: dict[bytes, tuple[tuple[Hit, ...], tuple[str, ...]]] = {}
        # The same walk in C, where phonehome._detect is built (walk="python" keeps to this module's).
        self._walker = _c_walker(self) if walk == "auto" and _Walker is not None else None

    def scan(self, data: bytes) -> tuple[Sequence[Hit], Sequence[str]]:
        """Hits in ``data`` and in every layer peeled from it, and the decoding warnings."""
        if len(data) > RECENT_PART_BYTES:
            return self._scan(data)
        recent = self._recent.get(data)
        if recent is None:
            hits, notes = self._scan(data)
            if len(self._recent) >= RECENT_PARTS:
                self._recent.clear()
            recent = self._recent[data] = (tuple(hits), tuple(notes))
        return recent

    def scan_parts(self, parts: Sequence[Part]) -> list[tuple[int, Sequence[Hit], Sequence[str]]]:
        """:meth:`scan` of each part's bytes: (index, hits, warnings) of the parts that gave any.

        One call per exchange: most parts give nothing, and most were seen before.
        """
        if self._walker is not None:
            found: list[tuple[int, Sequence[Hit], Sequence[str]]] = self._walker.scan_parts(
                parts, self._recent, RECENT_PART_BYTES, RECENT_PARTS
            )
            return found
        out = []
        for i, part in enumerate(parts):
            hits, notes = self.scan(part.data)
            if hits or notes:
                out.append((i, hits, notes))
        return out

    def _scan(self, data: bytes) -> tuple[list[Hit], list[str]]:
        if self._walker is not None:
            hits, warnings = self._walker.walk(data)
            return hits, warnings
        budget = Budget()
        found: dict[tuple[int, str], Hit] = {}
        self._walk(data, (), 0, budget, found, None)
        return list(found.values()), budget.warnings or []

    def _walk(
        self,
        data: bytes,
        chain: tuple[str, ...],
        depth: int,
        budget: Budget,
        found: dict[tuple[int, str], Hit],
        parent: set[int] | None,
    ) -> None:
        """Scan one view, then every view below it, depth first; the first hit of each
        (identifier, encoding chain) is kept in ``found``.

        A view decoded in place (URL, JSON escapes) still holds everything its parent held; it
        reports only what the parent did not already show (``parent``: the identifiers seen there),
        so URL-decoding a query that carries a plain IMEI adds no "url" finding. Extracted views
        (base64, hex, compressed) are new bytes.
        """
        b64 = base64_runs(data)
        hits = self._scan_view(data, chain, b64)
        seen = {hit.ident for hit in hits}
        for hit in hits:
            if parent is None or hit.ident not in parent:
                found.setdefault((hit.ident, hit.encoding), hit)
        if parent:
            seen |= parent
        if depth >= MAX_DEPTH:
            too_deep(data, budget)
            return
        for step in layer_below(data, budget, depth, b64):
            if isinstance(step, str):
                budget.warn(step)
                continue
            layer, view = step
            if view == data or not view:
                continue
            if not take(budget, view):
                return
            self._walk(view, (*chain, layer), depth + 1, budget, found, seen if layer in IN_PLACE else None)

    def _entry(self, pid: int) -> _Matched:
        pattern, found, bounded = self.needles.matched(pid)
        before, after = _edge_class(pattern)
        return len(pattern), before, after, bounded, found

    def _scan_view(self, data: bytes, chain: tuple[str, ...], b64: Runs) -> list[Hit]:
        if not data:
            return []
        size = len(data)
        # (ident, start, end, form, encoding) of every acceptable match in this view.
        spans: list[tuple[int, int, int, str, str]] = []
        matched = self._matched
        for pid, end in self.engine.scan(data):
            entry = matched.get(pid)
            if entry is None:
                entry = matched[pid] = self._entry(pid)
            length, before, after, bounded, needles = entry
            start = end - length
            if bounded and (
                (start > 0 and data[start - 1] in _EDGE_BYTES[before])
                or (end < size and data[end] in _EDGE_BYTES[after])
            ):
                continue
            spans.extend((ident, start, end, form, encoding) for ident, form, encoding in needles)
        if self.digests and b64:
            spans.extend(self._scan_digests(data, b64))
        # One occurrence is one hit: a match inside a longer match of the same identifier (the
        # digits of "%2B919876543210" inside its URL-encoded E.164 form) is the same leak.
        spans.sort(key=lambda s: (s[0], s[1], -s[2]))
        hits: list[Hit] = []
        last_ident, last_end = -1, -1
        for ident, start, end, form, encoding in spans:
            if ident == last_ident and end <= last_end:
                continue
            last_ident, last_end = ident, max(end, last_end) if ident == last_ident else end
            hits.append(Hit(ident, form, wrap_chain(chain, encoding), evidence(data, start, end)))
        return hits

    def _scan_digests(self, data: bytes, b64: Runs) -> list[tuple[int, int, int, str, str]]:
        lookup = self.needles.digest_entries
        return [
            (ident, start, end, form, f"base64({encoding})" if is_b64 else encoding)
            for start, end, raw, is_b64 in digest_tokens(data, b64)
            for ident, form, encoding in lookup(raw)
        ]


def digest_tokens(data: bytes, b64: Runs | None = None) -> list[tuple[int, int, bytes, bool]]:
    """Every token of ``data`` shaped like a digest: (start, end, the bytes it encodes, base64?).

    Hex of 16, 20 or 32 bytes bounded by characters other than letters and digits; base64 (either
    alphabet) of as many bytes, with or without its padding, bounded by characters outside base64.
    ``b64`` is :func:`~phonehome.detect.decoders.base64_runs` of ``data`` when known.
    """
    tokens: list[tuple[int, int, bytes, bool]] = []
    if len(data) < _SHORTEST_DIGEST:
        return tokens
    for start, run_end in base64_runs(data) if b64 is None else b64:
        if run_end - start < _SHORTEST_DIGEST:
            continue
        run = data[start:run_end]
        end = run_end
        while end < len(data) and data[end] == _PAD:
            end += 1
        pad = end - run_end
        size = len(run)
        if size >= 32:
            # Hex: the pieces of the run between "+/_-" (a hex token stops at anything that is
            # not a letter or digit).
            pieces = _HEX_SPLIT.split(run) if _HEX_SPLIT.search(run) else [run]
            at = start
            for piece in pieces:
                if len(piece) in _HEX_LENGTHS and not piece.translate(None, _HEX_CHARS):
                    tokens.append((at, at + len(piece), bytes.fromhex(piece.decode("ascii")), False))
                at += len(piece) + 1
        # Base64: the whole run, with the padding its length allows and nothing glued after it.
        if pad in _B64_PADDING.get(size, ()) and not (end < len(data) and data[end] in _B64_OR_PAD):
            raw = base64.urlsafe_b64decode(run.replace(b"+", b"-").replace(b"/", b"_") + b"==")
            tokens.append((start, end, raw, True))
    return tokens


def _c_walker(detector: Detector) -> Any:
    """The C walk (phonehome._detect.Walker) of ``detector``: its matcher, pattern and digest
    tables, and Python's own decompression and base64 decoding, with the decoders' limits."""
    fresh = Budget()
    return _Walker(
        scan=detector.engine.scan,
        hs_scan=getattr(detector.engine, "database_scan", None),
        matched=detector._matched,
        entry=detector._entry,
        digests=detector.needles.digest_entries if detector.digests else None,
        decompress=decompress,
        # What base64.b64decode(validate=True) calls, without its copy of the token.
        b64decode=partial(binascii.a2b_base64, strict_mode=True),
        b64url=base64.urlsafe_b64decode,
        b64errors=(binascii.Error, ValueError),
        hit=Hit,
        messages=(TOO_DEEP, BUDGET_SPENT, B64_TOKENS, HEX_TOKENS),
        max_depth=MAX_DEPTH,
        max_tokens=MAX_TOKENS,
        min_b64=MIN_B64,
        min_b64_nested=MIN_B64_NESTED,
        min_hex=MIN_HEX,
        context=EVIDENCE_CONTEXT,
        budget_bytes=fresh.bytes_left,
        budget_views=fresh.views_left,
    )
