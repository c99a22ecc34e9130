"""Peel the layers apps wrap data in: URL-encoding, JSON escapes, base64, hex, compression.

Each decoder is a table entry: a cheap test of whether it could apply, and a function that adds
the views it decodes to a list (:func:`layer_below` gives one layer of them). Views are peeled
recursively up to a depth and a total-size budget (:func:`peel`, and the detector's own walk, which
scans each view as it goes), so base64 of gzip of JSON carrying an IMEI is found, and a
decompression bomb or a base64 tower is stopped with a warning rather than followed. The runs of
base64 characters of a view are found once and shared by the base64 and hex decoders and the
digest tokens.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from phonehome.protocols.compression import decompress, sniff_compression

MAX_DEPTH = 4
MAX_TOKENS = 64  # base64/hex tokens decoded per view
MIN_B64 = 12  # characters of the base64 alphabet, padding not counted (9 bytes)
# Inside a view that was itself decoded, short tokens are worth trying: the bytes are known to be
# encoded, and the view is small.
MIN_B64_NESTED = 8
MIN_HEX = 16
# The warnings of a walk, one of each at most per part.
TOO_DEEP = f"encoded more than {MAX_DEPTH} layers deep; the inner layers not decoded"
BUDGET_SPENT = "decoding budget for one part spent; deeper layers not decoded"
B64_TOKENS = f"more than {MAX_TOKENS} base64 tokens in one part; the rest not decoded"
HEX_TOKENS = f"more than {MAX_TOKENS} hex tokens in one part; the rest not decoded"


@dataclass(slots=True)
class Budget:
    """What one part may cost to peel: decoded bytes in total and views produced."""

    bytes_left: int = 16 << 20
    views_left: int = 512
    warnings: list[str] | None = None

    def warn(self, message: str) -> None:
        if self.warnings is None:
            self.warnings = []
        if message not in self.warnings:
            self.warnings.append(message)


def _class_table(chars: bytes) -> bytes:
    """A bytes.translate table mapping each of ``chars`` to 1 and every other byte to 0."""
    table = bytearray(256)
    for char in chars:
        table[char] = 1
    return bytes(table)


B64_CLASS = _class_table(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/_-"
)  # either alphabet
HEX_CLASS = _class_table(b"0123456789abcdefABCDEF")


def runs(data: bytes, table: bytes, min_len: int) -> list[tuple[int, int]]:
    """(start, end) of every maximal run of bytes that ``table`` (see :func:`_class_table`) maps
    to 1, of at least ``min_len`` bytes, in order.

    Found with bytes.translate and bytes.find, which run at memory speed, rather than a regular
    expression, which tries a match at every byte: most views hold no token at all.
    """
    if len(data) < min_len:
        return []
    marks = data.translate(table)
    found = []
    least = b"\x01" * min_len
    pos = marks.find(least)
    while pos >= 0:
        end = marks.find(b"\x00", pos + min_len)
        if end < 0:
            found.append((pos, len(marks)))
            break
        found.append((pos, end))
        pos = marks.find(least, end)
    return found


_PERCENT = re.compile(rb"%[0-9A-Fa-f]{2}")
_JSON_ESCAPE = re.compile(rb"\\u[0-9A-Fa-f]{4}|\\[/\"\\bfnrt]")
_B64_WHOLE = re.compile(rb"[A-Za-z0-9+/_-]{%d,}={0,2}" % MIN_B64)
_JSON_SIMPLE = {
    b"/": b"/",
    b'"': b'"',
    b"\\": b"\\",
    b"b": b"\b",
    b"f": b"\f",
    b"n": b"\n",
    b"r": b"\r",
    b"t": b"\t",
}


def _url(data: bytes, _budget: Budget, _depth: int, _b64: Runs, out: list[Step]) -> None:
    # Only where a %XX escape shows the bytes really are URL-encoded: '+' alone is too common
    # (base64, phone numbers) to decode on its own, and decoding it twice would turn "%2B" into " ".
    if b"%" in data and _PERCENT.search(data):
        out.append(("url", unquote_to_bytes(data.replace(b"+", b" "))))


def _json_unescape_one(m: re.Match[bytes]) -> bytes:
    text = m.group()
    if text[1:2] == b"u":
        code = int(text[2:], 16)
        if 0xD800 <= code <= 0xDFFF:
            return text  # a lone surrogate half: leave it as written
        return chr(code).encode("utf-8")
    return _JSON_SIMPLE[text[1:2]]


def _json(data: bytes, _budget: Budget, _depth: int, _b64: Runs, out: list[Step]) -> None:
    if b"\\" in data and _JSON_ESCAPE.search(data):
        out.append(("json", _JSON_ESCAPE.sub(_json_unescape_one, data)))


def _base64(data: bytes, _budget: Budget, depth: int, b64: Runs, out: list[Step]) -> None:
    # A token is a maximal run of base64 characters; its "=" padding is not needed to decode it.
    least = MIN_B64_NESTED if depth else MIN_B64
    count = 0
    for start, end in b64:
        if end - start < least:
            continue
        if count >= MAX_TOKENS:
            out.append(B64_TOKENS)
            return
        count += 1
        token = data[start:end]
        if token.isdigit():
            continue  # a long number, not base64
        token = token[: len(token) - len(token) % 4 if len(token) % 4 == 1 else len(token)]
        padded = token + b"=" * (-len(token) % 4)
        try:
            if b"-" in token or b"_" in token:
                decoded = base64.urlsafe_b64decode(padded)
            else:
                decoded = base64.b64decode(padded, validate=True)
        except (binascii.Error, ValueError):
            continue
        out.append(("base64", decoded))


def _hex(data: bytes, _budget: Budget, _depth: int, b64: Runs, out: list[Step]) -> None:
    # A maximal run of hex digits lies inside a maximal run of base64 characters, which hold them all.
    count = 0
    for b64_start, b64_end in b64:
        if b64_end - b64_start < MIN_HEX:
            continue
        for start, end in runs(data[b64_start:b64_end], HEX_CLASS, MIN_HEX):
            if (end - start) % 2:
                continue  # an odd run of hex digits is not bytes
            if count >= MAX_TOKENS:
                out.append(HEX_TOKENS)
                return
            count += 1
            token = data[b64_start + start : b64_start + end]
            if token.isdigit():
                continue
            out.append(("hex", bytes.fromhex(token.decode("ascii"))))


def _compressed(data: bytes, budget: Budget, _depth: int, _b64: Runs, out: list[Step]) -> None:
    kind = sniff_compression(data)
    if kind is None:
        return
    decoded, warning = decompress("deflate" if kind == "zlib" else kind, data, max(budget.bytes_left, 0))
    if warning:
        out.append(warning)
    if decoded:
        out.append((kind, decoded))


# A view one layer down (its layer and bytes), or a warning, given where it falls among the views.
Step = tuple[str, bytes] | str
Runs = list[tuple[int, int]]

# Order matters only for which chain is reported first; every decoder is tried on every view.
DECODERS: tuple[Callable[[bytes, Budget, int, Runs, list[Step]], None], ...] = (
    _compressed,
    _url,
    _json,
    _base64,
    _hex,
)


def base64_runs(data: bytes) -> Runs:
    """The maximal runs of base64 characters (either alphabet) that a decoder or digest may read:
    at least :data:`MIN_B64_NESTED` long. Found once per view, for every reader of them."""
    return runs(data, B64_CLASS, MIN_B64_NESTED)


def layer_below(data: bytes, budget: Budget, depth: int, b64: Runs | None = None) -> list[Step]:
    """Every view one layer below ``data`` at ``depth``, in :data:`DECODERS` order, with the
    warnings where they fall among them; ``b64`` is :func:`base64_runs` of ``data`` when known.

    Only decompression reads the budget (what is left bounds its output): the caller takes each
    view out of the budget (:func:`take`) and walks below it before the next view is made.
    Decompression comes first, so it sees the budget as the views before it left it.
    """
    if b64 is None:
        b64 = base64_runs(data)
    out: list[Step] = []
    for decoder in DECODERS:
        decoder(data, budget, depth, b64, out)
    return out


def take(budget: Budget, view: bytes) -> bool:
    """Take ``view`` out of ``budget``; False, with a warning, when the budget cannot pay for it.
    The views after it at the same depth are then not walked either."""
    if budget.views_left <= 0 or budget.bytes_left < len(view):
        budget.warn(BUDGET_SPENT)
        return False
    budget.views_left -= 1
    budget.bytes_left -= len(view)
    return True


def too_deep(data: bytes, budget: Budget) -> None:
    """At :data:`MAX_DEPTH`, nothing more is peeled. Say so only where another layer is plain to
    see (compressed, or wholly one base64 token): a tower of encodings is hostile or broken, and
    anything found inside it would be missed."""
    if sniff_compression(data) or (_B64_WHOLE.fullmatch(data) and not data.isdigit()):
        budget.warn(TOO_DEEP)


def peel(data: bytes, budget: Budget, depth: int = 0) -> Iterator[tuple[tuple[str, ...], bytes]]:
    """Every decoded view of ``data`` below the top one, with the chain of layers (outermost first)."""
    if depth >= MAX_DEPTH:
        too_deep(data, budget)
        return
    for step in layer_below(data, budget, depth):
        if isinstance(step, str):
            budget.warn(step)
            continue
        layer, view = step
        if view == data or not view:
            continue
        if not take(budget, view):
            return
        yield (layer,), view
        for chain, inner in peel(view, budget, depth + 1):
            yield (layer, *chain), inner
