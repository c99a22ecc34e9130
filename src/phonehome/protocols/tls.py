"""The client's first flight of a TLS connection, read far enough to name the destination (sans-I/O).

Feed the client-to-server bytes of a connection to :class:`ClientHelloReader` as they come; once the
ClientHello is complete it gives the server name (SNI), the ALPN protocols, the offered version and
cipher suites. The ClientHello may be fragmented over several records and those over several segments
(RFC 8446 §5.1); the fragments are joined, up to a bound, before the message is parsed.
"""

from __future__ import annotations

import enum
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from phonehome.errors import InputError

CONTENT_HANDSHAKE = 22
HANDSHAKE_CLIENT_HELLO = 1
EXT_SERVER_NAME = 0
EXT_ALPN = 16
EXT_SUPPORTED_VERSIONS = 43
NAME_TYPE_HOST_NAME = 0

_RECORD_HEADER = struct.Struct("!BBBH")
_MAX_FRAGMENT = 1 << 14  # RFC 8446 §5.1: TLSPlaintext.length MUST NOT exceed 2^14
_MAX_HELLO = 64 * 1024

# \DDD for bytes that are not printable ASCII, and '\' itself, so the text is unambiguous.
_OCTET_TEXT = tuple(
    "\\\\" if b == 0x5C else chr(b) if 0x21 <= b <= 0x7E else f"\\{b:03d}" for b in range(256)
)
_PLAIN = re.compile(rb"[!-\[\]-~]*")


class NeedData(enum.Enum):
    """More bytes are needed before there is anything to return."""

    NEED_DATA = "NEED_DATA"


NEED_DATA: Final = NeedData.NEED_DATA


@dataclass(frozen=True, slots=True)
class ClientHello:
    version: int  # legacy_version, or the highest of supported_versions if present
    server_name: str | None
    alpn: tuple[str, ...]
    cipher_suites: tuple[int, ...]
    offset: int  # stream offset where the handshake record began


def looks_like_tls(head: bytes) -> bool:
    """Whether a stream starts with a TLS handshake record (type 22, version 3.0 to 3.4)."""
    return len(head) >= 3 and head[0] == CONTENT_HANDSHAKE and head[1] == 3 and head[2] <= 4


def _text(raw: bytes) -> str:
    if _PLAIN.fullmatch(raw):
        return raw.decode("ascii")
    return "".join(_OCTET_TEXT[b] for b in raw)


def _is_grease(value: int) -> bool:
    # RFC 8701 §2: 0x0A0A, 0x1A1A, ..., 0xFAFA.
    return value & 0x0F0F == 0x0A0A and value >> 8 == value & 0xFF


class _Cursor:
    """Reads big-endian fields and length-prefixed vectors, raising InputError when short."""

    __slots__ = ("buf", "pos", "what")

    def __init__(self, buf: bytes, what: str) -> None:
        self.buf = buf
        self.pos = 0
        self.what = what

    @property
    def remaining(self) -> int:
        return len(self.buf) - self.pos

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.buf):
            raise InputError(f"{self.what} cut off")
        chunk = self.buf[self.pos : end]
        self.pos = end
        return chunk

    def uint(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big")

    def vector(self, length_size: int, minimum: int = 0) -> bytes:
        data = self.take(self.uint(length_size))
        if len(data) < minimum:
            raise InputError(f"{self.what}: vector shorter than {minimum} bytes")
        return data

    def end(self) -> None:
        if self.remaining:
            raise InputError(f"{self.what}: {self.remaining} unexpected trailing bytes")


@dataclass(slots=True)
class _Found:
    """What the extensions of interest said."""

    server_name: str | None = None
    alpn: tuple[str, ...] = ()
    versions: tuple[int, ...] = ()


def _server_name(found: _Found, data: bytes) -> None:
    # RFC 6066 §3.
    outer = _Cursor(data, "server_name extension")
    names = _Cursor(outer.vector(2, 1), "server_name list")
    outer.end()
    while names.remaining:
        name_type = names.uint(1)
        name = names.vector(2, 1)
        if name_type == NAME_TYPE_HOST_NAME and found.server_name is None:
            found.server_name = _text(name.lower()).removesuffix(".")


def _alpn(found: _Found, data: bytes) -> None:
    # RFC 7301 §3.1.
    outer = _Cursor(data, "ALPN extension")
    names = _Cursor(outer.vector(2, 2), "ALPN protocol list")
    outer.end()
    protocols: list[str] = []
    while names.remaining:
        protocols.append(_text(names.vector(1, 1)))
    found.alpn = tuple(protocols)


def _supported_versions(found: _Found, data: bytes) -> None:
    # RFC 8446 §4.2.1: ProtocolVersion versions<2..254> in a ClientHello.
    outer = _Cursor(data, "supported_versions extension")
    raw = outer.vector(1, 2)
    outer.end()
    if len(raw) % 2:
        raise InputError("supported_versions extension of odd length")
    found.versions = struct.unpack(f"!{len(raw) // 2}H", raw)


_EXTENSION_HEAD = struct.Struct("!HH")  # extension type, length of its data

_EXTENSIONS: dict[int, Callable[[_Found, bytes], None]] = {
    EXT_SERVER_NAME: _server_name,
    EXT_ALPN: _alpn,
    EXT_SUPPORTED_VERSIONS: _supported_versions,
}


def parse_client_hello(body: bytes, offset: int = 0) -> ClientHello:
    """Decode the body of a ClientHello handshake message (after its 4-byte header), RFC 8446 §4.1.2."""
    hello = _Cursor(body, "ClientHello")
    legacy_version = hello.uint(2)
    hello.take(32)  # random
    session_id = hello.vector(1)
    if len(session_id) > 32:
        raise InputError("ClientHello session id longer than 32 bytes")
    suites = hello.vector(2, 2)
    if len(suites) % 2:
        raise InputError("ClientHello cipher suite list of odd length")
    hello.vector(1, 1)  # compression methods
    found = _Found()
    # Extensions may be absent altogether (SSL 3.0 and early TLS clients).
    if hello.remaining:
        extensions = hello.vector(2)
        hello.end()
        seen: set[int] = set()
        # Each extension's type and length, read in one step: a phone's hello has a score of them.
        pos, size = 0, len(extensions)
        while pos < size:
            if size - pos < 4:
                raise InputError("ClientHello extensions cut off")
            ext_type, length = _EXTENSION_HEAD.unpack_from(extensions, pos)
            start, pos = pos + 4, pos + 4 + length
            if pos > size:
                raise InputError("ClientHello extensions cut off")
            handler = _EXTENSIONS.get(ext_type)
            # A repeated extension is a protocol error (RFC 8446 §4.2); the first one is kept.
            if handler is not None and ext_type not in seen:
                seen.add(ext_type)
                handler(found, extensions[start:pos])
    real_versions = [v for v in found.versions if not _is_grease(v)]
    return ClientHello(
        version=max(real_versions) if real_versions else legacy_version,
        server_name=found.server_name,
        alpn=found.alpn,
        cipher_suites=struct.unpack(f"!{len(suites) // 2}H", suites),
        offset=offset,
    )


class ClientHelloReader:
    """Collects the handshake records a client sends first and parses its ClientHello.

    ``offset`` is the stream offset of the first byte that will be given to :meth:`receive_data`.
    Bytes after the ClientHello are ignored. Buffering is bounded: at most one incomplete record
    beyond the latest input, and a ClientHello of at most 64 KiB.
    """

    __slots__ = ("_error", "_handshake", "_offset", "_pending", "_result")

    def __init__(self, *, offset: int = 0) -> None:
        self._offset = offset
        self._pending = bytearray()  # bytes of records not complete yet
        self._handshake = bytearray()  # handshake fragments joined across records
        self._result: ClientHello | None = None
        self._error: InputError | None = None

    def receive_data(self, data: bytes) -> None:
        """Take the next bytes the client sent."""
        if self._result is not None or self._error is not None or not data:
            return
        self._pending += data
        try:
            self._advance()
        except InputError as error:
            self._error = error
        if self._result is not None or self._error is not None:
            self._pending = bytearray()
            self._handshake = bytearray()

    def result(self) -> ClientHello | NeedData:
        """The ClientHello once complete, or NEED_DATA; raises InputError if it is not one."""
        if self._error is not None:
            raise self._error
        if self._result is not None:
            return self._result
        return NEED_DATA

    def _advance(self) -> None:
        pending = self._pending
        pos = 0
        while True:
            header = pending[pos : pos + _RECORD_HEADER.size]
            # Check what has arrived of the header at once, so that a stream which is not TLS
            # is refused without waiting for more.
            if header and header[0] != CONTENT_HANDSHAKE:
                raise InputError(f"TLS record of content type {header[0]} before the ClientHello")
            if len(header) >= 3 and (header[1] != 3 or header[2] > 4):
                raise InputError(f"not a TLS record: version bytes 0x{header[1]:02x} 0x{header[2]:02x}")
            if len(header) < _RECORD_HEADER.size:
                break
            length = _RECORD_HEADER.unpack(header)[3]
            if length == 0:
                # RFC 8446 §5.1: zero-length handshake fragments MUST NOT be sent.
                raise InputError("empty TLS handshake record")
            if length > _MAX_FRAGMENT:
                raise InputError(f"TLS record of {length} bytes, over the 2^14 limit")
            start = pos + _RECORD_HEADER.size
            if len(pending) < start + length:
                break
            self._handshake += pending[start : start + length]
            pos = start + length
            if self._handshake_done():
                return
        del pending[:pos]

    def _handshake_done(self) -> bool:
        handshake = self._handshake
        if handshake[0] != HANDSHAKE_CLIENT_HELLO:
            raise InputError(f"TLS handshake message of type {handshake[0]}, not a ClientHello")
        if len(handshake) < 4:
            return False
        length = int.from_bytes(handshake[1:4], "big")
        if length > _MAX_HELLO:
            raise InputError(f"ClientHello of {length} bytes, over the {_MAX_HELLO} byte limit")
        if len(handshake) < 4 + length:
            return False
        self._result = parse_client_hello(bytes(handshake[4 : 4 + length]), self._offset)
        return True
