"""Bounded decompression for HTTP content codings and for detection decoders.

Everything here is safe on hostile input: the output never exceeds the caller's limit (a
decompression bomb is cut there), damaged or truncated input yields what decoded so far plus a
warning, and nothing raises except :class:`ValueError` for a coding name the caller should have
checked. Each decoder produces its output in bounded steps, so memory stays near ``limit``.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable

__all__ = ["CODINGS", "KEPT_AS_SENT", "decode_body", "decode_content", "decompress", "sniff_compression"]

# Input is fed to brotli in pieces of this size so that a failure keeps what came before it.
_BROTLI_FEED = 16 * 1024
# Output is pulled from zstd in reads of at most this size.
_ZSTD_READ = 64 * 1024

_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

Decoded = tuple[bytes, str | None]


def _limit_warning(limit: int) -> str:
    return f"decompressed size exceeds {limit} bytes; truncated"


class _Sink:
    """Collects output up to ``limit`` bytes and remembers whether more was offered."""

    __slots__ = ("limit", "out", "over")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.out = bytearray()
        self.over = False

    @property
    def room(self) -> int:
        """How many more bytes to ask a decoder for: one past the limit, to notice a bomb."""
        return self.limit - len(self.out) + 1

    def add(self, piece: bytes) -> bool:
        """Keep ``piece`` up to the limit; False once the limit has been passed."""
        if len(self.out) + len(piece) > self.limit:
            self.out += piece[: self.limit - len(self.out)]
            self.over = True
            return False
        self.out += piece
        return True

    def result(self, warning: str | None) -> Decoded:
        if self.over:
            return bytes(self.out), _limit_warning(self.limit)
        return bytes(self.out), warning


def _zlib_stream(sink: _Sink, data: bytes, wbits: int) -> tuple[bytes | None, str | None]:
    """Inflate one zlib/gzip/raw stream from ``data`` into ``sink``.

    Returns (the bytes after the end of the stream, None) when the stream ended, or
    (None, problem) when it was cut short, corrupt, or the sink overflowed (problem is then "").
    """
    d = zlib.decompressobj(wbits)
    pending = data
    while True:
        try:
            # max_length bounds each step's output; 0 would mean unbounded, and room is always >= 1.
            piece = d.decompress(pending, sink.room)
        except zlib.error as exc:
            return None, f"corrupt data ({exc})"
        if not sink.add(piece):
            return None, ""
        pending = d.unconsumed_tail
        if d.eof:
            return d.unused_data, None
        if not pending and not piece:
            return None, "input ended before the end of the stream"


def _gzip(data: bytes, limit: int) -> Decoded:
    sink = _Sink(limit)
    rest: bytes | None = data
    members = 0
    # RFC 1952 §2.2: a gzip file is a series of members; decoders concatenate them all.
    while rest:
        if members and not rest.startswith(_GZIP_MAGIC):
            if rest.strip(b"\x00"):
                return sink.result(f"gzip: {len(rest)} bytes of trailing data ignored")
            return sink.result(None)  # zero padding after the last member, as gzip(1) accepts
        rest, problem = _zlib_stream(sink, rest, 16 + zlib.MAX_WBITS)
        members += 1
        if rest is None:
            return sink.result(f"gzip: {problem}" if problem else None)
    return sink.result(None)


def _deflate(data: bytes, limit: int) -> Decoded:
    # RFC 9110 §8.4.1.2: "deflate" means a zlib stream, but some senders use raw deflate, so a
    # stream that is not zlib from its first byte is read again as raw deflate.
    sink = _Sink(limit)
    rest, problem = _zlib_stream(sink, data, zlib.MAX_WBITS)
    if rest is None and problem and problem.startswith("corrupt") and not sink.out:
        raw_sink = _Sink(limit)
        raw_rest, raw_problem = _zlib_stream(raw_sink, data, -zlib.MAX_WBITS)
        # Keep the raw reading unless it fared no better than the zlib one.
        if raw_rest is not None or raw_sink.out or raw_sink.over:
            sink, rest, problem = raw_sink, raw_rest, raw_problem
    if rest is None:
        return sink.result(f"deflate: {problem}" if problem else None)
    if rest:
        return sink.result(f"deflate: {len(rest)} bytes of trailing data ignored")
    return sink.result(None)


def _brotli_run(data: bytes, limit: int, careful_from: int) -> tuple[Decoded, int | None]:
    """One brotli pass; input from ``careful_from`` on is fed a byte at a time.

    Returns the result and, when the decoder failed, where the failing piece of input began.
    """
    import brotli  # here, not at start-up: most runs meet no brotli body

    sink = _Sink(limit)
    d = brotli.Decompressor()
    pos = 0
    while not d.is_finished():
        if d.can_accept_more_data():
            if pos >= len(data):
                return sink.result("br: input ended before the end of the stream"), None
            step = 1 if pos >= careful_from else min(_BROTLI_FEED, careful_from - pos)
            chunk = data[pos : pos + step]
        else:
            chunk = b""
        try:
            # output_buffer_limit bounds each step; brotli then holds the rest until asked again
            # with empty input, which is what can_accept_more_data() says.
            piece = d.process(chunk, output_buffer_limit=sink.room)
        except brotli.error as exc:
            return sink.result(f"br: corrupt data ({exc})"), pos
        pos += len(chunk)
        if not sink.add(piece):
            return sink.result(None), None
        if not chunk and not piece:
            return sink.result("br: decoder made no progress"), None
    if pos < len(data):
        return sink.result(f"br: {len(data) - pos} bytes of trailing data ignored"), None
    return sink.result(None), None


def _brotli(data: bytes, limit: int) -> Decoded:
    result, failed_at = _brotli_run(data, limit, len(data))
    if failed_at is not None and len(data) - failed_at > 1:
        # A failure loses the output of the piece being decoded, so decode again, feeding that
        # piece a byte at a time, to keep everything before the damage (or stop at the end of a
        # valid stream that has trailing bytes).
        result, _ = _brotli_run(data, limit, failed_at)
    return result


def _zstd_frames_end(data: bytes) -> int | None:
    """Where the last whole zstd frame in ``data`` ends, walking headers only (RFC 8878 §3.1).

    None if a frame is cut short. Used to tell a complete stream from a truncated one, which the
    zstandard reader does not report.
    """
    pos = 0
    n = len(data)
    while pos < n:
        if n - pos < 4:
            return None
        (magic,) = struct.unpack_from("<I", data, pos)
        if magic & 0xFFFFFFF0 == 0x184D2A50:  # skippable frame: magic, 4-byte size, content
            if n - pos < 8:
                return None
            (size,) = struct.unpack_from("<I", data, pos + 4)
            pos += 8 + size
            continue
        if magic != 0xFD2FB528:
            return pos
        if n - pos < 5:
            return None
        fhd = data[pos + 4]
        single_segment = fhd & 0x20
        header = 1 + (0 if single_segment else 1) + (0, 1, 2, 4)[fhd & 3]
        header += (1 if single_segment else 0, 2, 4, 8)[fhd >> 6]
        pos += 4 + header
        while True:
            if n - pos < 3:
                return None
            block = data[pos] | data[pos + 1] << 8 | data[pos + 2] << 16
            kind = (block >> 1) & 3
            pos += 3 + (1 if kind == 1 else block >> 3)
            if block & 1:
                break
        if fhd & 4:
            pos += 4
    return n if pos <= n else None


def _zstd(data: bytes, limit: int) -> Decoded:
    warning = None
    end = _zstd_frames_end(data)
    if end is None:
        warning = "zstd: input ended before the end of the stream"
    elif end < len(data):
        # Trailing bytes would make the reader fail and lose its last read, so they are cut first.
        warning = f"zstd: {len(data) - end} bytes of trailing data ignored"
        data = data[:end]
    import zstandard  # here, not at start-up: with what it imports, 6 ms of every run

    sink = _Sink(limit)
    reader = zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True)
    try:
        while True:
            piece = reader.read(min(_ZSTD_READ, sink.room))
            if not piece:
                break
            if not sink.add(piece):
                break
    except zstandard.ZstdError as exc:
        return sink.result(f"zstd: corrupt data ({exc})")
    return sink.result(warning)


def _identity(data: bytes, limit: int) -> Decoded:
    if len(data) > limit:
        return data[:limit], _limit_warning(limit)
    return data, None


# Content-coding names (RFC 9110 §8.4.1, case-insensitive) and how to undo each.
_DECODERS: dict[str, Callable[[bytes, int], Decoded]] = {
    "gzip": _gzip,
    "x-gzip": _gzip,
    "deflate": _deflate,
    "br": _brotli,
    "zstd": _zstd,
    "identity": _identity,
}
CODINGS = frozenset(_DECODERS)


def decompress(kind: str, data: bytes, limit: int) -> tuple[bytes, str | None]:
    """Undo one coding: (output of at most ``limit`` bytes, warning or None).

    Empty input gives empty output without a warning (an empty body that names a coding).
    Raises ValueError only for a ``kind`` not in :data:`CODINGS`.
    """
    decoder = _DECODERS.get(kind.strip().lower())
    if decoder is None:
        raise ValueError(f"unknown compression {kind!r}")
    if not data:
        return b"", None
    return decoder(data, max(limit, 0))


def decode_content(encodings: str, data: bytes, limit: int) -> tuple[bytes, list[str]]:
    """Undo a Content-Encoding (or Transfer-Encoding) list such as ``"gzip, br"``.

    RFC 9110 §8.4: codings are listed in the order they were applied, so they are undone last
    first. A coding phonehome cannot undo stops there: the data is returned as it is at that
    layer, with a warning.
    """
    warnings: list[str] = []
    codings = [c.strip().lower() for c in encodings.split(",") if c.strip()]
    for coding in reversed(codings):
        if coding not in _DECODERS:
            warnings.append(f"unsupported content coding {coding!r}; data left as is")
            break
        data, warning = decompress(coding, data, limit)
        if warning:
            warnings.append(warning)
    if len(data) > limit:
        data = data[:limit]
        warnings.append(_limit_warning(limit))
    return data, warnings


# Said when a body's codings were declared but none of it could be undone.
KEPT_AS_SENT = "content coding could not be undone; body kept as sent"


def decode_body(encodings: str, body: bytes, limit: int) -> tuple[bytes, list[str]]:
    """A message body with its declared codings (``"gzip, br"``) undone, and the warnings.

    What :func:`decode_content` gives, except that where it gives nothing back and warned, the
    body is kept as sent and :data:`KEPT_AS_SENT` ends the warnings: bytes that could not be
    decoded are still scanned as they are.
    """
    if not body or not encodings:
        return body, []
    decoded, warnings = decode_content(encodings, body, limit)
    if decoded or not warnings:
        return decoded, warnings
    return body, [*warnings, KEPT_AS_SENT]


def sniff_compression(data: bytes) -> str | None:
    """Which compressed format ``data`` starts with, from its magic bytes: gzip, zlib, zstd or None.

    Brotli has no signature and is never reported.
    """
    if data.startswith(b"\x1f\x8b\x08"):
        return "gzip"
    if data.startswith(_ZSTD_MAGIC):
        return "zstd"
    if len(data) >= 2:
        cmf, flg = data[0], data[1]
        # RFC 1950 §2.2: CM 8 (deflate), CINFO <= 7, FCHECK makes CMF*256+FLG a multiple of 31.
        # A preset dictionary (FDICT) is refused: such a stream cannot be inflated without it.
        if cmf & 0x0F == 8 and cmf >> 4 <= 7 and (cmf * 256 + flg) % 31 == 0 and not flg & 0x20:
            return "zlib"
    return None
