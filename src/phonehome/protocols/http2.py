"""Sans-I/O reader for the client side of an HTTP/2 connection (RFC 9113).

Feed the client-to-server bytes (decrypted TLS, or cleartext h2c) with :meth:`RequestReader.receive_data`
and take :class:`Request` and :class:`ParseWarning` events from :meth:`~RequestReader.events`. Frames are
parsed (RFC 9113 §4.1), header blocks joined across CONTINUATION frames and decoded with HPACK
(RFC 7541, the ``hpack`` package), DATA put together per stream; a request is complete at END_STREAM,
and its body is content-decoded as an HTTP/1 body is. Memory is bounded: open streams, header list
size and body size all have limits, and a request cut by a limit says so in its warnings.

HPACK keeps state across the whole connection, so once bytes are missing (a gap in the capture) or a
header block cannot be decoded, nothing later on the connection can be read reliably: the reader
reports it and stops, handing over what the open streams held.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from dataclasses import dataclass, field

from phonehome.protocols.compression import decode_body

__all__ = ["PREFACE", "ParseWarning", "Request", "RequestReader", "looks_like_preface"]

# RFC 9113 §3.4: the client connection preface.
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_FRAME = struct.Struct("!BHBBI")  # length is 24 bits: one byte, then two
# RFC 9113 §6: frame types.
DATA, HEADERS, RST_STREAM, CONTINUATION = 0x0, 0x1, 0x3, 0x9
END_STREAM, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x4, 0x8, 0x20

KiB = 1024
MiB = 1024 * KiB


def looks_like_preface(head: bytes) -> bool:
    """Whether a stream starts (as far as it goes) with the HTTP/2 client preface."""
    n = min(len(head), len(PREFACE))
    return n >= 4 and head[:n] == PREFACE[:n]


@dataclass(frozen=True, slots=True)
class Request:
    """One request stream the client sent."""

    stream_id: int
    headers: tuple[tuple[bytes, bytes], ...]  # as decoded, in order: pseudo-headers, fields, trailers
    body: bytes  # DATA joined and content-decoded, within the bounds
    offset: int  # stream offset of the frame that opened the stream
    complete: bool  # False when the stream was reset, cut by a limit or the connection ended first
    warnings: tuple[str, ...] = ()

    def pseudo(self, name: bytes) -> bytes | None:
        """The value of a pseudo-header such as ``b":path"``, or None."""
        for key, value in self.headers:
            if key == name:
                return value
        return None

    @property
    def method(self) -> str:
        return (self.pseudo(b":method") or b"").decode("latin-1")

    @property
    def authority(self) -> str | None:
        value = self.pseudo(b":authority")
        if value is None:
            for key, host in self.headers:
                if key == b"host":
                    value = host
                    break
        return value.decode("latin-1") if value is not None else None

    @property
    def host(self) -> str | None:
        """The host of the authority, lower-case, without user info, port or trailing dot."""
        authority = self.authority
        if authority is None:
            return None
        host = authority.rpartition("@")[2]
        # RFC 3986 §3.2.2: an IPv6 literal is bracketed; otherwise a colon starts the port.
        host = host[1:].partition("]")[0] if host.startswith("[") else host.partition(":")[0]
        return host.strip().rstrip(".").lower() or None

    @property
    def path(self) -> bytes:
        return self.pseudo(b":path") or b""

    @property
    def scheme(self) -> str:
        return (self.pseudo(b":scheme") or b"https").decode("latin-1")


@dataclass(frozen=True, slots=True)
class ParseWarning:
    message: str
    offset: int


@dataclass(slots=True)
class _Stream:
    stream_id: int
    offset: int
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    body_seen: int = 0
    warnings: list[str] = field(default_factory=list)


class RequestReader:
    """Client frames in, requests out."""

    def __init__(
        self,
        *,
        preface: bool = True,
        max_streams: int = 256,
        max_header_list: int = 256 * KiB,
        max_body: int = 16 * MiB,
        max_decoded: int = 64 * MiB,
    ) -> None:
        self.max_streams = max_streams
        self.max_header_list = max_header_list
        self.max_body = max_body
        self.max_decoded = max_decoded
        self._buf = bytearray()
        self._offset = 0  # stream offset of _buf[0]
        self._need_preface = preface
        import hpack  # here: a capture without HTTP/2 never needs it (nor the logging it imports)

        self._decoder = hpack.Decoder()
        self._hpack_error = hpack.HPACKError
        # RFC 7541 §4.2: the table size is bounded by the server's SETTINGS_HEADER_TABLE_SIZE, which
        # the client direction does not show; a generous bound keeps memory finite.
        self._decoder.max_allowed_table_size = 1 * MiB
        self._decoder.max_header_list_size = max_header_list
        self._streams: OrderedDict[int, _Stream] = OrderedDict()
        # A header block waiting for its CONTINUATION frames: stream, fragments, END_STREAM.
        self._block: tuple[int, bytearray, bool, int] | None = None
        self._events: list[Request | ParseWarning] = []
        self._stopped = False

    @property
    def held(self) -> int:
        """Bytes the reader holds right now: unparsed frames, header blocks and bodies being read."""
        block = len(self._block[1]) if self._block is not None else 0
        return len(self._buf) + block + sum(len(stream.body) for stream in self._streams.values())

    # ---- input ----

    def receive_data(self, data: bytes) -> None:
        if self._stopped or not data:
            return
        self._buf += data
        self._parse()

    def receive_gap(self, length: int) -> None:
        """Bytes were lost: HPACK state and frame boundaries are gone, so reading stops here."""
        if not self._stopped:
            self._stop(f"{length} bytes missing at stream offset {self._offset + len(self._buf)}")

    def receive_eof(self) -> None:
        """The connection ended: open streams are handed over as they are."""
        self._flush("connection ended before the stream did")
        self._buf = bytearray()
        self._stopped = True

    def events(self) -> list[Request | ParseWarning]:
        out, self._events = self._events, []
        return out

    # ---- frames ----

    def _stop(self, message: str) -> None:
        self._events.append(ParseWarning(f"HTTP/2: {message}; rest of the connection not read", self._offset))
        self._flush("connection not read to the stream's end")
        self._buf = bytearray()
        self._stopped = True

    def _flush(self, why: str) -> None:
        for stream in list(self._streams.values()):
            self._finish(stream, complete=False, problem=why)
        self._streams.clear()

    def _parse(self) -> None:
        buf = self._buf
        pos = 0
        if self._need_preface:
            if len(buf) < len(PREFACE):
                if not PREFACE.startswith(bytes(buf)):
                    self._stop("stream does not start with the client preface")
                return
            if not buf.startswith(PREFACE):
                self._stop("stream does not start with the client preface")
                return
            pos = len(PREFACE)
            self._need_preface = False
        while len(buf) - pos >= 9:
            high, low, ftype, flags, stream_id = _FRAME.unpack_from(buf, pos)
            length = high << 16 | low
            end = pos + 9 + length
            if len(buf) < end:
                break
            offset = self._offset + pos
            payload = bytes(buf[pos + 9 : end])
            pos = end
            self._frame(ftype, flags, stream_id & 0x7FFFFFFF, payload, offset)
            if self._stopped:
                return
        del buf[:pos]
        self._offset += pos

    def _frame(self, ftype: int, flags: int, stream_id: int, payload: bytes, offset: int) -> None:
        if self._block is not None and ftype != CONTINUATION:
            # RFC 9113 §6.10: a header block is followed only by its CONTINUATION frames.
            self._stop(f"frame of type {ftype} inside a header block")
            return
        handler = _FRAMES.get(ftype)
        if handler is not None:
            handler(self, flags, stream_id, payload, offset)
        # Other frame types (SETTINGS, PING, WINDOW_UPDATE, PRIORITY, GOAWAY, unknown ones) carry
        # nothing the client says about its user; unknown types MUST be ignored (RFC 9113 §5.5).

    def _unpad(self, flags: int, payload: bytes) -> bytes | None:
        # RFC 9113 §6.1, §6.2: Pad Length, then the content, then that many padding octets.
        if not flags & PADDED:
            return payload
        if not payload or payload[0] >= len(payload):
            return None
        return payload[1 : len(payload) - payload[0]]

    def _data(self, flags: int, stream_id: int, payload: bytes, offset: int) -> None:
        content = self._unpad(flags, payload)
        stream = self._streams.get(stream_id)
        if stream is None:
            return  # DATA for a stream never opened (or already closed): nothing to attach it to
        if content is None:
            self._stop(f"DATA frame padding longer than the frame at offset {offset}")
            return
        stream.body_seen += len(content)
        room = self.max_body - len(stream.body)
        if room > 0:
            stream.body += content[:room]
        if flags & END_STREAM:
            self._finish(self._streams.pop(stream_id), complete=True)

    def _headers(self, flags: int, stream_id: int, payload: bytes, offset: int) -> None:
        content = self._unpad(flags, payload)
        if content is None or stream_id == 0:
            self._stop(f"malformed HEADERS frame at offset {offset}")
            return
        if flags & PRIORITY_FLAG:
            content = content[5:]  # RFC 9113 §6.2: stream dependency and weight
        self._block = (stream_id, bytearray(content), bool(flags & END_STREAM), offset)
        if flags & END_HEADERS:
            self._end_block()

    def _continuation(self, flags: int, stream_id: int, payload: bytes, offset: int) -> None:
        block = self._block
        if block is None or block[0] != stream_id:
            self._stop(f"CONTINUATION frame without its HEADERS at offset {offset}")
            return
        block[1].extend(payload)
        if len(block[1]) > self.max_header_list:
            self._stop(f"header block over {self.max_header_list} bytes")
            return
        if flags & END_HEADERS:
            self._end_block()

    def _rst_stream(self, _flags: int, stream_id: int, _payload: bytes, _offset: int) -> None:
        stream = self._streams.pop(stream_id, None)
        if stream is not None:
            self._finish(stream, complete=False, problem="stream reset by the client")

    def _end_block(self) -> None:
        assert self._block is not None
        stream_id, block, end_stream, offset = self._block
        self._block = None
        try:
            fields = self._decoder.decode(bytes(block), raw=True)
        except self._hpack_error as exc:
            self._stop(f"header block at offset {offset} cannot be decoded ({type(exc).__name__})")
            return
        headers = [(bytes(name), bytes(value)) for name, value in fields]
        stream = self._streams.get(stream_id)
        if stream is None:
            if len(self._streams) >= self.max_streams:
                _old_id, old = self._streams.popitem(last=False)
                self._finish(old, complete=False, problem=f"more than {self.max_streams} open streams")
            stream = _Stream(stream_id, offset)
            self._streams[stream_id] = stream
        elif len(stream.headers) + len(headers) > self.max_header_list // 32:
            stream.warnings.append("trailer fields beyond the header list bound dropped")
            headers = []
        # A second block on a stream is its trailers (RFC 9113 §8.1); they join the header list.
        stream.headers.extend(headers)
        if end_stream:
            self._finish(self._streams.pop(stream_id), complete=True)

    def _finish(self, stream: _Stream, *, complete: bool, problem: str | None = None) -> None:
        warnings = list(stream.warnings)
        if problem:
            warnings.append(problem)
        if stream.body_seen > self.max_body:
            warnings.append(f"body exceeds {self.max_body} bytes; truncated")
        codings = [value.decode("latin-1") for name, value in stream.headers if name == b"content-encoding"]
        body, problems = decode_body(", ".join(codings), bytes(stream.body), self.max_decoded)
        warnings.extend(problems)
        self._events.append(
            Request(stream.stream_id, tuple(stream.headers), body, stream.offset, complete, tuple(warnings))
        )


_FRAMES = {
    DATA: RequestReader._data,
    HEADERS: RequestReader._headers,
    CONTINUATION: RequestReader._continuation,
    RST_STREAM: RequestReader._rst_stream,
}
