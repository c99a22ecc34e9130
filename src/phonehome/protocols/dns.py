"""DNS messages (RFC 1035) from UDP payloads or a reassembled TCP stream (sans-I/O).

Only what naming needs is decoded: the question names and types, and the A, AAAA and CNAME answers.
The parser is written for hostile input: every length is checked against the message, compression
pointers are followed a bounded number of times and never twice to the same place, and anything
malformed raises :class:`~phonehome.errors.InputError` with a message only (the caller knows the file
and offset).
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from phonehome.errors import InputError
from phonehome.quickinit import quick_init

TYPE_A = 1
TYPE_CNAME = 5
TYPE_AAAA = 28
CLASS_IN = 1

_HEADER = struct.Struct("!HHHHHH")
_QUESTION_TAIL = struct.Struct("!HH")  # QTYPE, QCLASS
_RR_TAIL = struct.Struct("!HHIH")  # TYPE, CLASS, TTL, RDLENGTH
_LENGTH_PREFIX = struct.Struct("!H")

_HEADER_SIZE = 12
_MIN_QUESTION = 5  # root name + QTYPE + QCLASS
_MIN_RR = 11  # root name + TYPE + CLASS + TTL + RDLENGTH
_MAX_NAME = 255  # RFC 1035 §2.3.4, counted in wire octets
# A name has at most 127 labels, so a legitimate chain of pointers is never longer than that.
_MAX_POINTERS = 128

# How each octet of a label is written in presentation form (RFC 1035 §5.1): upper case folded,
# '.' and '\' escaped with a backslash, anything not printable as \DDD.
_OCTET_TEXT = tuple(
    "\\" + chr(b) if b in b".\\" else chr(b).lower() if 0x21 <= b <= 0x7E else f"\\{b:03d}"
    for b in range(256)
)
# The octets a label may hold and be written as they are (lower-cased): printable, but not '.' or '\\'.
_PLAIN_OCTETS = bytes(b for b in range(0x21, 0x7F) if b not in b".\\")


@quick_init
@dataclass(frozen=True, slots=True)
class DnsMessage:
    id: int
    is_response: bool
    queries: tuple[tuple[str, int], ...]  # (name, qtype)
    answers: tuple[tuple[str, int, str], ...]  # (owner name, rtype, data): A/AAAA address or CNAME target


def _label_text(label: bytes) -> str:
    if not label.translate(None, _PLAIN_OCTETS):
        return label.lower().decode("ascii")
    return "".join(_OCTET_TEXT[b] for b in label)


def _read_name(buf: bytes, pos: int) -> tuple[str, int]:
    """The name at ``pos`` as text (lower case, no trailing dot), and where the data after it starts."""
    labels: list[str] = []
    wire_length = 1  # the terminating root label
    after: int | None = None
    visited: set[int] | None = None  # where compression pointers led, once one is followed
    size = len(buf)
    while True:
        if pos >= size:
            raise InputError("DNS name runs past the end of the message")
        length = buf[pos]
        if length == 0:
            pos += 1
            break
        kind = length & 0xC0
        if kind == 0xC0:
            # RFC 1035 §4.1.4 compression pointer.
            if pos + 1 >= size:
                raise InputError("DNS compression pointer cut off")
            target = ((length & 0x3F) << 8) | buf[pos + 1]
            if after is None:
                after = pos + 2
            if visited is None:
                visited = set()
            if target in visited or len(visited) >= _MAX_POINTERS:
                raise InputError("DNS compression pointer loop")
            visited.add(target)
            pos = target
            continue
        if kind:
            # 0x40 is the extended label type RFC 6891 §5 retired; 0x80 was never assigned.
            raise InputError(f"unsupported DNS label type 0x{length:02x}")
        wire_length += length + 1
        if wire_length > _MAX_NAME:
            raise InputError("DNS name longer than 255 octets")
        end = pos + 1 + length
        if end > size:
            raise InputError("DNS label runs past the end of the message")
        label = buf[pos + 1 : end]
        # A label of plain octets (the usual) is read here; the others by _label_text.
        labels.append(
            label.lower().decode("ascii") if not label.translate(None, _PLAIN_OCTETS) else _label_text(label)
        )
        pos = end
    return ".".join(labels), pos if after is None else after


def _rdata_address(buf: bytes, start: int, end: int, size: int) -> str:
    if end - start != size:
        raise InputError(f"DNS address record of {end - start} octets, expected {size}")
    if size == 4:
        return ".".join(map(str, buf[start:end]))
    return ipaddress.IPv6Address(buf[start:end]).compressed


def _rdata_name(buf: bytes, start: int, end: int) -> str:
    name, after = _read_name(buf, start)
    if after > end:
        raise InputError("DNS name runs past the end of its record")
    return name


# Messages read before, by all but their 2-octet ID: a phone asks for the same few names over
# and over, each query differing from the last for that name by its ID alone, and answers repeat
# while their TTL lasts. Small messages only; emptied when full.
_SEEN: dict[bytes, DnsMessage] = {}
_SEEN_MAX = 4096
_SEEN_SIZE = 512


def parse_dns(payload: bytes) -> DnsMessage:
    """Decode one DNS message (a UDP payload, or one message taken from a TCP stream)."""
    payload = bytes(payload)
    if _HEADER_SIZE <= len(payload) <= _SEEN_SIZE:
        rest = payload[2:]
        seen = _SEEN.get(rest)
        ident = payload[0] << 8 | payload[1]
        if seen is not None:
            if seen.id == ident:
                return seen
            return DnsMessage(ident, seen.is_response, seen.queries, seen.answers)
        message = _parse_dns(payload)
        if len(_SEEN) >= _SEEN_MAX:
            _SEEN.clear()
        _SEEN[rest] = message
        return message
    return _parse_dns(payload)


def _parse_dns(payload: bytes) -> DnsMessage:
    size = len(payload)
    if size < _HEADER_SIZE:
        raise InputError(f"DNS message of {size} octets, shorter than its header")
    ident, flags, qdcount, ancount, _nscount, _arcount = _HEADER.unpack_from(payload)
    # Each entry takes some minimum room; refuse counts the message can't hold before looping.
    if qdcount * _MIN_QUESTION + ancount * _MIN_RR > size - _HEADER_SIZE:
        raise InputError("DNS record counts exceed the message")
    pos = _HEADER_SIZE
    queries: list[tuple[str, int]] = []
    for _ in range(qdcount):
        name, pos = _read_name(payload, pos)
        if pos + _QUESTION_TAIL.size > size:
            raise InputError("DNS question cut off")
        qtype, _qclass = _QUESTION_TAIL.unpack_from(payload, pos)
        pos += _QUESTION_TAIL.size
        queries.append((name, qtype))
    answers: list[tuple[str, int, str]] = []
    for _ in range(ancount):
        name, pos = _read_name(payload, pos)
        if pos + _RR_TAIL.size > size:
            raise InputError("DNS resource record cut off")
        rtype, rclass, _ttl, rdlength = _RR_TAIL.unpack_from(payload, pos)
        pos += _RR_TAIL.size
        end = pos + rdlength
        if end > size:
            raise InputError("DNS record data runs past the end of the message")
        # The top bit of the class is mDNS's cache-flush flag (RFC 6762 §10.2).
        if rclass & 0x7FFF == CLASS_IN:
            if rtype == TYPE_A:
                answers.append((name, rtype, _rdata_address(payload, pos, end, 4)))
            elif rtype == TYPE_AAAA:
                answers.append((name, rtype, _rdata_address(payload, pos, end, 16)))
            elif rtype == TYPE_CNAME:
                answers.append((name, rtype, _rdata_name(payload, pos, end)))
        pos = end
    return DnsMessage(
        id=ident,
        is_response=bool(flags & 0x8000),
        queries=tuple(queries),
        answers=tuple(answers),
    )


def split_tcp_dns(stream: bytes) -> tuple[list[bytes], bytes]:
    """Messages of a DNS-over-TCP stream (RFC 1035 §4.2.2: each after a 2-octet length), and the rest."""
    messages: list[bytes] = []
    pos = 0
    size = len(stream)
    while pos + 2 <= size:
        (length,) = _LENGTH_PREFIX.unpack_from(stream, pos)
        end = pos + 2 + length
        if end > size:
            break
        messages.append(bytes(stream[pos + 2 : end]))
        pos = end
    return messages, bytes(stream[pos:])
