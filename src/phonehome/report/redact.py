"""Masking identifiers, so a report can be shared without republishing the values it is about.

Every occurrence of any form of any profile value is masked: the literal needles of
:mod:`phonehome.detect.needles` (each normal form as written, URL-encoded, base64, hex), the
digests of the digest table (found by decoding hex and base64 tokens and raw byte windows and
looking them up, as detection does), and every matched span a finding names. A masked run keeps
its first and last two characters (``86•••••••••••19``); runs shorter than :data:`KEEP_MIN` are
masked whole, so the kept edges never hold a whole short value.

Evidence text (printable ASCII with ``\\xNN`` escapes, the match between ``«`` and ``»``) is
unescaped back to bytes, searched, and escaped again with one mask character per masked byte, so
a value is found whatever bytes the escaping turned into ``\\xNN``.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from phonehome.detect.matcher import Engine, build_engine
from phonehome.detect.needles import DIGEST_SIZES, IdentifierLike, NeedleSet
from phonehome.detect.scan import escape_bytes

MASK = "•"
KEEP = 2  # characters kept at each end of a masked run
KEEP_MIN = 8  # shorter runs are masked whole
# Evidence is cut 40 bytes either side of the match, which can cut a value in two. At a cut, a
# piece of at least EDGE_MIN bytes that a value's form starts (or ends) with is masked, and so is
# any token of TOKEN_MIN or more base64/hex/URL-escape characters holding a digit: it may be part of
# a digest, which cannot be looked up once cut (a word of letters only is left alone).
EDGE_MIN = 4
TOKEN_MIN = 8
_TOKEN = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/_-%")
_DIGITS = frozenset(b"0123456789")

_ESCAPE = re.compile(r"\\x([0-9a-fA-F]{2})")
# Hex and base64 runs long enough to hold a digest; every window of a digest's length is tried,
# so a digest inside a longer token is found too.
_HEX_RUN = re.compile(rb"[0-9a-fA-F]{32,}")
_B64_RUN = re.compile(rb"[A-Za-z0-9+/_-]{22,}")
_HEX_LENGTHS = tuple(2 * n for n in sorted(DIGEST_SIZES))
_B64_LENGTHS = tuple(-(-4 * n // 3) for n in sorted(DIGEST_SIZES))  # unpadded: 22, 27, 43
_URL_TO_STD = bytes.maketrans(b"-_", b"+/")


def mask(text: str) -> str:
    """``text`` with all but its first and last :data:`KEEP` characters masked."""
    if len(text) < KEEP_MIN:
        return MASK * len(text)
    return text[:KEEP] + MASK * (len(text) - 2 * KEEP) + text[-KEEP:]


def unescape_evidence(text: str) -> bytes:
    """The bytes :func:`phonehome.detect.scan.escape_bytes` turned into ``text``."""
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text).encode("latin-1")


@dataclass(frozen=True, slots=True)
class Evidence:
    """A finding's evidence split at its markers: what came before the match, the match, after."""

    lead: bool  # the context was cut before
    before: str
    match: str
    after: str
    trail: bool  # the context was cut after


def split_evidence(text: str) -> Evidence:
    """Evidence text is escaped ASCII, so ``«``, ``»`` and ``…`` only ever come from the markers."""
    lead = text.startswith("…")
    trail = text.endswith("…") and len(text) > 1
    body = text[1 if lead else 0 : len(text) - 1 if trail else len(text)]
    before, sep, rest = body.partition("«")
    if not sep:
        return Evidence(lead, "", "", body, trail)
    match, _, after = rest.rpartition("»")
    return Evidence(lead, before, match, after, trail)


class Redactor:
    """Masks every form of a profile's values, and any extra strings given, wherever they appear."""

    def __init__(self, identifiers: Sequence[IdentifierLike], extra: Iterable[str] = ()) -> None:
        needles = NeedleSet(identifiers)
        patterns = {n.pattern for n in needles.needles}
        patterns.update(i.value.encode("utf-8", "surrogatepass") for i in identifiers if i.value)
        for text in extra:
            raw = unescape_evidence(text) if text.isascii() else text.encode("utf-8", "surrogatepass")
            if len(raw) >= 3:
                patterns.add(raw)
        self._patterns = sorted(patterns)
        self._heads = {p[:k] for p in patterns for k in range(EDGE_MIN, len(p))}
        self._tails = {p[-k:] for p in patterns for k in range(EDGE_MIN, len(p))}
        self._longest = max((len(p) for p in patterns), default=0)
        self._lengths = [len(p) for p in self._patterns]
        self._engine: Engine | None = build_engine(self._patterns) if self._patterns else None
        self._digests = needles.digests

    def spans(self, data: bytes) -> list[tuple[int, int]]:
        """Merged byte ranges of ``data`` holding any form of any value."""
        found: list[tuple[int, int]] = []
        if self._engine is not None:
            found.extend((end - self._lengths[pid], end) for pid, end in self._engine.scan(data))
        if self._digests:
            found.extend(self._digest_spans(data))
        return _merge(found)

    def _digest_spans(self, data: bytes) -> Iterable[tuple[int, int]]:
        digests = self._digests
        for size in DIGEST_SIZES:  # raw digest bytes
            for i in range(len(data) - size + 1):
                if data[i : i + size] in digests:
                    yield i, i + size
        for run in _HEX_RUN.finditer(data):
            token = run.group()
            for n in _HEX_LENGTHS:
                for i in range(len(token) - n + 1):
                    if bytes.fromhex(token[i : i + n].decode("ascii")) in digests:
                        yield run.start() + i, run.start() + i + n
        for run in _B64_RUN.finditer(data):
            token = run.group().translate(_URL_TO_STD)
            for n in _B64_LENGTHS:
                for i in range(len(token) - n + 1):
                    try:
                        raw = base64.b64decode(token[i : i + n] + b"==")
                    except (binascii.Error, ValueError):
                        continue
                    if raw in digests:
                        end = run.start() + i + n
                        while end < len(data) and data[end : end + 1] == b"=":  # its padding
                            end += 1
                        yield run.start() + i, end

    def text(self, text: str) -> str:
        """``text`` (a URL, a host name, a file name...) with every value in it masked."""
        if not text:
            return text
        raw = text.encode("utf-8", "surrogatepass")
        spans = self.spans(raw)
        if not spans:
            return text
        # byte offset -> character index
        char_at = [i for i, ch in enumerate(text) for _ in range(len(ch.encode("utf-8", "surrogatepass")))]
        chars = list(text)
        for start, end in spans:
            _mask_units(chars, char_at[start], char_at[end - 1] + 1)
        return "".join(chars)

    def evidence(self, text: str) -> str:
        """Evidence with its match and every other value in its context masked, markers kept."""
        ev = split_evidence(text)
        parts = [unescape_evidence(p) for p in (ev.before, ev.match, ev.after)]
        data = b"".join(parts)
        units = [escape_bytes(bytes([b])) for b in data]
        lo, hi = len(parts[0]), len(parts[0]) + len(parts[1])
        spans = self.spans(data)
        if hi > lo:
            spans.append((lo, hi))
        if ev.lead:
            spans.extend(self._cut(data, self._tails, at_start=True))
        if ev.trail:
            spans.extend(self._cut(data, self._heads, at_start=False))
        for start, end in _merge(spans):
            _mask_units(units, start, end)
        before, match, after = "".join(units[:lo]), "".join(units[lo:hi]), "".join(units[hi:])
        marked = f"{before}«{match}»{after}" if ev.match or "«" in text else after
        return ("…" if ev.lead else "") + marked + ("…" if ev.trail else "")

    def _cut(self, data: bytes, pieces: set[bytes], *, at_start: bool) -> list[tuple[int, int]]:
        """What to mask where the evidence was cut: see :data:`EDGE_MIN`."""
        out = []
        run, digit = 0, False
        for b in data if at_start else reversed(data):
            if b not in _TOKEN:
                break
            run += 1
            digit = digit or b in _DIGITS
        if run >= TOKEN_MIN and digit:
            out.append((0, run) if at_start else (len(data) - run, len(data)))
        for k in range(min(self._longest, len(data)), EDGE_MIN - 1, -1):
            piece = data[:k] if at_start else data[len(data) - k :]
            if piece in pieces:
                out.append((0, k) if at_start else (len(data) - k, len(data)))
                break
        return out


def _mask_units(units: list[str], start: int, end: int) -> None:
    keep = KEEP if end - start >= KEEP_MIN else 0
    for i in range(start + keep, end - keep):
        units[i] = MASK


def _merge(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged
