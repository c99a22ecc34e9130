"""Packet captures (classic pcap and pcapng) turned into TCP/UDP packet events.

:class:`CaptureReader` is sans-I/O: bytes go in through :meth:`~CaptureReader.feed` in any chunking,
:class:`Packet`, :class:`Secrets` and :class:`~phonehome.model.Notice` events come out of
:meth:`~CaptureReader.events`, in file order. :func:`read_capture` is the only function here that
touches a file; it streams the file in fixed-size chunks, so memory stays flat for any file size.

Damage never aborts a read. A capture whose header cannot be read raises
:class:`~phonehome.errors.InputError`; anything after the header that is broken (a truncated
record, an absurd length, an unknown block or link type, a bad IP header) becomes a Notice that
names the byte offset, and reading resumes where the format allows: pcapng blocks carry their own
length, classic pcap records are re-found by scanning for a plausible record header.

Frame decoding is the hot path. Every layer is a function ``(buf, start, end) -> result`` that
works on offsets into the capture buffer, so no frame is copied; layers are chosen through tables
(link type, ethertype, IP protocol, IPv6 extension header), and no object is built for a frame
that turns out not to be TCP or UDP. A layer returns the decoded tuple, ``None`` for traffic that
is simply not TCP/UDP (or was cut short by the snap length), or a ``str`` describing damage.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from struct import Struct
from typing import Any, BinaryIO, Final, Protocol

from phonehome.errors import InputError
from phonehome.model import Notice
from phonehome.quickinit import quick_init

_walk_pcap: Callable[..., tuple[int, int, int, int]] | None
_walk_pcapng: Callable[..., tuple[int, int, int, int]] | None
try:  # the optional C fast lane (setup.py); without it the same walks run in Python
    from phonehome._lane import walk_pcap as _walk_pcap
    from phonehome._lane import walk_pcapng as _walk_pcapng
except ImportError:  # pragma: no cover - depends on the build
    _walk_pcap = _walk_pcapng = None

__all__ = [
    "CaptureReader",
    "Event",
    "Flush",
    "Lane",
    "Packet",
    "Secrets",
    "decode_frame",
    "read_capture",
    "sniff_capture",
]


@quick_init
@dataclass(frozen=True, slots=True)
class Packet:
    """One TCP or UDP packet from the capture."""

    time: float  # epoch seconds
    offset: int  # byte offset in the file of this packet's record (pcap) or block (pcapng)
    proto: int  # 6 = TCP, 17 = UDP
    src: bytes  # packed IP address, 4 or 16 bytes
    dst: bytes
    sport: int
    dport: int
    flags: int  # TCP flags byte (0 for UDP)
    seq: int  # TCP sequence number (0 for UDP)
    payload: bytes  # transport payload, trimmed to the IP length (link-layer padding removed)


@dataclass(frozen=True, slots=True)
class Secrets:
    """A pcapng Decryption Secrets Block (type 0x0000000A)."""

    offset: int
    secrets_type: int  # e.g. 0x544C534B 'TLSK' = TLS key log
    data: bytes


@dataclass(frozen=True, slots=True)
class Flush:
    """Packets the reader passed over or handed to its :class:`Lane` left output in the lane's owner."""

    offset: int  # of the record (pcap) or block (pcapng) of the packet after which the output waits


Event = Packet | Secrets | Notice | Flush


class Lane(Protocol):
    """Takes the packets the reader decodes, and lets it pass over, undecoded, IPv4 TCP packets that
    cannot change what a flow yields.

    A reader with a lane yields no :class:`Packet`: it hands each packet it decodes to :meth:`packet`
    as it reaches it, and when that returns True (the lane's owner has output to hand on), yields a
    :class:`Flush`. The C walk (``phonehome._lane``) decodes plain IPv4 packets and calls ``packet``
    itself, without returning to Python between packets.

    ``lanes`` maps the 12 bytes of an IPv4 TCP packet's addresses and ports (source address,
    destination address, source port, destination port, as on the wire) to the owner's flow and
    whether every packet in that direction without SYN, FIN or RST can be passed over; when it
    says False, only those that also carry no payload are. For packets passed over the reader calls
    :meth:`pass_over` instead of yielding a :class:`Packet`; when that returns True (the owner has
    output to hand on), the reader yields a :class:`Flush`.

    The reader may hand on a run of ``count`` consecutive packets of one flow in one call (the
    last at ``time``), never more than :meth:`passable` said before the run began: the owner's
    state after the call is then what it would be after one call per packet.
    """

    lanes: dict[bytes, tuple[Any, bool]]

    def pass_over(self, flow: Any, time: float, count: int = 1) -> bool: ...

    def passable(self) -> int:
        """How many packets may be passed over in one run before :meth:`pass_over` is called."""
        ...

    def packet(
        self,
        time: float,
        proto: int,
        src: bytes,
        dst: bytes,
        sport: int,
        dport: int,
        flags: int,
        seq: int,
        payload: bytes,
    ) -> bool:
        """A decoded packet (the fields of :class:`Packet` but its offset); True when output waits."""
        ...


# --------------------------------------------------------------------------------------------
# Frame decoding: link layer -> IPv4/IPv6 -> TCP/UDP

Decoded = tuple[int, bytes, bytes, int, int, int, int, bytes]
_Result = Decoded | str | None
_Layer = Callable[[bytes, int, int], _Result]
_Transport = Callable[[bytes, int, int, bytes, bytes], _Result]

_TCP_HDR: Final = Struct(">HHI4xBB")  # sport, dport, seq, data offset, flags (RFC 9293 §3.1)
_UDP_HDR: Final = Struct(">HH")  # sport, dport (RFC 768)
_IP4_HDR: Final = Struct(">BxH2xHxB")  # version/IHL, total length, flags/fragment offset, protocol
_IP6_HDR: Final = Struct(">IHB")  # version/class/label, payload length, next header (RFC 8200 §3)
_U16_BE: Final = Struct(">H")
_U32_LE: Final = Struct("<I")

_TCP: Final = 6
_UDP: Final = 17
_IP6_FRAGMENT: Final = 44


def _tcp(buf: bytes, off: int, end: int, src: bytes, dst: bytes) -> _Result:
    if end - off < 20:
        return None
    sport, dport, seq, doff, flags = _TCP_HDR.unpack_from(buf, off)
    hlen = (doff >> 2) & 0x3C
    if hlen < 20:
        return f"TCP data offset {hlen // 4} is below 5"
    return (_TCP, src, dst, sport, dport, flags, seq, buf[off + hlen : end])


def _udp(buf: bytes, off: int, end: int, src: bytes, dst: bytes) -> _Result:
    if end - off < 8:
        return None
    sport, dport = _UDP_HDR.unpack_from(buf, off)
    return (_UDP, src, dst, sport, dport, 0, 0, buf[off + 8 : end])


_TRANSPORTS: Final[dict[int, _Transport]] = {_TCP: _tcp, _UDP: _udp}


def _ip4(buf: bytes, off: int, end: int) -> _Result:
    if end - off < 20:
        return None
    vihl, total, frag, proto = _IP4_HDR.unpack_from(buf, off)
    if vihl >> 4 != 4:
        return f"IPv4 header with version {vihl >> 4}"
    ihl = (vihl & 0x0F) << 2
    if ihl < 20:
        return f"IPv4 header length {ihl} is below 20"
    if frag & 0x1FFF:  # not the first fragment: no transport header here (RFC 791 §3.1)
        return None
    transport = _TRANSPORTS.get(proto)
    if transport is None:
        return None
    # A total length of 0 is what TSO leaves in locally captured outgoing packets: use the frame.
    if total:
        if total < ihl:
            return f"IPv4 total length {total} is below the header length {ihl}"
        if off + total < end:
            end = off + total
    return transport(buf, off + ihl, end, buf[off + 12 : off + 16], buf[off + 16 : off + 20])


# IPv6 extension headers before the transport header (RFC 8200 §4): next header -> (a, m, c), the
# header's length in bytes being (its length byte + a) * m + c.
_IP6_EXTENSIONS: Final[dict[int, tuple[int, int, int]]] = {
    0: (1, 8, 0),  # hop-by-hop options
    43: (1, 8, 0),  # routing
    _IP6_FRAGMENT: (0, 0, 8),  # fragment: fixed 8 bytes
    51: (2, 4, 0),  # authentication header (RFC 4302 §2.2: 32-bit words minus 2)
    60: (1, 8, 0),  # destination options
    135: (1, 8, 0),  # mobility
    139: (1, 8, 0),  # host identity protocol
    140: (1, 8, 0),  # shim6
}


def _ip6(buf: bytes, off: int, end: int) -> _Result:
    if end - off < 40:
        return None
    vcl, plen, nxt = _IP6_HDR.unpack_from(buf, off)
    if vcl >> 28 != 6:
        return f"IPv6 header with version {vcl >> 28}"
    # A payload length of 0 means a jumbogram or TSO: use the frame.
    if plen and off + 40 + plen < end:
        end = off + 40 + plen
    pos = off + 40
    while True:
        transport = _TRANSPORTS.get(nxt)
        if transport is not None:
            return transport(buf, pos, end, buf[off + 8 : off + 24], buf[off + 24 : off + 40])
        ext = _IP6_EXTENSIONS.get(nxt)
        if ext is None or end - pos < 8:
            return None
        if nxt == _IP6_FRAGMENT and _U16_BE.unpack_from(buf, pos + 2)[0] & 0xFFF8:
            return None  # not the first fragment
        nxt = buf[pos]
        pos += (buf[pos + 1] + ext[0]) * ext[1] + ext[2]


def _vlan(buf: bytes, off: int, end: int) -> _Result:
    # 802.1Q / 802.1ad tags, any number of them stacked: TCI (2 bytes), then the next ethertype.
    while True:
        if end - off < 4:
            return None
        ethertype = buf[off + 2] << 8 | buf[off + 3]
        off += 4
        if ethertype not in _VLAN_ETHERTYPES:
            break
    layer = _ETHERTYPES.get(ethertype)
    return None if layer is None else layer(buf, off, end)


def _pppoe(buf: bytes, off: int, end: int) -> _Result:
    # PPPoE session header (6 bytes, RFC 2516 §4) and the PPP protocol number (RFC 1661 §2).
    if end - off < 8:
        return None
    layer = _PPP_PROTOCOLS.get(buf[off + 6] << 8 | buf[off + 7])
    return None if layer is None else layer(buf, off + 8, end)


_VLAN_ETHERTYPES: Final = frozenset({0x8100, 0x88A8, 0x9100})
_ETHERTYPES: Final[dict[int, _Layer]] = {
    0x0800: _ip4,
    0x86DD: _ip6,
    0x8100: _vlan,
    0x88A8: _vlan,
    0x9100: _vlan,
    0x8864: _pppoe,
}
_PPP_PROTOCOLS: Final[dict[int, _Layer]] = {0x0021: _ip4, 0x0057: _ip6}


def _ethernet(buf: bytes, off: int, end: int) -> _Result:
    if end - off < 14:
        return None
    layer = _ETHERTYPES.get(buf[off + 12] << 8 | buf[off + 13])
    return None if layer is None else layer(buf, off + 14, end)


def _sll(buf: bytes, off: int, end: int) -> _Result:
    # Linux cooked capture v1: 16-byte header, protocol (an ethertype) in the last 2 bytes.
    if end - off < 16:
        return None
    layer = _ETHERTYPES.get(buf[off + 14] << 8 | buf[off + 15])
    return None if layer is None else layer(buf, off + 16, end)


def _sll2(buf: bytes, off: int, end: int) -> _Result:
    # Linux cooked capture v2: 20-byte header, protocol (an ethertype) in the first 2 bytes.
    if end - off < 20:
        return None
    layer = _ETHERTYPES.get(buf[off] << 8 | buf[off + 1])
    return None if layer is None else layer(buf, off + 20, end)


_RAW_BY_VERSION: Final[dict[int, _Layer]] = {4: _ip4, 6: _ip6}


def _raw(buf: bytes, off: int, end: int) -> _Result:
    if end <= off:
        return None
    layer = _RAW_BY_VERSION.get(buf[off] >> 4)
    if layer is None:
        return f"raw IP frame with version {buf[off] >> 4}"
    return layer(buf, off, end)


# BSD loopback: a 4-byte address family, in the capturing host's byte order for NULL (0) and in
# network order for LOOP (108); the table holds both orders so one function serves both.
_LOOPBACK_FAMILIES: Final[dict[int, _Layer]] = {
    fam: layer
    for value, layer in ((2, _ip4), (24, _ip6), (28, _ip6), (30, _ip6))
    for fam in (value, value << 24)
}


def _loopback(buf: bytes, off: int, end: int) -> _Result:
    if end - off < 4:
        return None
    layer = _LOOPBACK_FAMILIES.get(_U32_LE.unpack_from(buf, off)[0])
    return None if layer is None else layer(buf, off + 4, end)


# Link-layer header types (https://www.tcpdump.org/linktypes.html).
_LINKTYPES: Final[dict[int, _Layer]] = {
    0: _loopback,  # NULL
    1: _ethernet,  # EN10MB
    12: _raw,  # DLT_RAW on most systems
    14: _raw,  # DLT_RAW on OpenBSD
    101: _raw,  # RAW
    108: _loopback,  # LOOP
    113: _sll,  # LINUX_SLL
    228: _ip4,  # IPV4
    229: _ip6,  # IPV6
    276: _sll2,  # LINUX_SLL2
}


_LaneLink = tuple[Callable[[bytes, int], tuple[Any, ...]], int, int | bytes, int]


def _lane_link(ip_off: int, etype_off: int) -> _LaneLink:
    """How the fast lane reads a link layer whose IPv4 header is at ``ip_off`` in the frame, with
    the ethertype at ``etype_off`` (-1: raw IP, none): a reader of the ethertype (b"" when there
    is none), version/IHL, total length, flags/fragment offset and protocol from the frame start;
    ``ip_off``; the ethertype value meaning IPv4; and ``etype_off`` for the C walk."""
    if etype_off < 0:
        return Struct(f">{ip_off}x0sBxH2xHxB").unpack_from, ip_off, b"", etype_off
    gap = ip_off - etype_off - 2
    return Struct(f">{etype_off}xH{gap}xBxH2xHxB").unpack_from, ip_off, 0x0800, etype_off


# Link layers the fast lane reads (see Lane): frame decoder -> _lane_link(...).
_LANE_LINKS: Final[dict[_Layer, _LaneLink]] = {
    _ethernet: _lane_link(14, 12),
    _sll: _lane_link(16, 14),
    _sll2: _lane_link(20, 0),
    _raw: _lane_link(0, -1),
    _ip4: _lane_link(0, -1),
}


def _lane_flow(buf: bytes, frame: int, frame_end: int, link: _LaneLink, lanes: dict[bytes, Any]) -> Any:
    """The lane's flow for the frame from ``frame`` to ``frame_end`` when the lane takes it: a plain
    IPv4 TCP packet of a known flow, with headers whole and no option, fragment or damage the
    decoders would report, and nothing in it the flow needs (see Lane). Else None."""
    lane_hdr, lane_ip, lane_eth, _etype_off = link
    ip = frame + lane_ip
    if frame_end - ip < 40:
        return None
    eth, vihl, total, frag, proto = lane_hdr(buf, frame)
    if proto != _TCP or vihl != 0x45 or eth != lane_eth or frag & 0x1FFF or 0 < total < 40:
        return None
    entry = lanes.get(buf[ip + 12 : ip + 24])
    # Data offset of 5 or more, and none of FIN, SYN, RST (RFC 9293 §3.1).
    if entry is None or buf[ip + 32] < 0x50 or buf[ip + 33] & 0x07:
        return None
    ip_end = ip + total if total and ip + total < frame_end else frame_end
    if entry[1] or ip_end <= ip + 20 + ((buf[ip + 32] >> 2) & 0x3C):
        return entry[0]
    return None


# Why the C walk stopped: the record at its position is not whole yet, or is for the Python loop
# to read; or the lane's pass_over or packet returned True.
_LANE_NEED_BYTES: Final = 0
_LANE_FLUSHED: Final = 2


def decode_frame(linktype: int, frame: bytes) -> Decoded | None:
    """``(proto, src, dst, sport, dport, flags, seq, payload)`` of a TCP/UDP frame, else None."""
    layer = _LINKTYPES.get(linktype)
    if layer is None:
        return None
    result = layer(frame, 0, len(frame))
    return None if isinstance(result, str) else result


# --------------------------------------------------------------------------------------------
# Container formats

# Classic pcap magic (as the first 4 file bytes) -> (byte order, fraction units per second,
# record header length). 0xA1B2CD34 is Alexey Kuznetzov's modified pcap, whose record headers
# carry 8 more bytes (interface index, protocol, packet type).
_PCAP_MAGICS: Final[dict[bytes, tuple[str, float, int]]] = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e6, 16),
    b"\xa1\xb2\xc3\xd4": (">", 1e6, 16),
    b"\x4d\x3c\xb2\xa1": ("<", 1e9, 16),
    b"\xa1\xb2\x3c\x4d": (">", 1e9, 16),
    b"\x34\xcd\xb2\xa1": ("<", 1e6, 24),
    b"\xa1\xb2\xcd\x34": (">", 1e6, 24),
}
_PCAP_FILE_HDR_LEN: Final = 24
_MAX_CAPLEN: Final = 256 * 1024  # libpcap's MAXIMUM_SNAPLEN
_MAX_ORIGLEN: Final = (1 << 24) - 1  # resync plausibility only: far above any real frame
_RESYNC_WINDOW: Final = 7 * 86400  # seconds a re-found record may lie from its neighbour
_RESYNC_BUDGET: Final = 16 * 1024 * 1024  # bytes scanned for a plausible record before giving up

# A candidate record header: captured length < 2**18 + 2**16 and original length < 2**24. Only a
# cheap prefilter run at C speed; every hit is checked exactly in Python.
_PCAP_CANDIDATE: Final[dict[str, re.Pattern[bytes]]] = {
    "<": re.compile(rb"(?=.{10}[\x00-\x04]\x00.{3}\x00)", re.DOTALL),
    ">": re.compile(rb"(?=.{8}\x00[\x00-\x04].{2}\x00)", re.DOTALL),
}

_SHB: Final = 0x0A0D0D0A
_SHB_MAGIC: Final = b"\x0a\x0d\x0d\x0a"  # the same in either byte order
_BYTE_ORDER_MAGICS: Final[dict[bytes, str]] = {b"\x4d\x3c\x2b\x1a": "<", b"\x1a\x2b\x3c\x4d": ">"}
_IDB: Final = 0x00000001
_PB: Final = 0x00000002  # obsolete Packet Block
_SPB: Final = 0x00000003
_EPB: Final = 0x00000006
_DSB: Final = 0x0000000A
_MAX_BLOCK: Final = 16 * 1024 * 1024
_RESYNC_MAX_BLOCK: Final = 1024 * 1024
# Smallest valid total length of each block type this reader knows.
_MIN_BLOCK: Final[dict[int, int]] = {
    _SHB: 28,
    _IDB: 20,
    _PB: 32,
    _SPB: 16,
    0x00000004: 16,  # Name Resolution Block
    0x00000005: 24,  # Interface Statistics Block
    _EPB: 32,
    _DSB: 20,
}
# Block types in the pcapng registry that carry nothing phonehome reads (with the Hone project's
# 0x101... and Sysdig's 0x201... ranges): skipped without a notice. Types with the top bit set are
# for local use and skipped the same way.
_IGNORED_BLOCKS: Final = frozenset(
    {
        0x00000004,  # Name Resolution Block
        0x00000005,  # Interface Statistics Block
        0x00000007,  # IRIG Timestamp Block
        0x00000008,  # ARINC 429 in AFDX Encapsulation Information Block
        0x00000009,  # systemd Journal Export Block
        0x00000BAD,  # Custom Block (copyable)
        0x40000BAD,  # Custom Block (not copyable)
        *range(0x101, 0x109),  # Hone project
        *range(0x201, 0x220),  # Sysdig
    }
)
_UNKNOWN_BLOCK_NOTICES: Final = 16
_MAX_INTERFACES: Final = 1 << 16  # per section; bounds the state a stream of IDBs can build
# Block types worth re-finding after damage, as bytes in each byte order (SHB in either).
_NG_CANDIDATE: Final[dict[str, re.Pattern[bytes]]] = {
    "<": re.compile(rb"\x0a\x0d\x0d\x0a|[\x01-\x06\x0a]\x00\x00\x00"),
    ">": re.compile(rb"\x0a\x0d\x0d\x0a|\x00\x00\x00[\x01-\x06\x0a]"),
    "shb": re.compile(rb"\x0a\x0d\x0d\x0a"),
}
_OPT_IF_TSRESOL: Final = 9
_OPT_IF_TSOFFSET: Final = 14


def sniff_capture(head: bytes) -> str | None:
    """``"pcap"``, ``"pcapng"`` or None, from the first bytes of a file (12 are enough)."""
    magic = bytes(head[:4])
    if magic in _PCAP_MAGICS:
        return "pcap"
    if magic == _SHB_MAGIC and (len(head) < 12 or bytes(head[8:12]) in _BYTE_ORDER_MAGICS):
        return "pcapng"
    return None


@dataclass(slots=True)
class _Structs:
    """The pcapng structures of one byte order."""

    u32: Struct
    head: Struct  # block type, block total length
    shb: Struct  # major, minor version
    idb: Struct  # link type, reserved, snap length
    epb: Struct  # interface id, timestamp high, low, captured length, original length
    pb: Struct  # interface id, drops, timestamp high, low, captured length, original length
    dsb: Struct  # secrets type, secrets length
    opt: Struct  # option code, option length
    i64: Struct


def _structs(order: str) -> _Structs:
    return _Structs(
        u32=Struct(order + "I"),
        head=Struct(order + "II"),
        shb=Struct(order + "HH"),
        idb=Struct(order + "HHI"),
        epb=Struct(order + "IIIII"),
        pb=Struct(order + "HHIIII"),
        dsb=Struct(order + "II"),
        opt=Struct(order + "HH"),
        i64=Struct(order + "q"),
    )


_NG_STRUCTS: Final = {order: _structs(order) for order in ("<", ">")}

# One interface of a pcapng section: frame decoder (None: link type not supported), timestamp
# units per second, timestamp offset in seconds, snap length.
_Interface = tuple[_Layer | None, float, int, int]

_Run = Generator[Event, None, bool]


class CaptureReader:
    """Sans-I/O: feed bytes in any chunking, get events out. Detects pcap vs pcapng from the magic.

    :meth:`events` drains everything decodable so far and stops when it needs more bytes; after
    :meth:`close` it also reports what was left over. It raises :class:`InputError` only when the
    input is not a capture or its file header is unreadable; once raised, it raises it again.
    """

    def __init__(self, source: str = "<capture>", lane: Lane | None = None) -> None:
        self._source = source
        self._lane = lane
        self._buf = b""
        self._pos = 0  # parse position in _buf
        self._base = 0  # file offset of _buf[0]
        self._pending: list[bytes] = []
        self._closed = False
        self._done = False
        self._error: InputError | None = None
        self._run: Callable[[], _Run] = self._run_head
        # classic pcap
        self._rec = Struct("<IIII")
        self._hlen = 16
        self._div = 1e6
        self._frac_max = 1_000_000
        self._limit = _MAX_CAPLEN
        self._snaplen = 0
        self._decode: _Layer | None = None
        self._last_sec: int | None = None
        # pcapng
        self._order = "<"
        self._ng = _NG_STRUCTS["<"]
        self._ifaces: list[_Interface] = []
        # per interface, how the fast lane reads it (None: it does not): for the Python loop, and
        # (ip_off, etype_off, units, tsoffset) for the C walk
        self._lane_links: list[_LaneLink | None] = []
        self._walk_links: tuple[tuple[int, int, float, float] | None, ...] = ()
        self._too_many_ifaces = False
        self._first_section = True
        self._unknown_blocks: set[int] = set()
        # resynchronisation after damage
        self._damage_at = 0
        self._damage = ""
        self._scan = 0
        self._shb_only = False

    # -- public interface ---------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Add the next bytes of the capture."""
        if self._closed:
            raise RuntimeError("CaptureReader.feed() after close()")
        if not data:
            return
        if self._run == self._run_dropping:
            return
        self._pending.append(bytes(data))

    def close(self) -> None:
        """Mark the end of input; the next :meth:`events` reports anything left incomplete."""
        self._closed = True

    @property
    def unread(self) -> int:
        """Bytes fed that the reader has not read yet."""
        return len(self._buf) - self._pos + sum(map(len, self._pending))

    def release(self) -> int:
        """Give back the bytes fed but not read yet (the start of a record that is not whole), and
        say how many: the caller feeds them again, with what follows them.

        A caller that can read them again (a seekable file) goes back by that much, so that each
        chunk it feeds begins at a record: the reader then never joins the rest of one chunk to
        the next, which copies the whole next chunk.
        """
        if self._pending or self._closed:
            return 0
        held = len(self._buf) - self._pos
        self._base += self._pos
        self._pos = 0
        self._buf = b""
        return held

    def events(self) -> Iterator[Event]:
        """Every event decodable from the bytes fed so far, in file order."""
        if self._error is not None:
            raise self._error
        try:
            while True:
                if self._pending:
                    self._merge()
                again = yield from self._run()
                if again or self._pending:
                    continue
                if self._closed and not self._done:
                    self._done = True
                    yield from self._finish()
                return
        except InputError as exc:
            exc.located(self._source)
            self._error = exc
            raise

    # -- buffer ---------------------------------------------------------------------------------

    def _merge(self) -> None:
        rest = self._buf[self._pos :] if self._pos < len(self._buf) else b""
        pending = self._pending
        if not rest and len(pending) == 1:
            self._buf = pending[0]
        else:
            self._buf = b"".join([rest, *pending])
        pending.clear()
        self._base += self._pos
        self._pos = 0

    def _notice(self, message: str, offset: int | None) -> Notice:
        return Notice(self._source, message, offset)

    def _damaged(self, message: str, offset: int | None) -> Notice:
        """The file's own structure is broken here: the input cannot be read whole."""
        return Notice(self._source, message, offset, damage=True)

    def _fail(self, message: str, offset: int) -> InputError:
        return InputError(message, source=self._source, offset=offset)

    # -- format detection ---------------------------------------------------------------------

    def _run_head(self) -> _Run:
        buf = self._buf
        if len(buf) < 4:
            return False
        magic = buf[:4]
        pcap = _PCAP_MAGICS.get(magic)
        if pcap is not None:
            if len(buf) < _PCAP_FILE_HDR_LEN:
                return False
            order, units, hlen = pcap
            major, minor, _zone, _sigfigs, snaplen, network = Struct(order + "HHiIII").unpack_from(buf, 4)
            if major != 2:
                raise self._fail(f"unsupported pcap version {major}.{minor}", 4)
            self._order = order
            self._rec = Struct(order + ("IIII" if hlen == 16 else "IIII8x"))
            self._hlen = hlen
            self._div = units
            self._frac_max = int(units)
            self._snaplen = snaplen
            self._limit = min(snaplen, _MAX_CAPLEN) if snaplen else _MAX_CAPLEN
            linktype = network & 0xFFFF  # upper bits: FCS length flags
            self._decode = _LINKTYPES.get(linktype)
            self._pos = _PCAP_FILE_HDR_LEN
            self._run = self._run_pcap
            if self._decode is None:
                yield self._notice(f"unsupported link type {linktype}: its frames are skipped", 20)
            return True
        if magic == _SHB_MAGIC:
            self._run = self._run_pcapng
            return True
        raise self._fail(f"not a pcap or pcapng capture (starts with {bytes(magic).hex()})", 0)

    # -- classic pcap ---------------------------------------------------------------------------

    def _run_pcap(self) -> _Run:
        buf = self._buf
        pos = self._pos
        base = self._base
        end = len(buf)
        rec = self._rec.unpack_from
        hlen = self._hlen
        limit = self._limit
        div = self._div
        decode = self._decode
        last_sec = self._last_sec
        packet = Packet
        lane = self._lane
        lanes = lane.lanes if lane is not None else None
        pass_over = lane.pass_over if lane is not None else None
        take = lane.packet if lane is not None else None
        link = _LANE_LINKS.get(decode) if decode is not None else None
        if link is None:
            lanes = None
        else:
            lane_ip, etype_off = link[1], link[3]
        # The C walk (phonehome._lane) passes over what the loop below would, the same way, decodes
        # plain IPv4 TCP and UDP packets as the decoders would and hands them to the lane, and stops
        # at the first record this loop must read itself.
        walk = None
        if lane is not None and link is not None and decode is not None and _walk_pcap is not None:
            walk, walk_lanes, walk_pass_over, walk_passable = (
                _walk_pcap,
                lane.lanes,
                lane.pass_over,
                lane.passable,
            )
            big = self._order == ">"
        while end - pos >= hlen:
            if walk is not None:
                pos, walked, stop, at = walk(
                    buf,
                    pos,
                    end,
                    hlen,
                    big,
                    div,
                    limit,
                    lane_ip,
                    etype_off,
                    walk_lanes,
                    walk_pass_over,
                    walk_passable,
                    -1 if last_sec is None else last_sec,
                    take,
                )
                if walked >= 0:
                    last_sec = walked
                if stop == _LANE_FLUSHED:
                    self._pos = pos
                    self._last_sec = last_sec
                    yield Flush(base + at)
                    continue
                if stop == _LANE_NEED_BYTES:
                    break
            sec, frac, caplen, _origlen = rec(buf, pos)
            if caplen > limit:
                self._pos = pos
                self._last_sec = last_sec
                verdict = self._oversized_record(buf, pos, end, caplen)
                if verdict is None:
                    return False
                if not verdict:
                    self._start_resync(
                        pos + 1,
                        f"record claims {caplen} captured bytes (limit {limit})",
                        pos,
                    )
                    return True
                limit = self._limit = _MAX_CAPLEN
                yield self._notice(
                    f"record lengths exceed the snap length {self._snaplen} of the file header", base + pos
                )
            nxt = pos + hlen + caplen
            if nxt > end:
                break
            last_sec = sec
            if lanes and walk is None:
                # The fast lane: passed over without building a Packet.
                assert link is not None and pass_over is not None
                flow = _lane_flow(buf, pos + hlen, nxt, link, lanes)
                if flow is not None:
                    if pass_over(flow, sec + frac / div):
                        self._pos = nxt
                        self._last_sec = sec
                        yield Flush(base + pos)
                    pos = nxt
                    continue
            if decode is not None:
                result = decode(buf, pos + hlen, nxt)
                if result is not None:
                    self._pos = nxt
                    self._last_sec = sec
                    if isinstance(result, str):
                        yield Notice(self._source, f"frame skipped: {result}", base + pos)
                    elif take is None:
                        yield packet(sec + frac / div, base + pos, *result)
                    elif take(sec + frac / div, *result):
                        yield Flush(base + pos)
            pos = nxt
        self._pos = pos
        self._last_sec = last_sec
        return False

    def _oversized_record(self, buf: bytes, pos: int, end: int, caplen: int) -> bool | None:
        """Whether a record longer than the snap length is still a real one (None: need bytes)."""
        if caplen > _MAX_CAPLEN:
            return False
        nxt = pos + self._hlen + caplen
        if nxt + self._hlen <= end:
            return self._plausible_record(buf, nxt, self._rec.unpack_from(buf, pos)[0])
        if self._closed:
            return nxt == end
        return None

    def _plausible_record(self, buf: bytes, pos: int, near: int | None) -> bool:
        sec, frac, caplen, origlen = self._rec.unpack_from(buf, pos)
        return (
            caplen <= _MAX_CAPLEN
            and caplen <= origlen <= _MAX_ORIGLEN
            and frac < self._frac_max
            and (near is None or abs(sec - near) <= _RESYNC_WINDOW)
        )

    def _candidate_record(self, buf: bytes, pos: int, end: int) -> bool | None:
        """Whether a record header could start at ``pos``: itself and the next one plausible."""
        hlen = self._hlen
        if end - pos < hlen:
            return False if self._closed else None
        sec, _frac, caplen, _origlen = self._rec.unpack_from(buf, pos)
        if caplen == 0 or not self._plausible_record(buf, pos, self._last_sec):
            return False
        nxt: int = pos + hlen + caplen
        if nxt + hlen <= end:
            return self._plausible_record(buf, nxt, sec)
        if self._closed:
            return nxt == end
        return None

    def _resync_pcap(self) -> _Run:
        buf = self._buf
        base = self._base
        end = len(buf)
        pos = self._scan - base
        search = _PCAP_CANDIDATE[self._order].search
        while True:
            match = search(buf, pos)
            if match is None:
                pos = max(pos, end - self._hlen + 1)
                break
            pos = match.start()
            if base + pos > self._damage_at + _RESYNC_BUDGET:
                break
            verdict = self._candidate_record(buf, pos, end)
            if verdict is None:
                break
            if verdict:
                yield self._resynced(base + pos)
                self._pos = pos
                self._run = self._run_pcap
                return True
            pos += 1
        return (yield from self._resync_wait(pos))

    # -- pcapng ---------------------------------------------------------------------------------

    def _run_pcapng(self) -> _Run:
        buf = self._buf
        pos = self._pos
        base = self._base
        end = len(buf)
        ng = self._ng
        head = ng.head.unpack_from
        u32 = ng.u32.unpack_from
        epb = ng.epb.unpack_from
        ifaces = self._ifaces
        packet = Packet
        lane = self._lane
        lanes = lane.lanes if lane is not None else None
        pass_over = lane.pass_over if lane is not None else None
        take = lane.packet if lane is not None else None
        # The C walk (phonehome._lane) takes the EPBs the loop below would take, the same way.
        walk = _walk_pcapng if lane is not None else None
        big = self._order == ">"
        while end - pos >= 12:
            if walk is not None:
                assert lane is not None
                pos, _sec, stop, at = walk(
                    buf, pos, end, big, self._walk_links, _MAX_BLOCK, lanes, pass_over, lane.passable, take
                )
                if stop == _LANE_FLUSHED:
                    self._pos = pos
                    yield Flush(base + at)
                    continue
                if stop == _LANE_NEED_BYTES:
                    break
            btype, blen = head(buf, pos)
            if btype == _SHB:
                self._pos = pos
                return (yield from self._section(buf, pos, end))
            if blen < 12 or blen & 3 or blen > _MAX_BLOCK:
                self._start_resync(pos + 4, f"block of type {btype:#x} claims length {blen}", pos)
                return True
            nxt = pos + blen
            if nxt > end:
                break
            if u32(buf, nxt - 4)[0] != blen:
                self._start_resync(
                    pos + 4,
                    f"block of type {btype:#x} has length {blen} but trailing length {u32(buf, nxt - 4)[0]}",
                    pos,
                )
                return True
            if btype == _EPB and blen >= 32:
                ifid, high, low, caplen, _origlen = epb(buf, pos + 8)
                if ifid < len(ifaces) and caplen <= blen - 32:
                    decode, units, tsoffset, _snaplen = ifaces[ifid]
                    link = self._lane_links[ifid]
                    if lanes and walk is None and link is not None:
                        # The fast lane: passed over without building a Packet.
                        assert pass_over is not None
                        flow = _lane_flow(buf, pos + 28, pos + 28 + caplen, link, lanes)
                        if flow is not None:
                            if pass_over(flow, ((high << 32) | low) / units + tsoffset):
                                self._pos = nxt
                                yield Flush(base + pos)
                            pos = nxt
                            continue
                    if decode is not None:
                        result = decode(buf, pos + 28, pos + 28 + caplen)
                        if result is not None:
                            self._pos = nxt
                            time = ((high << 32) | low) / units + tsoffset
                            if isinstance(result, str):
                                yield Notice(self._source, f"frame skipped: {result}", base + pos)
                            elif take is None:
                                yield packet(time, base + pos, *result)
                            elif take(time, *result):
                                yield Flush(base + pos)
                    pos = nxt
                    continue
            self._pos = nxt
            yield from self._block(buf, pos, btype, blen)
            pos = nxt
        self._pos = pos
        return False

    def _section(self, buf: bytes, pos: int, end: int) -> _Run:
        """A Section Header Block at ``pos``: sets byte order, forgets the previous interfaces."""
        if end - pos < 12:
            return False
        base = self._base
        order = _BYTE_ORDER_MAGICS.get(buf[pos + 8 : pos + 12])
        if order is None:
            return self._bad_section("section header with an unknown byte-order magic", pos, 8)
        ng = _NG_STRUCTS[order]
        blen = ng.u32.unpack_from(buf, pos + 4)[0]
        if blen < 28 or blen & 3 or blen > _MAX_BLOCK:
            return self._bad_section(f"section header claims length {blen}", pos, 4)
        if pos + blen > end:
            return False
        if ng.u32.unpack_from(buf, pos + blen - 4)[0] != blen:
            return self._bad_section(f"section header length {blen} differs from its trailing copy", pos, 4)
        major, minor = ng.shb.unpack_from(buf, pos + 12)
        self._pos = pos + blen
        if major != 1:
            if self._first_section:
                raise self._fail(f"unsupported pcapng version {major}.{minor}", base + pos + 12)
            self._shb_only = True
            self._start_resync(pos + blen, f"section of unsupported pcapng version {major}.{minor}", pos)
            return True
        self._first_section = False
        self._order = order
        self._ng = ng
        self._ifaces = []
        self._lane_links = []
        self._walk_links = ()
        self._too_many_ifaces = False
        yield from ()
        return True

    def _bad_section(self, message: str, pos: int, field: int) -> bool:
        if self._first_section:
            raise self._fail(message, self._base + pos + field)
        self._start_resync(pos + 4, message, pos)
        return True

    def _block(self, buf: bytes, pos: int, btype: int, blen: int) -> Iterator[Event]:
        """A complete block other than a Section Header Block (well-formed EPBs take the fast path)."""
        offset = self._base + pos
        handler = self._BLOCKS.get(btype)
        if handler is not None:
            yield from handler(self, buf, pos, blen, offset)
        elif btype not in _IGNORED_BLOCKS and not btype & 0x80000000:
            seen = self._unknown_blocks
            if len(seen) < _UNKNOWN_BLOCK_NOTICES and btype not in seen:
                seen.add(btype)
                last = len(seen) == _UNKNOWN_BLOCK_NOTICES
                more = " (further unknown types are not reported)" if last else ""
                yield self._notice(f"unknown block type {btype:#010x} skipped{more}", offset)

    def _interface_block(self, buf: bytes, pos: int, blen: int, offset: int) -> Iterator[Event]:
        ng = self._ng
        if blen < 20:
            yield self._notice(f"interface description block too short ({blen} bytes)", offset)
            return
        if len(self._ifaces) >= _MAX_INTERFACES:
            if not self._too_many_ifaces:
                self._too_many_ifaces = True
                yield self._notice(
                    f"more than {_MAX_INTERFACES} interfaces in one section: the rest ignored", offset
                )
            return
        linktype, _reserved, snaplen = ng.idb.unpack_from(buf, pos + 8)
        units = 1e6
        tsoffset = 0
        opt = pos + 16
        stop = pos + blen - 4
        while stop - opt >= 4:
            code, olen = ng.opt.unpack_from(buf, opt)
            if code == 0:  # opt_endofopt
                break
            value = opt + 4
            if value + olen > stop:
                yield self._notice("interface description block has a malformed option", offset)
                break
            if code == _OPT_IF_TSRESOL and olen >= 1:
                # Top bit set: a negative power of 2, else of 10 (pcapng §4.2, if_tsresol).
                resol = buf[value]
                units = float(2 ** (resol & 0x7F)) if resol & 0x80 else float(10**resol)
            elif code == _OPT_IF_TSOFFSET and olen >= 8:
                tsoffset = ng.i64.unpack_from(buf, value)[0]
            opt = value + ((olen + 3) & ~3)
        decode = _LINKTYPES.get(linktype)
        if decode is None:
            yield self._notice(
                f"interface {len(self._ifaces)} has unsupported link type {linktype}: its frames are skipped",
                offset,
            )
        self._ifaces.append((decode, units, tsoffset, snaplen))
        link = _LANE_LINKS.get(decode) if decode is not None else None
        self._lane_links.append(link)
        walk_link = None if link is None else (link[1], link[3], units, float(tsoffset))
        self._walk_links = (*self._walk_links, walk_link)

    def _frame(self, ifid: int, start: int, caplen: int, time_units: int, offset: int) -> Iterator[Event]:
        """The frame of a PB, an SPB, or an EPB that did not take the fast path."""
        if ifid >= len(self._ifaces):
            yield self._notice(f"packet on interface {ifid}, which no interface block declared", offset)
            return
        decode, units, tsoffset, _snaplen = self._ifaces[ifid]
        if decode is None:
            return
        result = decode(self._buf, start, start + caplen)
        if isinstance(result, str):
            yield self._notice(f"frame skipped: {result}", offset)
        elif result is not None:
            yield Packet(time_units / units + tsoffset if time_units >= 0 else 0.0, offset, *result)

    def _enhanced_packet_block(self, buf: bytes, pos: int, blen: int, offset: int) -> Iterator[Event]:
        if blen < 32:
            yield self._notice(f"enhanced packet block too short ({blen} bytes)", offset)
            return
        ifid, high, low, caplen, _origlen = self._ng.epb.unpack_from(buf, pos + 8)
        if caplen > blen - 32:
            yield self._notice(
                f"enhanced packet block claims {caplen} captured bytes, beyond its end", offset
            )
            return
        yield from self._frame(ifid, pos + 28, caplen, (high << 32) | low, offset)

    def _packet_block(self, buf: bytes, pos: int, blen: int, offset: int) -> Iterator[Event]:
        if blen < 32:
            yield self._notice(f"packet block too short ({blen} bytes)", offset)
            return
        ifid, _drops, high, low, caplen, _origlen = self._ng.pb.unpack_from(buf, pos + 8)
        if caplen > blen - 32:
            yield self._notice(f"packet block claims {caplen} captured bytes, beyond its end", offset)
            return
        yield from self._frame(ifid, pos + 28, caplen, (high << 32) | low, offset)

    def _simple_packet_block(self, buf: bytes, pos: int, blen: int, offset: int) -> Iterator[Event]:
        if blen < 16:
            yield self._notice(f"simple packet block too short ({blen} bytes)", offset)
            return
        # No captured length: the original length, bounded by the block and the snap length.
        # No timestamp either: the packet's time is reported as 0.0.
        caplen = min(self._ng.u32.unpack_from(buf, pos + 8)[0], blen - 16)
        if self._ifaces and self._ifaces[0][3]:
            caplen = min(caplen, self._ifaces[0][3])
        yield from self._frame(0, pos + 12, caplen, -1, offset)

    def _secrets_block(self, buf: bytes, pos: int, blen: int, offset: int) -> Iterator[Event]:
        if blen < 20:
            yield self._notice(f"decryption secrets block too short ({blen} bytes)", offset)
            return
        stype, slen = self._ng.dsb.unpack_from(buf, pos + 8)
        if slen > blen - 20:
            yield self._notice(f"decryption secrets block claims {slen} bytes, more than it holds", offset)
            return
        yield Secrets(offset, stype, buf[pos + 16 : pos + 16 + slen])

    _BLOCKS: Final[dict[int, Callable[[CaptureReader, bytes, int, int, int], Iterator[Event]]]] = {
        _IDB: _interface_block,
        _PB: _packet_block,
        _SPB: _simple_packet_block,
        _EPB: _enhanced_packet_block,
        _DSB: _secrets_block,
    }

    def _candidate_block(self, buf: bytes, pos: int, end: int) -> bool | None:
        """Whether a valid block starts at ``pos`` (None: need more bytes to tell)."""
        if end - pos < 12:
            return False if self._closed else None
        btype = self._ng.u32.unpack_from(buf, pos)[0]
        if btype == _SHB:
            order = _BYTE_ORDER_MAGICS.get(buf[pos + 8 : pos + 12])
            if order is None:
                return False
            u32 = _NG_STRUCTS[order].u32
        elif self._shb_only:
            return False
        else:
            u32 = self._ng.u32
        blen = u32.unpack_from(buf, pos + 4)[0]
        if blen < _MIN_BLOCK.get(btype, 12) or blen & 3 or blen > _RESYNC_MAX_BLOCK:
            return False
        if pos + blen > end:
            return False if self._closed else None
        return bool(u32.unpack_from(buf, pos + blen - 4)[0] == blen)

    def _resync_pcapng(self) -> _Run:
        buf = self._buf
        base = self._base
        end = len(buf)
        pos = self._scan - base
        search = _NG_CANDIDATE["shb" if self._shb_only else self._order].search
        while True:
            match = search(buf, pos)
            if match is None:
                pos = max(pos, end - 3)
                break
            pos = match.start()
            misaligned = (base + pos) & 3
            if misaligned:
                pos += 4 - misaligned
                continue
            if base + pos > self._damage_at + _RESYNC_BUDGET:
                break
            verdict = self._candidate_block(buf, pos, end)
            if verdict is None:
                break
            if verdict:
                yield self._resynced(base + pos)
                self._shb_only = False
                self._pos = pos
                self._run = self._run_pcapng
                return True
            pos += 4
        return (yield from self._resync_wait(pos))

    # -- resynchronisation, end of input --------------------------------------------------------

    def _start_resync(self, scan_from: int, damage: str, damage_pos: int) -> None:
        self._damage = damage
        self._damage_at = self._base + damage_pos
        self._scan = self._base + scan_from
        self._run = self._resync_pcap if self._run == self._run_pcap else self._resync_pcapng

    def _resynced(self, offset: int) -> Notice:
        skipped = offset - self._damage_at
        what = "record" if self._run == self._resync_pcap else "block"
        return self._damaged(
            f"{self._damage}; skipped {skipped} bytes to the next valid {what} at offset {offset}",
            self._damage_at,
        )

    def _resync_wait(self, pos: int) -> _Run:
        """Scanning reached ``pos`` with no valid record yet: drop what is behind, maybe give up.

        Giving up depends only on how far the scan got, never on how the input was chunked.
        """
        self._pos = min(pos, len(self._buf))
        self._scan = self._base + pos
        if self._scan <= self._damage_at + _RESYNC_BUDGET:
            return False
        yield self._damaged(
            f"{self._damage}; no valid record in the {_RESYNC_BUDGET} bytes after it, "
            "the rest of the input is skipped",
            self._damage_at,
        )
        self._run = self._run_dropping
        return True

    def _run_dropping(self) -> _Run:
        self._buf = b""
        self._pos = 0
        self._pending.clear()
        yield from ()
        return False

    def _finish(self) -> Iterator[Event]:
        end = self._base + len(self._buf)
        start = self._base + self._pos
        left = end - start
        run = self._run
        if run == self._run_head or (run == self._run_pcapng and self._first_section):
            if end == 0:
                raise self._fail("empty file, not a capture", 0)
            if sniff_capture(self._buf) is None:
                raise self._fail("too short to be a capture", 0)
            raise self._fail("file header is truncated", end)
        if run == self._run_pcap and left:
            if left < self._hlen:
                yield self._damaged(f"truncated record header ({left} of {self._hlen} bytes)", start)
            else:
                caplen = self._rec.unpack_from(self._buf, self._pos)[2]
                yield self._damaged(
                    f"truncated record ({left - self._hlen} of {caplen} captured bytes present)", start
                )
        elif run == self._run_pcapng and left:
            if left < 12:
                yield self._damaged(f"truncated block header ({left} of 12 bytes)", start)
            else:
                blen = self._ng.u32.unpack_from(self._buf, self._pos + 4)[0]
                yield self._damaged(f"truncated block ({left} of {blen} bytes present)", start)
        elif run in (self._resync_pcap, self._resync_pcapng):
            yield self._damaged(
                f"{self._damage}; no valid record follows, the remaining {end - self._damage_at} bytes "
                "are skipped",
                self._damage_at,
            )


def read_capture(
    path: str | os.PathLike[str],
    chunk_size: int = 1 << 20,
    lane: Lane | None = None,
    handle: BinaryIO | None = None,
) -> Iterator[Event]:
    """Stream a pcap or pcapng file from disk through a :class:`CaptureReader`; from ``handle``,
    when given, instead of opening ``path`` (the reading then closes it)."""
    if chunk_size < 1:
        raise ValueError("chunk_size must be positive")
    source = os.fspath(path)
    reader = CaptureReader(source, lane)
    if handle is None:
        try:
            handle = open(source, "rb")  # noqa: SIM115 - closed by the with below, inside the generator
        except OSError as exc:
            raise InputError(f"cannot open: {exc.strerror or exc}", source=source) from exc
    offset = 0
    with handle:
        seekable = handle.seekable()
        while True:
            try:
                chunk = handle.read(chunk_size)
            except OSError as exc:
                raise InputError(f"cannot read: {exc.strerror or exc}", source=source, offset=offset) from exc
            if not chunk:
                break
            offset += len(chunk)
            reader.feed(chunk)
            yield from reader.events()
            if seekable and len(chunk) == chunk_size:
                # The unread end of this chunk is read again with the next one (see release);
                # only when the reader went past some of it, so that every turn moves on.
                held = reader.release() if reader.unread < len(chunk) else 0
                if held:
                    try:
                        handle.seek(-held, os.SEEK_CUR)
                    except OSError as exc:
                        raise InputError(
                            f"cannot seek: {exc.strerror or exc}", source=source, offset=offset
                        ) from exc
                    offset -= held
    reader.close()
    yield from reader.events()
