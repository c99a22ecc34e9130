"""Sans-I/O parser for the client side of an HTTP/1.x connection (RFC 9112).

TCP reassembly feeds one direction of a stream (client to server) with :meth:`RequestParser.receive_data`,
:meth:`~RequestParser.receive_gap` for bytes lost from the capture and :meth:`~RequestParser.receive_eof`,
and pulls :class:`Request` and :class:`ParseWarning` events with :meth:`~RequestParser.next_event` until it
returns :data:`NEED_DATA` or :data:`EOF`, in the manner of h11.

The parser is built for captured traffic, not for serving: it is lenient where real clients are
sloppy (bare LF, obs-fold, stray whitespace), never raises on any input, keeps memory bounded, and
after damage (a gap, or bytes that are not HTTP) resynchronises on the next plausible request line,
reporting what it skipped.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from functools import lru_cache
from typing import Final
from urllib.parse import urlsplit

from phonehome.protocols.compression import decode_body
from phonehome.quickinit import quick_init

__all__ = [
    "EOF",
    "NEED_DATA",
    "Event",
    "ParseWarning",
    "Request",
    "RequestParser",
    "Signal",
    "host_of",
    "looks_like_request",
    "url_of",
]

KiB = 1024
MiB = 1024 * KiB


class Signal(Enum):
    """What :meth:`RequestParser.next_event` returns when it has no event."""

    NEED_DATA = "NEED_DATA"  # feed more data (or a gap, or EOF)
    EOF = "EOF"  # the stream ended and every event has been returned

    def __repr__(self) -> str:
        return self.value


NEED_DATA: Final = Signal.NEED_DATA
EOF: Final = Signal.EOF


@quick_init
@dataclass(frozen=True, slots=True)
class Request:
    """One request the client sent, as far as the capture holds it."""

    method: str
    target: bytes
    version: str  # "HTTP/1.1"
    headers: tuple[tuple[bytes, bytes], ...]  # names as sent, values without surrounding whitespace
    body: bytes  # de-chunked and content-decoded, within the parser's bounds
    offset: int  # stream offset of the request line
    complete: bool  # False when the stream ended or a gap came before the message did
    warnings: tuple[str, ...] = ()

    def header(self, name: bytes) -> bytes | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None


@dataclass(frozen=True, slots=True)
class ParseWarning:
    """Bytes the parser skipped or could not make sense of, and where they began."""

    offset: int
    message: str


Event = Request | ParseWarning | Signal

# RFC 9110 §5.6.2: token characters.
_TCHAR = rb"!#$%&'*+\-.^_`|~0-9A-Za-z"
_MAX_METHOD = 32
# Whitespace accepted between the parts of a request line (RFC 9112 §3 allows lenient parsing).
_WS = rb" \t\x0b\x0c\r"

_WS_BYTES = b" \t\x0b\x0c\r"
# The method and the whitespace after it, at the start of a request line.
_METHOD = re.compile(rb"([%s]{1,%d})[%s]+" % (_TCHAR, _MAX_METHOD, _WS))
_VERSION = re.compile(rb"HTTP/(1\.[0-9])")
# What the start of a request line must look like before its end has arrived.
_REQUEST_PREFIX = re.compile(rb"[%s]{1,%d}(?:[%s]|\Z)" % (_TCHAR, _MAX_METHOD, _WS))

# Methods that resynchronisation trusts: RFC 9110 §9, PATCH (RFC 5789) and WebDAV (RFC 4918).
# Plain parsing accepts any token; after damage only these are believed to start a request.
KNOWN_METHODS: Final = (
    "GET",
    "HEAD",
    "POST",
    "PUT",
    "DELETE",
    "CONNECT",
    "OPTIONS",
    "TRACE",
    "PATCH",
    "PROPFIND",
    "PROPPATCH",
    "MKCOL",
    "COPY",
    "MOVE",
    "LOCK",
    "UNLOCK",
)


def _parse_request_line(line: bytes) -> tuple[bytes, bytes, bytes] | None:
    """Method, target and version ("1.1") of a request line without its line end, or None.

    Lenient as RFC 9112 §3 allows: any whitespace run separates the parts, and a target with
    spaces inside is taken whole. Parsed by hand, not by one regular expression, so that a long
    line of spaces costs linear time.
    """
    method = _METHOD.match(line)
    if method is None:
        return None
    rest = line[method.end() :].rstrip(_WS_BYTES)
    version = _VERSION.fullmatch(rest, len(rest) - 8) if len(rest) > 8 else None
    if version is None or rest[-9] not in _WS_BYTES:
        return None
    target = rest[:-8].rstrip(_WS_BYTES)
    if not target:
        return None
    return method.group(1), target, version.group(1)


def _codings(value: bytes) -> list[str]:
    """The codings a Transfer-Encoding or Content-Encoding field lists, lower-case."""
    return [c.strip().lower() for c in value.decode("latin-1").split(",") if c.strip()]


def _length_of(values: list[bytes]) -> int | None:
    """The body length the Content-Length fields say (0 without one), or None when they are invalid."""
    if not values:
        return 0
    if len(values) == 1 and len(values[0]) <= 18 and values[0].isdigit():
        return int(values[0])  # the usual case
    # RFC 9110 §8.6: a list of identical values (from repeated fields) is one value.
    lengths = {v.strip() for raw in values for v in raw.split(b",")}
    if len(lengths) == 1:
        (value,) = lengths
        if value.isdigit():
            # Python refuses to convert very long digit strings; past 18 digits it is endless anyway.
            digits = value.lstrip(b"0") or b"0"
            return int(digits) if len(digits) <= 18 else 10**18
    return None


# A header section split at once (see split_head): where it ends, where its request line ends and
# where its empty line starts; method, target and version ("1.1"); the (name, value) fields, or
# None when a line has another shape; and the values of the Content-Length, Transfer-Encoding and
# Content-Encoding fields among them.
_Fields = list[tuple[bytes, bytes]]
Head = tuple[int, int, int, bytes, bytes, bytes, _Fields | None, list[bytes], list[bytes], list[bytes]]


def split_head(buf: bytes | bytearray, avail: int, max_header_bytes: int, max_headers: int) -> Head | None:
    """The header section at the start of ``buf[:avail]``, when it is wholly there within
    ``max_header_bytes`` and starts with a request line; None otherwise.

    Its field lines are read as :meth:`RequestParser._header_line` reads them, when all have the
    usual shape and there are at most ``max_headers``: else the fields are None, and the parser
    reads the lines one by one, with its warnings. The C module phonehome._http1 does the same.
    """
    limit = min(avail, max_header_bytes)
    crlf, lf = buf.find(b"\n\r\n", 0, limit), buf.find(b"\n\n", 0, limit)
    if crlf < 0 and lf < 0:
        return None
    # Where the empty line that ends the section starts, and where the section ends.
    blank = crlf + 1 if lf < 0 or 0 <= crlf < lf else lf + 1
    end = blank + (2 if blank == crlf + 1 else 1)
    if end > limit:
        return None
    first = buf.find(b"\n", 0, end)
    parsed = _parse_request_line(bytes(buf[:first]).removesuffix(b"\r"))
    if parsed is None:
        return None
    method, target, version = parsed
    fields: list[tuple[bytes, bytes]] = []
    lengths: list[bytes] = []
    transfer: list[bytes] = []
    content: list[bytes] = []
    for line in bytes(buf[first + 1 : blank]).split(b"\n")[:-1]:
        name, colon, value = line.removesuffix(b"\r").partition(b":")
        name = name.rstrip(b" \t")
        if not colon or not name or line[0] in b" \t" or len(fields) >= max_headers:
            return end, first, blank, method, target, version, None, [], [], []
        value = value.strip(b" \t")
        fields.append((name, value))
        if name[:1] in b"CcTt":  # the fields that frame the body
            lowered = name.lower()
            if lowered == b"content-length":
                lengths.append(value)
            elif lowered == b"transfer-encoding":
                transfer.append(value)
            elif lowered == b"content-encoding":
                content.append(value)
    return end, first, blank, method, target, version, fields, lengths, transfer, content


_split_head: Callable[[bytes | bytearray, int, int, int], Head | None]
try:  # the optional C split (setup.py); without it the function above
    from phonehome._http1 import split_head as _split_head
except ImportError:  # pragma: no cover - depends on the build
    _split_head = split_head


@lru_cache(maxsize=8)
def _resync_pattern(max_line: int) -> re.Pattern[bytes]:
    # A line of its own: known method, one space, target, one space, HTTP/1.x, end of line. Always a
    # subset of what _parse_request_line accepts, so a line found here is then parsed as a request.
    methods = b"|".join(m.encode() for m in KNOWN_METHODS)
    # The target is bounded well below max_line so that a line too long to wait for never matches.
    longest = max(1, max_line - 64)
    return re.compile(rb"(?m)^(?:%s) [^\s]{1,%d} HTTP/1\.[0-9]\r?\n" % (methods, longest))


# RFC 9112 §7.1: chunk-size [ chunk-ext ], with the whitespace some senders put around the size.
_CHUNK_SIZE = re.compile(rb"[ \t]*([0-9A-Fa-f]{1,16})[ \t]*(?:;.*)?", re.DOTALL)
_CHUNK_LINE_MAX = 4 * KiB

# The HTTP/2 connection preface (RFC 9113 §3.4) has the shape of a request line.
_H2_PREFACE = b"PRI * HTTP/2.0"


def looks_like_request(head: bytes) -> bool:
    """Whether a stream starting with ``head`` can be an HTTP/1 request stream.

    Decided from the first bytes (at most 16 are needed): a method token and a space. While fewer
    bytes have arrived, True means "could still be". A complete first line must also end in
    HTTP/1.x. The HTTP/2 preface is not HTTP/1.
    """
    head = head.lstrip(b"\r\n")
    if not head or (len(head) >= 3 and head.startswith(_H2_PREFACE[: len(head)])):
        return False
    line, lf, _ = head.partition(b"\n")
    if lf:
        return _parse_request_line(line.removesuffix(b"\r")) is not None
    window = head[:16]
    match = re.match(rb"[" + _TCHAR + rb"]{1,15}( |\Z)", window)
    if match is None:
        return False
    return bool(match.group(1)) or len(window) < 16


@lru_cache(maxsize=4096)  # a Host value recurs on every request to that host
def _authority_host(authority: bytes) -> str | None:
    host = authority.rpartition(b"@")[2]
    # An IPv6 literal is bracketed (RFC 3986 §3.2.2); otherwise a colon starts the port.
    host = host[1:].partition(b"]")[0] if host.startswith(b"[") else host.partition(b":")[0]
    host = host.strip().rstrip(b".").lower()
    return host.decode("latin-1") or None


def host_of(request: Request) -> str | None:
    """The host the request was for, lower-case and without port.

    RFC 9112 §3.2.2: an absolute-form target overrides Host; CONNECT names it in the target.
    """
    target = request.target
    if request.method == "CONNECT" and not target.startswith(b"/"):
        return _authority_host(target)
    lowered = target[:8].lower()
    if lowered.startswith((b"http://", b"https://")):
        netloc = urlsplit(target).netloc
        if netloc:
            return _authority_host(netloc)
    value = request.header(b"host")
    return _authority_host(value) if value else None


def url_of(request: Request, scheme: str = "http") -> str:
    """The request's URL: the target itself in absolute form, else scheme, Host and target."""
    target = request.target.decode("latin-1")
    if request.target[:8].lower().startswith((b"http://", b"https://")):
        return target
    host = request.header(b"host")
    authority = host.decode("latin-1") if host else (host_of(request) or "")
    if request.method == "CONNECT":
        return f"{scheme}://{target}"
    return f"{scheme}://{authority}{target}"


class _State(Enum):
    # Looked up on every step: identity is enough for a singleton, and much cheaper than Enum's
    # hash of the member's name, written in Python.
    __hash__ = object.__hash__

    HEAD = "request line and headers"
    BODY_LENGTH = "body with Content-Length"
    SKIP_LENGTH = "rest of a body after a gap"
    CHUNK_SIZE = "chunk size line"
    CHUNK_DATA = "chunk data"
    CHUNK_END = "line end after chunk data"
    TRAILERS = "trailer section"
    BODY_TO_EOF = "body to end of stream"
    RESYNC = "looking for a request line"
    TUNNEL = "CONNECT tunnel"
    DONE = "end of stream"


@dataclass(slots=True)
class _Draft:
    """The request being read."""

    offset: int
    method: str
    target: bytes
    version: str
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    head_bytes: int = 0
    dropped_headers: int = 0
    last_dropped: bool = False  # the last field line was dropped, so its continuations are too
    content_lengths: list[bytes] = field(default_factory=list)
    transfer_codings: list[str] = field(default_factory=list)
    content_codings: list[str] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    body_seen: int = 0
    left: int = 0  # bytes still expected: of the body (Content-Length) or of the current chunk
    trailer_bytes: int = 0

    @classmethod
    def begin(cls, request_line: tuple[bytes, bytes, bytes], offset: int, head_bytes: int) -> _Draft:
        """A request from its parsed request line (method, target, version), at ``offset``."""
        method, target, version = request_line
        return cls(
            offset=offset,
            method=method.decode("ascii"),
            target=target,
            version=version.decode("ascii"),
            head_bytes=head_bytes,
        )


# The stream ended in one of these ways while a request was being read.
_BY_GAP = "gap"
_BY_EOF = "end of stream"


class RequestParser:
    """Turns the client-to-server bytes of one TCP stream into :class:`Request` events.

    Memory stays bounded as long as the caller drains events after each ``receive_*`` call: in
    the header section the parser keeps at most ``max_header_bytes``; a body keeps at most
    ``max_body`` bytes as sent and ``max_decoded`` once content codings are undone.
    """

    def __init__(
        self,
        *,
        max_header_bytes: int = 64 * KiB,
        max_headers: int = 256,
        max_body: int = 16 * MiB,
        max_decoded: int = 64 * MiB,
    ) -> None:
        self.max_header_bytes = max_header_bytes
        self.max_headers = max_headers
        self.max_body = max_body
        self.max_decoded = max_decoded
        self._resync_re = _resync_pattern(max_header_bytes)

        self._buf = bytearray()
        self._data_pos = 0  # count of data bytes before _buf[0]
        self._shift = 0  # total length of gaps already passed
        self._gaps: deque[tuple[int, int]] = deque()  # (data position, length) not yet reached
        self._eof = False
        self._pending: deque[Request | ParseWarning] = deque()

        self._state = _State.HEAD
        self._draft: _Draft | None = None
        self._scan = 0  # _buf[:_scan] is known to hold no LF (line searches resume there)
        self._midline = False  # in RESYNC: _buf[0] is not at the start of a line
        self._skip_left = 0
        self._garbage_offset: int | None = None
        self._garbage_len = 0
        self._tunnel_offset: int | None = None
        self._tunnel_head = bytearray()  # first bytes of a CONNECT tunnel, for take_tunnel_data()
        self._tunnel_open = False  # still collecting them (until taken, a gap, or the bound)

    # -- input ---------------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Append the next bytes of the stream. Ignored after :meth:`receive_eof`."""
        if not self._eof and data:
            self._buf += data

    def receive_gap(self, length: int) -> None:
        """Note that ``length`` bytes of the stream are missing from the capture at this point."""
        if self._eof or length <= 0:
            return
        at = self._data_pos + len(self._buf)
        if self._gaps and self._gaps[-1][0] == at:
            self._gaps[-1] = (at, self._gaps[-1][1] + length)
        else:
            self._gaps.append((at, length))

    def receive_eof(self) -> None:
        """Note that the stream has ended."""
        self._eof = True

    @property
    def held(self) -> int:
        """Bytes of the stream the parser holds right now (buffer, body being read, tunnel head)."""
        draft = self._draft
        return len(self._buf) + (len(draft.body) if draft is not None else 0) + len(self._tunnel_head)

    @property
    def tunnel_offset(self) -> int | None:
        """Where a CONNECT tunnel began in the stream (its bytes are not parsed), or None."""
        return self._tunnel_offset

    def take_tunnel_data(self) -> bytes:
        """The bytes of the CONNECT tunnel the parser holds, once (b"" if there is none).

        Called right after the CONNECT request, this is everything buffered after its header
        section up to the first gap, so the caller can hand the tunnel to another parser and feed
        that parser the rest of the stream directly. Bytes that were pulled through
        :meth:`next_event` before this call are kept only up to ``max_header_bytes`` (enough for a
        TLS ClientHello).
        """
        if self._state is _State.TUNNEL and self._tunnel_open:
            # What is buffered already is handed over whole: it costs no more memory than it does now.
            self._tunnel_head += self._consume(self._avail())
        taken = bytes(self._tunnel_head)
        self._tunnel_head.clear()
        self._tunnel_open = False
        return taken

    # -- output --------------------------------------------------------------------------------

    def next_event(self) -> Event:
        """The next :class:`Request` or :class:`ParseWarning`, or :data:`NEED_DATA` / :data:`EOF`."""
        while not self._pending:
            signal = _STEPS[self._state](self)
            if signal is not None and not self._pending:
                return signal
        return self._pending.popleft()

    # -- buffer helpers ------------------------------------------------------------------------

    def _avail(self) -> int:
        """How many buffered bytes lie before the next gap."""
        if self._gaps:
            return self._gaps[0][0] - self._data_pos
        return len(self._buf)

    def _offset(self) -> int:
        """Stream offset of ``_buf[0]``."""
        return self._data_pos + self._shift

    def _consume(self, n: int) -> bytes:
        taken = bytes(self._buf[:n])
        self._drop(n)
        return taken

    def _drop(self, n: int) -> None:
        del self._buf[:n]
        self._data_pos += n
        self._scan = max(0, self._scan - n)

    def _ended_by(self) -> str | None:
        """Why no more contiguous bytes will come: a gap, the end of stream, or None (wait)."""
        if self._gaps:
            return _BY_GAP
        if self._eof:
            return _BY_EOF
        return None

    def _pass_gap(self) -> None:
        _, length = self._gaps.popleft()
        self._shift += length
        self._scan = 0

    def _find_lf(self, limit: int) -> int:
        """Index of the first LF in ``_buf[:limit]``, or -1 (remembering how far was searched)."""
        lf = self._buf.find(b"\n", self._scan, limit)
        self._scan = limit if lf < 0 else lf
        return lf

    def _add_garbage(self, n: int) -> None:
        if self._garbage_offset is None:
            self._garbage_offset = self._offset()
        self._garbage_len += n
        self._drop(n)

    def _flush_garbage(self) -> None:
        if self._garbage_offset is not None and self._garbage_len:
            self._pending.append(
                ParseWarning(
                    self._garbage_offset, f"skipped {self._garbage_len} bytes that are not an HTTP request"
                )
            )
        self._garbage_offset = None
        self._garbage_len = 0

    def _start_resync(self, *, midline: bool) -> None:
        self._state = _State.RESYNC
        self._midline = midline
        self._scan = 0

    # -- finishing a request -------------------------------------------------------------------

    def _finish(self, *, complete: bool, problem: str | None = None) -> None:
        draft = self._draft
        self._draft = None
        if draft is None:
            return
        warnings = list(draft.warnings)
        if problem:
            warnings.append(problem)
        if draft.dropped_headers:
            warnings.append(f"{draft.dropped_headers} header fields beyond {self.max_headers} dropped")
        if draft.body_seen > self.max_body:
            warnings.append(f"body exceeds {self.max_body} bytes; truncated")
        # Transfer codings were applied after content codings (RFC 9112 §6.1), so they come last.
        codings = ", ".join(draft.content_codings + draft.transfer_codings)
        body, problems = decode_body(codings, bytes(draft.body), self.max_decoded)
        warnings.extend(problems)
        self._pending.append(
            Request(
                method=draft.method,
                target=draft.target,
                version="HTTP/" + draft.version,
                headers=tuple(draft.headers),
                body=body,
                offset=draft.offset,
                complete=complete,
                warnings=tuple(warnings),
            )
        )

    def _cut(self, why: str, what: str) -> None:
        """End the current request as incomplete because the stream was cut by ``why``."""
        self._finish(complete=False, problem=f"{what} truncated by {why}")

    def _after_cut(self, why: str) -> Signal | None:
        """Where to go once the contiguous bytes ran out mid-message."""
        if why == _BY_GAP:
            self._pass_gap()
            self._start_resync(midline=False)
        else:
            self._state = _State.DONE
        return None

    # -- states --------------------------------------------------------------------------------

    def _step_head(self) -> Signal | None:
        avail = self._avail()
        draft = self._draft
        if not avail and draft is None and not self._gaps and not self._eof:
            return NEED_DATA  # between requests, waiting: what the steps below come to
        if draft is None:
            # RFC 9112 §2.2: empty lines before a request line are ignored.
            skip = 0
            while skip < avail and self._buf[skip] in b"\r\n":
                skip += 1
            if skip:
                self._drop(skip)
                avail -= skip
            if self._whole_head(avail):
                return None
        lf = self._find_lf(avail)
        used = draft.head_bytes if draft else 0
        if lf < 0:
            # The line is not complete yet: bound it, and reject a stream that cannot be HTTP early.
            window = min(avail, _MAX_METHOD + 1)
            if draft is None and avail and not _REQUEST_PREFIX.match(self._buf, 0, window):
                self._start_resync(midline=True)
                return None
            if used + avail > self.max_header_bytes:
                self._head_too_large()
                return None
            why = self._ended_by()
            if why is None:
                return NEED_DATA
            if draft is None and not avail:
                if why == _BY_GAP:
                    self._pass_gap()
                    self._start_resync(midline=False)
                    return None
                self._state = _State.DONE
                return None
            if draft is None:
                self._add_garbage(avail)
                self._flush_garbage()
            else:
                self._drop(avail)
                self._cut(why, "header section")
            return self._after_cut(why)
        if used + lf + 1 > self.max_header_bytes:
            self._head_too_large()
            return None
        line = self._consume(lf + 1)[:-1].removesuffix(b"\r")
        if draft is None:
            self._request_line(line, lf + 1)
            return None
        draft.head_bytes += lf + 1
        if not line:
            self._end_of_head(draft)
            return None
        self._header_line(draft, line, framing=True)
        return None

    def _whole_head(self, avail: int) -> bool:
        """Read a header section that is wholly buffered at once; False leaves it to line-by-line.

        The same as taking its lines one at a time through :meth:`_step_head` (a request line that
        parses, then field lines, then the empty line, within ``max_header_bytes``), without a
        state-machine step and a buffer cut per line (:func:`split_head`). A body of known length
        that is already buffered too is taken at once, and the request is done without a draft.
        """
        head = _split_head(self._buf, avail, self.max_header_bytes, self.max_headers)
        if head is None:
            return False
        end, first, blank, method, target, version, headers, lengths, te, ce = head
        offset = self._offset()
        if headers is None:
            # A field line of another shape (obs-fold, no colon, ...) or too many of them.
            draft = self._draft = _Draft.begin((method, target, version), offset, end)
            for line in self._consume(end)[first + 1 : blank].split(b"\n")[:-1]:
                self._header_line(draft, line.removesuffix(b"\r"), framing=True)
            self._end_of_head(draft)
            return True
        whole = self._whole_request(self._buf, avail, head, offset)
        if whole is not None:
            request, used = whole
            self._drop(used)
            self._pending.append(request)
            return True
        self._drop(end)
        transfer = [c for value in te for c in _codings(value)]
        content = [c for value in ce for c in _codings(value)]
        draft = self._draft = _Draft.begin((method, target, version), offset, end)
        draft.headers = headers
        draft.content_lengths = lengths
        draft.transfer_codings = transfer
        draft.content_codings = content
        self._end_of_head(draft)
        return True

    def _whole_request(
        self, buf: bytes | bytearray, avail: int, head: Head, offset: int
    ) -> tuple[Request, int] | None:
        """The request whose header section ``head`` split at the start of ``buf``, when its body
        (of known length) is in ``buf[:avail]`` too, and how many bytes it took; else None.

        What :meth:`_end_of_head`, :meth:`_step_body_length` and :meth:`_finish` would make of it.
        """
        end, _first, _blank, method, target, version, headers, lengths, te, ce = head
        length = _length_of(lengths)
        if te or length is None or length > min(avail - end, self.max_body) or method == b"CONNECT":
            return None
        body = bytes(buf[end : end + length]) if length else b""
        problems: list[str] = []
        if ce:
            body, problems = decode_body(
                ", ".join(c for value in ce for c in _codings(value)), body, self.max_decoded
            )
        assert headers is not None
        request = Request(
            method.decode("ascii"),
            target,
            "HTTP/" + version.decode("ascii"),
            tuple(headers),
            body,
            offset,
            True,
            tuple(problems),
        )
        return request, end + length

    def take_request(self, data: bytes) -> tuple[Request, int] | None:
        """Between requests, with nothing held: the request ``data`` begins with, when all of it
        (header section and body) is there, and how many bytes of ``data`` it took; else None,
        and nothing taken.

        The same request :meth:`receive_data` and :meth:`next_event` give, without buffering the
        bytes and stepping through the states: a phone's request mostly comes in one segment. The
        caller hands what follows it, and any ``data`` not taken, to :meth:`receive_data`.
        """
        if (
            self._buf
            or self._state is not _State.HEAD
            or self._draft is not None
            or self._gaps
            or self._pending
            or self._eof
            or self._garbage_offset is not None
            or not data
            or data[0] in b"\r\n"  # blank lines before a request line: the parser skips them
        ):
            return None
        head = _split_head(data, len(data), self.max_header_bytes, self.max_headers)
        if head is None or head[6] is None:
            return None
        whole = self._whole_request(data, len(data), head, self._offset())
        if whole is not None:
            self._data_pos += whole[1]
        return whole

    def _head_too_large(self) -> None:
        if self._draft is not None:
            self._finish(complete=False, problem=f"header section exceeds {self.max_header_bytes} bytes")
        self._start_resync(midline=True)

    def _request_line(self, line: bytes, size: int) -> None:
        parsed = _parse_request_line(line)
        offset = self._offset() - size
        if parsed is None:
            # Not a request line: count it (and its line end) as skipped, then look for one.
            self._garbage_offset = offset
            self._garbage_len = size
            self._start_resync(midline=False)
            return
        self._draft = _Draft.begin(parsed, offset, size)

    def _header_line(self, draft: _Draft, line: bytes, *, framing: bool) -> None:
        """Add one field line; ``framing`` is False in trailers, which must not affect framing."""
        into = draft.headers
        if line[0] in b" \t":
            # RFC 9112 §5.2: obs-fold continues the previous field; replace it with one space.
            if draft.last_dropped:
                return
            if into:
                name, value = into[-1]
                extra = line.strip(b" \t")
                into[-1] = (name, value + b" " + extra if value and extra else value + extra)
            else:
                draft.warnings.append("continuation line before any header field ignored")
            return
        name, colon, value = line.partition(b":")
        name = name.rstrip(b" \t")
        if not colon or not name:
            draft.warnings.append(f"malformed header line ignored: {line[:40]!r}")
            return
        value = value.strip(b" \t")
        lowered = name.lower() if framing else b""
        if lowered == b"content-length":
            draft.content_lengths.append(value)
        elif lowered == b"transfer-encoding":
            draft.transfer_codings.extend(_codings(value))
        elif lowered == b"content-encoding":
            draft.content_codings.extend(_codings(value))
        draft.last_dropped = len(into) >= self.max_headers
        if draft.last_dropped:
            draft.dropped_headers += 1
            return
        into.append((name, value))

    def _end_of_head(self, draft: _Draft) -> None:
        """The header section is complete: decide how the body is framed (RFC 9112 §6.3)."""
        if draft.method == "CONNECT":
            # RFC 9110 §9.3.6: after CONNECT the connection carries a tunnel, not HTTP.
            self._finish(complete=True)
            self._tunnel_offset = self._offset()
            self._tunnel_open = True
            self._pending.append(
                ParseWarning(self._offset(), "CONNECT tunnel: the rest of the stream is not parsed as HTTP")
            )
            self._state = _State.TUNNEL
            return
        if draft.transfer_codings:
            if draft.content_lengths:
                draft.warnings.append("both Transfer-Encoding and Content-Length; Content-Length ignored")
            if draft.transfer_codings[-1] == "chunked":
                draft.transfer_codings = [c for c in draft.transfer_codings[:-1] if c != "chunked"]
                self._state = _State.CHUNK_SIZE
            else:
                draft.warnings.append("Transfer-Encoding does not end in chunked; body read to end of stream")
                self._state = _State.BODY_TO_EOF
            return
        length = self._content_length(draft)
        if length:
            draft.left = length
            self._state = _State.BODY_LENGTH
            return
        self._finish(complete=True)
        self._state = _State.HEAD

    @staticmethod
    def _content_length(draft: _Draft) -> int:
        length = _length_of(draft.content_lengths)
        if length is None:
            draft.warnings.append(
                f"invalid Content-Length {b', '.join(draft.content_lengths)!r}; body ignored"
            )
            return 0
        return length

    def _take_body(self, draft: _Draft, n: int) -> None:
        room = self.max_body - len(draft.body)
        if room > 0:
            draft.body += self._buf[: min(n, room)]
        draft.body_seen += n
        self._drop(n)

    def _take_counted(self, draft: _Draft, avail: int) -> bool:
        """Take up to ``draft.left`` body bytes of a counted run (Content-Length or one chunk);
        True when the run is complete."""
        n = min(avail, draft.left)
        self._take_body(draft, n)
        draft.left -= n
        return not draft.left

    def _step_body_length(self) -> Signal | None:
        draft = self._draft
        assert draft is not None
        avail = self._avail()
        if avail:
            if self._take_counted(draft, avail):
                self._finish(complete=True)
                self._state = _State.HEAD
            return None
        why = self._ended_by()
        if why is None:
            return NEED_DATA
        left = draft.left
        self._cut(why, "body")
        if why == _BY_EOF:
            self._state = _State.DONE
            return None
        # The length is known, so framing survives a gap that ends inside the body.
        _, gap = self._gaps[0]
        self._pass_gap()
        if gap < left:
            self._skip_left = left - gap
            self._state = _State.SKIP_LENGTH
        elif gap == left:
            self._state = _State.HEAD
        else:
            self._start_resync(midline=False)
        return None

    def _step_skip_length(self) -> Signal | None:
        avail = self._avail()
        if avail:
            n = min(avail, self._skip_left)
            self._drop(n)
            self._skip_left -= n
            if not self._skip_left:
                self._state = _State.HEAD
            return None
        why = self._ended_by()
        if why is None:
            return NEED_DATA
        if why == _BY_EOF:
            self._state = _State.DONE
            return None
        _, gap = self._gaps[0]
        self._pass_gap()
        if gap < self._skip_left:
            self._skip_left -= gap
        elif gap == self._skip_left:
            self._state = _State.HEAD
        else:
            self._start_resync(midline=False)
        return None

    def _step_chunk_size(self) -> Signal | None:
        draft = self._draft
        assert draft is not None
        avail = self._avail()
        lf = self._find_lf(avail)
        if (lf if lf >= 0 else avail) > _CHUNK_LINE_MAX:
            self._bad_chunking(draft, "chunk size line too long")
            return None
        if lf < 0:
            why = self._ended_by()
            if why is None:
                return NEED_DATA
            self._cut(why, "body")
            return self._after_cut(why)
        line = bytes(self._buf[:lf]).removesuffix(b"\r")
        match = _CHUNK_SIZE.fullmatch(line)
        if match is None:
            self._bad_chunking(draft, f"malformed chunk size line {line[:40]!r}")
            return None
        self._drop(lf + 1)
        size = int(match.group(1), 16)
        if size:
            draft.left = size
            self._state = _State.CHUNK_DATA
        else:
            self._state = _State.TRAILERS
        return None

    def _bad_chunking(self, draft: _Draft, problem: str) -> None:
        # The framing is lost: end the request here and look for the next one from this line on.
        self._finish(complete=False, problem=problem)
        self._start_resync(midline=False)

    def _step_chunk_data(self) -> Signal | None:
        draft = self._draft
        assert draft is not None
        avail = self._avail()
        if avail:
            if self._take_counted(draft, avail):
                self._state = _State.CHUNK_END
            return None
        why = self._ended_by()
        if why is None:
            return NEED_DATA
        self._cut(why, "body")
        return self._after_cut(why)

    def _step_chunk_end(self) -> Signal | None:
        draft = self._draft
        assert draft is not None
        avail = self._avail()
        buf = self._buf
        if avail >= 1 and buf[0] == 0x0A:
            self._drop(1)
        elif avail >= 2 and buf[0] == 0x0D and buf[1] == 0x0A:
            self._drop(2)
        elif avail >= 2 or (avail == 1 and buf[0] != 0x0D):
            self._bad_chunking(draft, "chunk data not followed by a line end")
            return None
        else:
            why = self._ended_by()
            if why is None:
                return NEED_DATA
            self._drop(avail)
            self._cut(why, "body")
            return self._after_cut(why)
        self._state = _State.CHUNK_SIZE
        return None

    def _step_trailers(self) -> Signal | None:
        draft = self._draft
        assert draft is not None
        avail = self._avail()
        lf = self._find_lf(avail)
        if lf < 0:
            if draft.trailer_bytes + avail > self.max_header_bytes:
                self._finish(complete=False, problem=f"trailer section exceeds {self.max_header_bytes} bytes")
                self._start_resync(midline=True)
                return None
            why = self._ended_by()
            if why is None:
                return NEED_DATA
            # The body itself is whole; only the end of the trailer section is missing.
            self._drop(avail)
            self._finish(complete=True, problem=f"trailer section truncated by {why}")
            return self._after_cut(why)
        if draft.trailer_bytes + lf + 1 > self.max_header_bytes:
            self._finish(complete=False, problem=f"trailer section exceeds {self.max_header_bytes} bytes")
            self._start_resync(midline=True)
            return None
        draft.trailer_bytes += lf + 1
        line = self._consume(lf + 1)[:-1].removesuffix(b"\r")
        if not line:
            self._finish(complete=True)
            self._state = _State.HEAD
            return None
        # RFC 9112 §7.1.2: trailer fields follow the body; they are appended to the headers.
        self._header_line(draft, line, framing=False)
        return None

    def _step_body_to_eof(self) -> Signal | None:
        draft = self._draft
        assert draft is not None
        avail = self._avail()
        if avail:
            self._take_body(draft, avail)
            return None
        why = self._ended_by()
        if why is None:
            return NEED_DATA
        if why == _BY_EOF:
            self._finish(complete=True)
            self._state = _State.DONE
            return None
        self._cut(why, "body")
        return self._after_cut(why)

    def _step_resync(self) -> Signal | None:
        avail = self._avail()
        if self._midline:
            lf = self._find_lf(avail)
            if lf >= 0:
                self._add_garbage(lf + 1)
                self._midline = False
                return None
            if avail:
                self._add_garbage(avail)
            return self._resync_boundary()
        lf = self._find_lf(avail)
        if lf < 0:
            # Only a partial line: it cannot be judged until it ends, unless it is too long to be one.
            if avail > self.max_header_bytes:
                self._midline = True
                return None
            if avail and self._ended_by() is not None:
                self._add_garbage(avail)
            return self._resync_boundary()
        match = self._resync_re.search(self._buf, 0, avail)
        if match is None:
            last = self._buf.rfind(b"\n", 0, avail)
            self._add_garbage(last + 1)
            return None
        if match.start():
            self._add_garbage(match.start())
        self._flush_garbage()
        self._state = _State.HEAD
        return None

    def _resync_boundary(self) -> Signal | None:
        why = self._ended_by()
        if why is None:
            return NEED_DATA
        self._flush_garbage()
        if why == _BY_GAP:
            self._pass_gap()
            self._midline = False
        else:
            self._state = _State.DONE
        return None

    def _collect_tunnel(self) -> None:
        data = self._consume(self._avail())
        if self._tunnel_open:
            self._tunnel_head += data[: self.max_header_bytes - len(self._tunnel_head)]

    def _step_tunnel(self) -> Signal | None:
        if self._avail():
            self._collect_tunnel()
            return None
        why = self._ended_by()
        if why is None:
            return NEED_DATA
        if why == _BY_GAP:
            self._tunnel_open = False
            self._pass_gap()
        else:
            self._state = _State.DONE
        return None

    def _step_done(self) -> Signal | None:
        self._flush_garbage()
        if self._pending:
            return None
        if self._buf:
            self._drop(len(self._buf))
        return EOF


# What RequestParser.next_event does in each state: a table of its step methods, made once.
_STEPS: dict[_State, Callable[[RequestParser], Signal | None]] = {
    _State.HEAD: RequestParser._step_head,
    _State.BODY_LENGTH: RequestParser._step_body_length,
    _State.SKIP_LENGTH: RequestParser._step_skip_length,
    _State.CHUNK_SIZE: RequestParser._step_chunk_size,
    _State.CHUNK_DATA: RequestParser._step_chunk_data,
    _State.CHUNK_END: RequestParser._step_chunk_end,
    _State.TRAILERS: RequestParser._step_trailers,
    _State.BODY_TO_EOF: RequestParser._step_body_to_eof,
    _State.RESYNC: RequestParser._step_resync,
    _State.TUNNEL: RequestParser._step_tunnel,
    _State.DONE: RequestParser._step_done,
}
