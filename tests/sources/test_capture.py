"""Tests for phonehome.sources.capture: frame decoding, pcap and pcapng reading, damage, corpus."""

from __future__ import annotations

import dataclasses
import io
import struct
import tracemalloc
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import dpkt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phonehome.errors import InputError
from phonehome.model import Notice
from phonehome.protocols.flows import FlowTable
from phonehome.sources import capture
from phonehome.sources.capture import (
    CaptureReader,
    Event,
    Flush,
    Packet,
    Secrets,
    decode_frame,
    read_capture,
    sniff_capture,
)

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"

CLIENT4 = bytes([10, 0, 0, 2])
SERVER4 = bytes([93, 184, 216, 34])
CLIENT6 = bytes.fromhex("20010db8000000000000000000000002")
SERVER6 = bytes.fromhex("2a0004e0000000000000000000000034")
HTTP = b"GET /track?imei=356938035643809 HTTP/1.1\r\nHost: t.example.com\r\n\r\n"
DNS = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x01t\x07example\x03com\x00\x00\x01\x00\x01"
MAC_A = b"\x02\x00\x00\x00\x00\x01"
MAC_B = b"\x02\x00\x00\x00\x00\x02"
PUSH_ACK = dpkt.tcp.TH_PUSH | dpkt.tcp.TH_ACK

TCP4 = (6, CLIENT4, SERVER4, 40000, 80, PUSH_ACK, 1000, HTTP)
UDP4 = (17, CLIENT4, SERVER4, 5353, 53, 0, 0, DNS)
TCP6 = (6, CLIENT6, SERVER6, 40000, 80, PUSH_ACK, 1000, HTTP)
UDP6 = (17, CLIENT6, SERVER6, 5353, 53, 0, 0, DNS)


# ---------------------------------------------------------------------------------------------
# Building frames and captures with dpkt


def tcp(payload: bytes = HTTP, opts: bytes = b"", seq: int = 1000) -> dpkt.tcp.TCP:
    return dpkt.tcp.TCP(
        sport=40000, dport=80, seq=seq, flags=PUSH_ACK, opts=opts, off=5 + len(opts) // 4, data=payload
    )


def udp(payload: bytes = DNS) -> dpkt.udp.UDP:
    return dpkt.udp.UDP(sport=5353, dport=53, ulen=8 + len(payload), data=payload)


def ip4(l4: dpkt.Packet, **kw: object) -> dpkt.ip.IP:
    proto = 6 if isinstance(l4, dpkt.tcp.TCP) else 17
    return dpkt.ip.IP(src=CLIENT4, dst=SERVER4, p=proto, ttl=64, data=l4, **kw)


def ip6(l4: dpkt.Packet) -> dpkt.ip6.IP6:
    proto = 6 if isinstance(l4, dpkt.tcp.TCP) else 17
    return dpkt.ip6.IP6(src=CLIENT6, dst=SERVER6, nxt=proto, hlim=64, plen=len(bytes(l4)), data=l4)


def eth(l3: dpkt.Packet | bytes, **kw: object) -> bytes:
    return bytes(dpkt.ethernet.Ethernet(src=MAC_A, dst=MAC_B, data=l3, **kw))


def vlan_tags(*ids: int) -> list[dpkt.ethernet.VLANtag8021Q]:
    return [dpkt.ethernet.VLANtag8021Q(id=i) for i in ids]


def pcap(
    frames: Iterable[tuple[float, bytes]],
    linktype: int = 1,
    order: str = "<",
    nano: bool = False,
    snaplen: int = 65535,
    modified: bool = False,
) -> bytes:
    """A classic pcap built from dpkt's header classes, in either byte order."""
    le = order == "<"
    magic = (
        dpkt.pcap.MODPCAP_MAGIC
        if modified
        else (dpkt.pcap.TCPDUMP_MAGIC_NANO if nano else dpkt.pcap.TCPDUMP_MAGIC)
    )
    file_hdr = dpkt.pcap.LEFileHdr if le else dpkt.pcap.FileHdr
    if modified:
        rec_hdr = dpkt.pcap.LEPktModHdr if le else dpkt.pcap.PktModHdr
    else:
        rec_hdr = dpkt.pcap.LEPktHdr if le else dpkt.pcap.PktHdr
    units = 1_000_000_000 if nano else 1_000_000
    out = [bytes(file_hdr(magic=magic, snaplen=snaplen, linktype=linktype))]
    for ts, frame in frames:
        sec = int(ts)
        frac = round((ts - sec) * units)
        out.append(bytes(rec_hdr(tv_sec=sec, tv_usec=frac, caplen=len(frame), len=len(frame))) + frame)
    return b"".join(out)


def option(order: str, code: int, data: bytes) -> dpkt.pcapng.PcapngOption:
    return (dpkt.pcapng.PcapngOptionLE if order == "<" else dpkt.pcapng.PcapngOption)(code=code, data=data)


def shb(order: str = "<", major: int = 1) -> bytes:
    kls = dpkt.pcapng.SectionHeaderBlockLE if order == "<" else dpkt.pcapng.SectionHeaderBlock
    return bytes(kls(v_major=major))


def idb(
    order: str = "<", linktype: int = 1, tsresol: int | None = None, tsoffset: int | None = None
) -> bytes:
    opts = []
    if tsresol is not None:
        opts.append(option(order, dpkt.pcapng.PCAPNG_OPT_IF_TSRESOL, bytes([tsresol])))
    if tsoffset is not None:
        opts.append(option(order, dpkt.pcapng.PCAPNG_OPT_IF_TSOFFSET, struct.pack(order + "q", tsoffset)))
    if opts:
        opts.append(option(order, dpkt.pcapng.PCAPNG_OPT_ENDOFOPT, b""))
    kls = dpkt.pcapng.InterfaceDescriptionBlockLE if order == "<" else dpkt.pcapng.InterfaceDescriptionBlock
    return bytes(kls(linktype=linktype, snaplen=65535, opts=opts))


def epb(frame: bytes, ts: int, order: str = "<", iface: int = 0) -> bytes:
    kls = dpkt.pcapng.EnhancedPacketBlockLE if order == "<" else dpkt.pcapng.EnhancedPacketBlock
    return bytes(kls(iface_id=iface, ts_high=ts >> 32, ts_low=ts & 0xFFFFFFFF, pkt_data=frame))


def pb(frame: bytes, ts: int, order: str = "<", iface: int = 0) -> bytes:
    kls = dpkt.pcapng.PacketBlockLE if order == "<" else dpkt.pcapng.PacketBlock
    return bytes(kls(iface_id=iface, ts_high=ts >> 32, ts_low=ts & 0xFFFFFFFF, pkt_data=frame))


def raw_block(btype: int, body: bytes, order: str = "<") -> bytes:
    """A block dpkt has no class for (SPB, DSB, ISB, custom): body padded to 32 bits."""
    body += b"\x00" * (-len(body) % 4)
    length = 12 + len(body)
    return struct.pack(order + "II", btype, length) + body + struct.pack(order + "I", length)


def spb(frame: bytes, order: str = "<") -> bytes:
    return raw_block(3, struct.pack(order + "I", len(frame)) + frame, order)


def dsb(secrets: bytes, order: str = "<") -> bytes:
    return raw_block(10, struct.pack(order + "II", 0x544C534B, len(secrets)) + secrets, order)


def read(data: bytes, chunks: Sequence[int] = (), source: str = "t.pcap") -> list[Event]:
    """Everything a reader yields for ``data``, fed cut at ``chunks`` and drained after each feed."""
    reader = CaptureReader(source)
    events: list[Event] = []
    start = 0
    for cut in [*chunks, len(data)]:
        reader.feed(data[start:cut])
        events.extend(reader.events())
        start = cut
    reader.close()
    events.extend(reader.events())
    return events


def packets(events: Iterable[Event]) -> list[Packet]:
    return [e for e in events if isinstance(e, Packet)]


def notices(events: Iterable[Event]) -> list[Notice]:
    return [e for e in events if isinstance(e, Notice)]


def fields(p: Packet) -> tuple[int, bytes, bytes, int, int, int, int, bytes]:
    return (p.proto, p.src, p.dst, p.sport, p.dport, p.flags, p.seq, p.payload)


# ---------------------------------------------------------------------------------------------
# Frame decoding, every link type

IP4_TCP = bytes(ip4(tcp()))
IP6_UDP = bytes(ip6(udp()))
IP6_TCP = bytes(ip6(tcp()))


def _pppoe(ip: bytes) -> bytes:
    session = struct.pack(">BBHH", 0x11, 0, 0x1234, len(ip) + 2) + b"\x00\x21"
    return MAC_B + MAC_A + b"\x88\x64" + session + ip


def _stacked(*tpids: int) -> bytes:
    """Ethernet with one VLAN tag per TPID, outermost first, then IPv4."""
    tags = b"".join(struct.pack(">HH", tpid, 100 + i) for i, tpid in enumerate(tpids))
    return MAC_B + MAC_A + tags + b"\x08\x00" + IP4_TCP


LINK_CASES = {
    "ethernet ipv4 tcp": (1, eth(ip4(tcp())), TCP4),
    "ethernet ipv4 udp": (1, eth(ip4(udp())), UDP4),
    "ethernet ipv6 tcp": (1, eth(ip6(tcp())), TCP6),
    "ethernet ipv6 udp": (1, eth(ip6(udp())), UDP6),
    "802.1Q": (1, eth(ip4(tcp()), vlan_tags=vlan_tags(10)), TCP4),
    "802.1ad + 802.1Q": (1, eth(ip6(udp()), vlan_tags=vlan_tags(100, 10)), UDP6),
    "0x9100 single tag": (1, eth(ip4(udp()), type=0x9100, vlan_tags=vlan_tags(5)), UDP4),
    "three stacked tags": (1, _stacked(0x88A8, 0x9100, 0x8100), TCP4),
    "pppoe session": (1, _pppoe(IP4_TCP), TCP4),
    "linux sll": (113, bytes(dpkt.sll.SLL(ethtype=0x0800, data=ip4(tcp()))), TCP4),
    "linux sll ipv6": (113, bytes(dpkt.sll.SLL(ethtype=0x86DD, data=ip6(udp()))), UDP6),
    "linux sll2": (276, bytes(dpkt.sll2.SLL2(ethtype=0x86DD, data=ip6(tcp()))), TCP6),
    "linux sll2 ipv4": (276, bytes(dpkt.sll2.SLL2(ethtype=0x0800, data=ip4(udp()))), UDP4),
    "raw 101 ipv4": (101, IP4_TCP, TCP4),
    "raw 101 ipv6": (101, IP6_UDP, UDP6),
    "raw 12": (12, IP4_TCP, TCP4),
    "raw 14": (14, IP6_TCP, TCP6),
    "ipv4 228": (228, IP4_TCP, TCP4),
    "ipv6 229": (229, IP6_UDP, UDP6),
    "null little-endian AF_INET": (0, struct.pack("<I", 2) + IP4_TCP, TCP4),
    "null big-endian AF_INET": (0, struct.pack(">I", 2) + IP4_TCP, TCP4),
    "null AF_INET6 24": (0, struct.pack("<I", 24) + IP6_TCP, TCP6),
    "null AF_INET6 28": (0, struct.pack(">I", 28) + IP6_UDP, UDP6),
    "null AF_INET6 30": (0, struct.pack("<I", 30) + IP6_TCP, TCP6),
    "loop 108": (108, struct.pack(">I", 2) + IP4_TCP, TCP4),
    "loop 108 ipv6": (108, struct.pack(">I", 30) + IP6_UDP, UDP6),
}


@pytest.mark.parametrize("case", LINK_CASES)
def test_decode_frame_every_link_type(case: str) -> None:
    linktype, frame, expected = LINK_CASES[case]
    assert decode_frame(linktype, frame) == expected


@pytest.mark.parametrize("case", LINK_CASES)
def test_decode_frame_never_raises_on_a_cut_frame(case: str) -> None:
    linktype, frame, expected = LINK_CASES[case]
    for cut in range(len(frame)):
        result = decode_frame(linktype, frame[:cut])
        assert result is None or result[:7] == expected[:7]


def test_ethernet_padding_is_trimmed_to_the_ip_length() -> None:
    frame = eth(ip4(udp(b"hi")))
    padded = frame + b"\xaa" * (60 - len(frame)) + b"\xde\xad\xbe\xef"  # padding, then an FCS
    assert decode_frame(1, padded) == (17, CLIENT4, SERVER4, 5353, 53, 0, 0, b"hi")
    frame6 = eth(ip6(tcp(b"x")))
    assert decode_frame(1, frame6 + b"\x00" * 8) == (6, CLIENT6, SERVER6, 40000, 80, PUSH_ACK, 1000, b"x")


def test_ip_and_tcp_options_are_skipped() -> None:
    opts = b"\x01\x01\x08\x0a" + b"\x00\x00\x00\x01\x00\x00\x00\x02"  # NOP NOP timestamps
    frame = eth(ip4(tcp(opts=opts), hl=6, opts=b"\x01\x01\x01\x00"))
    assert decode_frame(1, frame) == TCP4


def test_tso_total_length_zero_uses_the_frame() -> None:
    frame = bytearray(IP4_TCP)
    frame[2:4] = b"\x00\x00"
    assert decode_frame(228, bytes(frame)) == TCP4


def test_ipv4_fragments() -> None:
    first = bytes(ip4(tcp(HTTP[:16]), mf=1))
    assert decode_frame(228, first) == (*TCP4[:7], HTTP[:16])
    later = bytearray(IP4_TCP)
    later[6:8] = b"\x00\x03"  # fragment offset 3 (24 bytes)
    assert decode_frame(228, bytes(later)) is None


def _ip6_with_extensions(fragment_offset: int = 0) -> bytes:
    l4 = bytes(tcp())
    hop = bytes([43, 0, 1, 4, 0, 0, 0, 0])  # -> routing; PadN
    routing = bytes([60, 0, 0, 0, 0, 0, 0, 0])  # -> destination options; type 0, 0 segments left
    dest = bytes([51, 1]) + bytes([1, 12]) + bytes(12)  # -> AH; 16 bytes of PadN
    ah = bytes([44, 2, 0, 0]) + b"\x00\x00\x01\x00" + b"\x00\x00\x00\x07" + b"\xaa" * 4  # -> fragment
    frag = struct.pack(">BBHI", 6, 0, (fragment_offset << 3) | 1, 0xCAFE)  # -> TCP, more fragments
    ext = hop + routing + dest + ah + frag
    header = struct.pack(">IHBB", 6 << 28, len(ext) + len(l4), 0, 64) + CLIENT6 + SERVER6
    return header + ext + l4


def test_ipv6_extension_headers_are_skipped_to_tcp() -> None:
    frame = _ip6_with_extensions()
    assert decode_frame(229, frame) == TCP6
    parsed = dpkt.ip6.IP6(frame)  # dpkt walks the same chain to the same segment
    assert isinstance(parsed.data, dpkt.tcp.TCP)
    assert parsed.data.data == HTTP
    assert decode_frame(229, _ip6_with_extensions(fragment_offset=8)) is None


@pytest.mark.parametrize(
    ("linktype", "frame"),
    [
        (1, bytes(dpkt.ethernet.Ethernet(src=MAC_A, dst=MAC_B, type=0x0806, data=dpkt.arp.ARP()))),
        (1, eth(dpkt.ip.IP(src=CLIENT4, dst=SERVER4, p=1, data=dpkt.icmp.ICMP(type=8)))),
        (1, MAC_B + MAC_A + b"\x88\x8e" + b"\x01\x00\x00\x05\x01\x01\x00\x05\x01"),  # EAPOL
        (105, IP4_TCP),  # 802.11: not decoded
        (0, struct.pack("<I", 7) + IP4_TCP),  # unknown address family
        (1, b""),
        (113, b""),
        (276, b"\x08\x00"),
        (101, b""),
    ],
)
def test_decode_frame_none_for_anything_but_tcp_udp(linktype: int, frame: bytes) -> None:
    assert decode_frame(linktype, frame) is None


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        ((0, 0x44), "header length 16 is below 20"),
        ((0, 0x55), "version 5"),
        ((3, 0x10), "total length 16"),
        ((32, 0x40), "data offset 4"),
    ],
)
def test_damaged_headers_skip_the_frame_with_a_notice(mutate: tuple[int, int], message: str) -> None:
    frame = bytearray(IP4_TCP)
    frame[mutate[0]] = mutate[1]
    if mutate[0] == 3:
        frame[2] = 0
    assert decode_frame(228, bytes(frame)) is None
    data = pcap([(1.0, eth(IP4_TCP)), (2.0, eth(bytes(frame))), (3.0, eth(IP4_TCP))])
    events = read(data)
    assert [fields(p) for p in packets(events)] == [TCP4, TCP4]
    (notice,) = notices(events)
    assert message in notice.message
    assert notice.offset == 24 + 16 + len(eth(IP4_TCP))


# ---------------------------------------------------------------------------------------------
# Classic pcap

FRAMES = [
    (1_700_000_000.25, eth(ip4(tcp()))),
    (1_700_000_000.5, eth(dpkt.ip.IP(src=CLIENT4, dst=SERVER4, p=1, data=dpkt.icmp.ICMP(type=8)))),
    (1_700_000_001.0, eth(ip6(udp()), vlan_tags=vlan_tags(42))),
    (1_700_000_002.75, eth(ip4(tcp(b"", seq=5)))),
]
EXPECTED = [
    (1_700_000_000.25, TCP4),
    (1_700_000_001.0, UDP6),
    (1_700_000_002.75, (*TCP4[:6], 5, b"")),
]


def _check(events: list[Event], first_offset: int = 24) -> None:
    got = packets(events)
    assert [(p.time, fields(p)) for p in got] == EXPECTED
    assert got[0].offset == first_offset
    assert not notices(events)


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("nano", [False, True])
def test_pcap_both_byte_orders_and_resolutions(order: str, nano: bool) -> None:
    data = pcap(FRAMES, order=order, nano=nano)
    assert sniff_capture(data) == "pcap"
    _check(read(data))


def test_pcap_written_by_dpkt_writer(tmp_path: Path) -> None:
    path = tmp_path / "w.pcap"
    with path.open("wb") as f:
        writer = dpkt.pcap.Writer(f, snaplen=65535, nano=True)
        for ts, frame in FRAMES:
            writer.writepkt(frame, ts=ts)
    _check(list(read_capture(str(path))))
    _check(list(read_capture(path, chunk_size=7)))


def test_pcap_nanosecond_timestamps_keep_their_precision() -> None:
    data = pcap([(0, IP4_TCP)], linktype=228, nano=True)
    data = data[:28] + struct.pack("<I", 123_456_789) + data[32:]
    (p,) = packets(read(data))
    assert p.time == 123_456_789 / 1e9


def test_modified_pcap_records() -> None:
    _check(read(pcap(FRAMES, order=">", modified=True)))


def test_pcap_offsets_are_record_offsets() -> None:
    data = pcap(FRAMES)
    offsets = [24]
    for _, frame in FRAMES[:-1]:
        offsets.append(offsets[-1] + 16 + len(frame))
    assert [p.offset for p in packets(read(data))] == [offsets[0], offsets[2], offsets[3]]


def test_pcap_unknown_link_type_is_a_notice() -> None:
    events = read(pcap(FRAMES, linktype=147))
    assert not packets(events)
    (notice,) = notices(events)
    assert notice.offset == 20 and "link type 147" in notice.message


def test_pcap_records_longer_than_the_snaplen_are_kept_with_one_notice() -> None:
    events = read(pcap(FRAMES, snaplen=64))
    assert [fields(p) for p in packets(events)] == [f for _, f in EXPECTED]
    (notice,) = notices(events)
    assert "snap length 64" in notice.message


def test_pcap_absurd_caplen_resynchronises_at_the_next_record() -> None:
    frames = [(1_700_000_000.0 + i, eth(ip4(tcp(seq=i)))) for i in range(6)]
    data = bytearray(pcap(frames))
    size = 16 + len(frames[0][1])
    bad = 24 + 2 * size
    data[bad + 8 : bad + 12] = struct.pack("<I", 0x00FFFFFF)
    events = read(bytes(data))
    assert [p.seq for p in packets(events)] == [0, 1, 3, 4, 5]
    (notice,) = notices(events)
    assert notice.offset == bad
    assert f"next valid record at offset {bad + size}" in notice.message


def test_pcap_garbage_between_records_is_skipped() -> None:
    frames = [(1_700_000_000.0 + i, eth(ip4(tcp(seq=i)))) for i in range(4)]
    data = pcap(frames)
    cut = 24 + 2 * (16 + len(frames[0][1]))
    junk = b"\xee" * 37
    events = read(data[:cut] + junk + data[cut:])
    assert [p.seq for p in packets(events)] == [0, 1, 2, 3]
    (notice,) = notices(events)
    assert notice.offset == cut and "skipped 37 bytes" in notice.message


def test_pcap_unfindable_record_stops_with_a_notice() -> None:
    data = pcap(FRAMES[:1]) + struct.pack("<IIII", 1_700_000_000, 0, 0x7FFFFFFF, 0x7FFFFFFF) + b"\x01" * 500
    events = read(data)
    assert len(packets(events)) == 1
    (notice,) = notices(events)
    assert notice.offset == 24 + 16 + len(FRAMES[0][1])
    assert "no valid record follows" in notice.message


# ---------------------------------------------------------------------------------------------
# pcapng

SECRETS = b"CLIENT_RANDOM " + b"ab" * 32 + b" " + b"cd" * 48 + b"\n"


def _pcapng() -> bytes:
    """Two sections in opposite byte orders, mixed interfaces and every packet block type."""
    frame = eth(ip4(tcp()))
    le = b"".join(
        [
            shb("<"),
            idb("<", 1),
            idb("<", 101, tsresol=9, tsoffset=100),
            epb(frame, 1_700_000_000_250_000),
            raw_block(5, bytes(16)),  # interface statistics: ignored
            epb(IP6_UDP, 1_700_000_000_123_456_789, iface=1),
            spb(frame),
            raw_block(0x00000BAD, b"\x00\x00\x7e\x6b" + b"custom"),  # custom block: ignored
            dsb(SECRETS),
            pb(IP4_TCP, 1_700_000_003_000_000, iface=1),
            raw_block(0x1234, b"?"),  # unknown: a notice
        ]
    )
    be = b"".join(
        [
            shb(">"),
            idb(">", 113, tsresol=0x8A),  # 2**-10 seconds
            epb(bytes(dpkt.sll.SLL(ethtype=0x86DD, data=ip6(tcp()))), 1_700_000_000 * 1024 + 512, ">"),
            epb(frame, 5, ">", iface=1),  # no such interface in this section
        ]
    )
    return le + be


def test_pcapng_sections_interfaces_and_blocks() -> None:
    data = _pcapng()
    assert sniff_capture(data) == "pcapng"
    events = read(data)
    got = [e for e in events if not isinstance(e, Notice)]
    assert len(got) == 6
    p0, p1, p2, secrets, p3, p4 = got
    assert isinstance(p0, Packet) and (p0.time, fields(p0)) == (1_700_000_000.25, TCP4)
    assert p0.offset == len(shb()) + len(idb()) + len(idb("<", 101, 9, 100))
    assert isinstance(p1, Packet)
    assert (p1.time, fields(p1)) == (1_700_000_000_123_456_789 / 1e9 + 100, UDP6)
    assert isinstance(p2, Packet) and (p2.time, fields(p2)) == (0.0, TCP4)  # SPB: no timestamp
    assert secrets == Secrets(secrets.offset, 0x544C534B, SECRETS)
    assert isinstance(p3, Packet) and (p3.time, fields(p3)) == (1_700_000_003_000_000 / 1e9 + 100, TCP4)
    assert isinstance(p4, Packet) and (p4.time, fields(p4)) == (1_700_000_000.5, TCP6)
    unknown, undeclared = notices(events)
    assert "unknown block type 0x00001234" in unknown.message
    assert "interface 1" in undeclared.message
    assert undeclared.offset == len(data) - len(epb(eth(ip4(tcp())), 5, ">"))


def test_pcapng_written_by_dpkt_writer(tmp_path: Path) -> None:
    path = tmp_path / "w.pcapng"
    with path.open("wb") as f:
        writer = dpkt.pcapng.Writer(f, snaplen=65535)
        for ts, frame in FRAMES:
            writer.writepkt(frame, ts=ts)
    _check(list(read_capture(str(path))), first_offset=len(shb()) + len(idb()))


def test_pcapng_unknown_link_type_is_one_notice() -> None:
    data = shb() + idb(linktype=147) + epb(IP4_TCP, 1) + epb(IP4_TCP, 2)
    (notice,) = read(data)
    assert isinstance(notice, Notice) and "link type 147" in notice.message


@pytest.mark.parametrize("where", ["length", "trailing length"])
def test_pcapng_damaged_block_length_resynchronises(where: str) -> None:
    blocks = [epb(eth(ip4(tcp(seq=i))), i) for i in range(5)]
    head = shb() + idb()
    damaged = bytearray(blocks[2])
    if where == "length":
        damaged[4:8] = struct.pack("<I", 0x00FFFFFE)
    else:
        damaged[-4:] = struct.pack("<I", 44)
    data = head + b"".join(blocks[:2]) + bytes(damaged) + b"".join(blocks[3:])
    events = read(data)
    assert [p.seq for p in packets(events)] == [0, 1, 3, 4]
    (notice,) = notices(events)
    bad = len(head) + len(blocks[0]) * 2
    assert notice.offset == bad
    assert f"next valid block at offset {bad + len(blocks[2])}" in notice.message


def test_pcapng_later_section_with_unsupported_version_is_skipped() -> None:
    data = shb() + idb("<", 228) + epb(IP4_TCP, 1) + shb(major=2) + epb(IP4_TCP, 2) + shb(">") + idb(">", 228)
    data += epb(IP4_TCP, 3, ">")
    events = read(data)
    assert [p.time for p in packets(events)] == [1e-6, 3e-6]
    (notice,) = notices(events)
    assert "unsupported pcapng version 2.0" in notice.message


def test_pcapng_secrets_block_claiming_too_much_is_a_notice() -> None:
    block = bytearray(dsb(SECRETS))
    block[12:16] = struct.pack("<I", 10_000)
    (notice,) = read(shb() + bytes(block))
    assert isinstance(notice, Notice) and "secrets" in notice.message


def test_pcapng_simple_packet_block_is_bounded_by_block_and_snaplen() -> None:
    frame = eth(ip4(udp(b"x" * 200)))
    block = bytearray(spb(frame))
    block[8:12] = struct.pack("<I", 5000)  # original length beyond what the block holds
    (p,) = read(shb() + idb() + bytes(block))
    assert isinstance(p, Packet) and p.payload == b"x" * 200
    short_idb = dpkt.pcapng.InterfaceDescriptionBlockLE(linktype=1, snaplen=len(frame) - 50)
    (p,) = read(shb() + bytes(short_idb) + spb(frame))
    assert isinstance(p, Packet) and p.payload == b"x" * 150


# ---------------------------------------------------------------------------------------------
# Three ways: whole, one byte at a time, with trailing data

THREE_WAY_CAPTURES = {
    "pcap": pcap(FRAMES),
    "pcap big-endian nano": pcap(FRAMES, order=">", nano=True),
    "pcapng": _pcapng(),
}
GARBAGE = {"short": b"\xff" * 7, "long": b"\xee" * 300}


@pytest.mark.parametrize("name", THREE_WAY_CAPTURES)
def test_three_ways(name: str) -> None:
    data = THREE_WAY_CAPTURES[name]
    whole = read(data)
    assert packets(whole)
    assert read(data, chunks=range(1, len(data))) == whole
    for garbage in GARBAGE.values():
        trailing = read(data + garbage)
        *same, last = trailing
        assert same == whole
        assert isinstance(last, Notice) and last.offset == len(data)


def test_truncated_final_record() -> None:
    data = pcap(FRAMES)
    last = len(data) - 16 - len(FRAMES[-1][1])
    for cut, what in ((last + 9, "record header"), (last + 30, "record (14 of")):
        events = read(data[:cut])
        assert [fields(p) for p in packets(events)] == [TCP4, UDP6]
        (notice,) = notices(events)
        assert notice.offset == last and f"truncated {what}" in notice.message
    data = _pcapng()
    events = read(data[:-6])
    assert isinstance(events[-1], Notice) and "truncated block" in events[-1].message


# ---------------------------------------------------------------------------------------------
# Not a capture, or an unreadable header


@pytest.mark.parametrize(
    ("data", "offset", "message"),
    [
        (b"", 0, "empty"),
        (b"\xd4\xc3", 0, "too short"),
        (b'{\n  "log": {}}', 0, "not a pcap"),
        (pcap([])[:20], 20, "truncated"),
        (struct.pack("<IHH", 0xA1B2C3D4, 3, 0) + bytes(16), 4, "version 3.0"),
        (shb()[:8] + b"\x01\x02\x03\x04" + shb()[12:], 8, "byte-order"),
        (shb(major=2), 12, "version 2.0"),
        (shb()[:4] + struct.pack("<I", 29) + shb()[8:], 4, "length 29"),
        (shb()[:20], 20, "truncated"),
    ],
)
def test_input_errors(data: bytes, offset: int, message: str) -> None:
    reader = CaptureReader("bad.cap")
    reader.feed(data)
    reader.close()
    with pytest.raises(InputError) as info:
        list(reader.events())
    assert info.value.source == "bad.cap"
    assert info.value.offset == offset
    assert message in info.value.message
    with pytest.raises(InputError):  # and it stays raised
        list(reader.events())


def test_input_error_before_close_when_the_magic_is_wrong() -> None:
    reader = CaptureReader()
    reader.feed(b"PK\x03\x04 a zip file")
    with pytest.raises(InputError):
        list(reader.events())


def test_read_capture_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        list(read_capture(tmp_path / "absent.pcap"))
    assert info.value.source == str(tmp_path / "absent.pcap")


def test_sniff_capture() -> None:
    assert sniff_capture(pcap([])[:4]) == "pcap"
    assert sniff_capture(shb(">")) == "pcapng"
    assert sniff_capture(shb()[:8] + b"xxxx") is None
    assert sniff_capture(b"GET / HTTP/1.1") is None
    assert sniff_capture(b"") is None


# ---------------------------------------------------------------------------------------------
# Bounded memory


def test_garbage_is_scanned_and_dropped_without_buffering() -> None:
    reader = CaptureReader()
    reader.feed(pcap(FRAMES[:1]))
    chunk = b"\xee" * (256 * 1024)
    tracemalloc.start()
    try:
        events: list[Event] = []
        for _ in range(96):  # 24 MiB, past the resync budget
            reader.feed(chunk)
            events.extend(reader.events())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    reader.close()
    events.extend(reader.events())
    assert peak < 3 * len(chunk)
    assert len(packets(events)) == 1
    (notice,) = notices(events)
    assert "the rest of the input is skipped" in notice.message


def test_giving_up_does_not_depend_on_chunking() -> None:
    record = pcap(FRAMES[:1])[24:]
    data = pcap(FRAMES[:1]) + b"\xee" * (17 * 1024 * 1024) + record * 3
    whole = read(data)
    assert read(data, chunks=range(0, len(data), 1 << 20)) == whole
    assert len(packets(whole)) == 1
    assert "the rest of the input is skipped" in notices(whole)[0].message


def test_read_capture_memory_stays_flat(tmp_path: Path) -> None:
    frame = eth(ip4(tcp(HTTP * 20)))
    path = tmp_path / "big.pcap"
    path.write_bytes(pcap([(1.0 + i, frame) for i in range(3000)]))  # ~4 MB
    tracemalloc.start()
    try:
        count = sum(1 for _ in read_capture(path, chunk_size=64 * 1024))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 3000
    assert peak < 512 * 1024


# ---------------------------------------------------------------------------------------------
# Properties

HEADERS = [
    pcap([]),
    pcap([], order=">", nano=True, linktype=113),
    pcap([], linktype=0),
    shb() + idb(),
    shb(">") + idb(">", 276) + idb(">", 101, tsresol=0x8A),
]
VALID = [*THREE_WAY_CAPTURES.values(), pcap(FRAMES, linktype=1, modified=True)]
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _outcome(data: bytes, chunks: Sequence[int] = ()) -> list[Event] | tuple[str, int | None]:
    try:
        return read(data, chunks)
    except InputError as exc:
        return ("InputError", exc.offset)


@FUZZ
@given(header=st.sampled_from(HEADERS), junk=st.binary(max_size=2048))
def test_any_bytes_after_a_header_never_raise(header: bytes, junk: bytes) -> None:
    data = header + junk
    outcome = _outcome(data)
    if isinstance(outcome, list):
        for event in outcome:
            assert event.offset is not None and 0 <= event.offset <= len(data)


@FUZZ
@given(
    base=st.sampled_from(VALID),
    edits=st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), max_size=6),
    insert=st.binary(max_size=64),
    where=st.integers(min_value=0),
    cuts=st.lists(st.integers(min_value=0), max_size=12),
)
def test_chunking_never_changes_the_events(
    base: bytes, edits: list[tuple[int, int]], insert: bytes, where: int, cuts: list[int]
) -> None:
    data = bytearray(base)
    for index, value in edits:
        data[index % len(data)] = value
    where %= len(data) + 1
    data[where:where] = insert
    blob = bytes(data)
    chunks = sorted({c % (len(blob) + 1) for c in cuts})
    assert _outcome(blob, chunks) == _outcome(blob)


@settings(max_examples=60, deadline=None)
@given(
    payload=st.binary(max_size=1500),
    sport=st.integers(0, 65535),
    dport=st.integers(0, 65535),
    seq=st.integers(0, 2**32 - 1),
    v6=st.booleans(),
    is_udp=st.booleans(),
    linktype=st.sampled_from([1, 113, 276, 101, 0]),
)
def test_any_packet_dpkt_builds_decodes_back(
    payload: bytes, sport: int, dport: int, seq: int, v6: bool, is_udp: bool, linktype: int
) -> None:
    l4: dpkt.Packet
    if is_udp:
        l4 = dpkt.udp.UDP(sport=sport, dport=dport, ulen=8 + len(payload), data=payload)
    else:
        l4 = dpkt.tcp.TCP(sport=sport, dport=dport, seq=seq, flags=dpkt.tcp.TH_ACK, data=payload)
    l3 = ip6(l4) if v6 else ip4(l4)
    ethertype = 0x86DD if v6 else 0x0800
    frame = {
        1: lambda: eth(l3),
        113: lambda: bytes(dpkt.sll.SLL(ethtype=ethertype, data=l3)),
        276: lambda: bytes(dpkt.sll2.SLL2(ethtype=ethertype, data=l3)),
        101: lambda: bytes(l3),
        0: lambda: struct.pack("<I", 30 if v6 else 2) + bytes(l3),
    }[linktype]()
    (p,) = read(pcap([(1.0, frame)], linktype=linktype))
    assert isinstance(p, Packet)
    assert (p.proto, p.sport, p.dport, p.payload) == (17 if is_udp else 6, sport, dport, payload)
    assert (p.src, p.dst) == ((CLIENT6, SERVER6) if v6 else (CLIENT4, SERVER4))
    assert p.seq == (0 if is_udp else seq)


# ---------------------------------------------------------------------------------------------
# The real corpus, checked against dpkt

CORPUS_PCAP = CORPUS / "pcap"


def _corpus_files() -> list[object]:
    if not CORPUS_PCAP.is_dir():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"no corpus at {CORPUS_PCAP}"))]
    return [
        pytest.param(path, id=str(path.relative_to(CORPUS)))
        for path in sorted(CORPUS_PCAP.rglob("*"))
        if path.is_file()
    ]


CORPUS_FILES = _corpus_files()


def _is_capture(path: Path) -> bool:
    with path.open("rb") as f:
        return sniff_capture(f.read(12)) is not None


def _dpkt_raw(buf: bytes) -> dpkt.Packet:
    return dpkt.ip6.IP6(buf) if buf[:1] and buf[0] >> 4 == 6 else dpkt.ip.IP(buf)


DPKT_LINKTYPES = {
    0: dpkt.loopback.Loopback,
    1: dpkt.ethernet.Ethernet,
    101: _dpkt_raw,
    113: dpkt.sll.SLL,
    276: dpkt.sll2.SLL2,
}


def _dpkt_frames(path: Path) -> list[tuple[float, int, bytes]]:
    """(time, link type, frame) as dpkt reads them; pcapng walked block by block with dpkt's
    block classes so that each packet gets its own interface's link type."""
    data = path.read_bytes()
    if sniff_capture(data) == "pcap":
        with path.open("rb") as f:
            reader = dpkt.pcap.Reader(f)
            return [(ts, reader.datalink(), frame) for ts, frame in reader]
    frames = []
    interfaces: list[tuple[int, int]] = []
    pos = 0
    while pos + 8 <= len(data):
        btype, blen = struct.unpack_from("<II", data, pos)
        block = data[pos : pos + blen]
        if btype == dpkt.pcapng.PCAPNG_BT_IDB:
            idb_ = dpkt.pcapng.InterfaceDescriptionBlockLE(block)
            resol = [o.data[0] for o in idb_.opts if o.code == dpkt.pcapng.PCAPNG_OPT_IF_TSRESOL] or [6]
            interfaces.append((idb_.linktype, 10 ** resol[0]))
        elif btype == dpkt.pcapng.PCAPNG_BT_EPB:
            epb_ = dpkt.pcapng.EnhancedPacketBlockLE(block)
            linktype, units = interfaces[epb_.iface_id]
            frames.append((((epb_.ts_high << 32) | epb_.ts_low) / units, linktype, epb_.pkt_data))
        pos += blen
    return frames


def _dpkt_packets(path: Path) -> list[tuple[float, bytes, bytes, int, int, bytes]]:
    out = []
    for ts, linktype, frame in _dpkt_frames(path):
        try:
            layer = DPKT_LINKTYPES[linktype](frame)
        except (dpkt.UnpackError, dpkt.NeedData):
            continue
        while layer is not None and not isinstance(layer, dpkt.ip.IP | dpkt.ip6.IP6):
            layer = getattr(layer, "data", None)
            if not isinstance(layer, dpkt.Packet):
                layer = None
        if layer is None or not isinstance(layer.data, dpkt.tcp.TCP | dpkt.udp.UDP):
            continue
        l4 = layer.data
        out.append((ts, layer.src, layer.dst, l4.sport, l4.dport, bytes(l4.data)))
    return out


@pytest.mark.parametrize("path", CORPUS_FILES)
def test_corpus_file_reads(path: Path) -> None:
    if not _is_capture(path):
        with pytest.raises(InputError) as info:
            list(read_capture(path))
        assert info.value.offset == 0
        return
    events = list(read_capture(path))
    if not path.name.startswith("fuzz-"):
        assert packets(events)
        assert not notices(events), [str(n) for n in notices(events)]
    assert all(isinstance(e, Packet | Secrets | Notice) for e in events)


@pytest.mark.parametrize("path", CORPUS_FILES)
def test_corpus_file_agrees_with_dpkt(path: Path) -> None:
    if not _is_capture(path):
        pytest.skip("not a capture: test_corpus_file_reads expects an InputError")
    if path.name.startswith("fuzz-"):
        pytest.skip("fuzzed capture: only checked to read without a crash")
    ours = [
        (p.time, p.src, p.dst, p.sport, p.dport, p.payload)
        for p in packets(read_capture(path, chunk_size=4096))
    ]
    theirs = _dpkt_packets(path)
    assert len(ours) == len(theirs)
    assert [o[1:] for o in ours] == [t[1:] for t in theirs]
    assert all(abs(o[0] - t[0]) < 1e-5 for o, t in zip(ours, theirs, strict=True))


def _corpus(name: str) -> Path:
    matches = sorted(CORPUS_PCAP.rglob(name)) if CORPUS_PCAP.is_dir() else []
    if not matches:
        pytest.skip(f"{name} not in the corpus at {CORPUS_PCAP}")
    return matches[0]


@pytest.mark.parametrize("name", ["android.pcap", "http_ipv6.pcap", "firefox-tls13-facebook-dsb.pcapng"])
def test_corpus_truncated_copy(name: str) -> None:
    data = _corpus(name).read_bytes()
    full = packets(read(data))
    for victim in (full[1], full[len(full) // 2], full[-1]):
        for into in (3, 40):
            events = read(data[: victim.offset + into])
            assert packets(events) == [p for p in full if p.offset < victim.offset]
            (notice,) = notices(events)
            assert notice.offset == victim.offset and "truncated" in notice.message


@pytest.mark.parametrize("name", ["http.pcapng", "websocket.pcap"])
def test_corpus_three_ways(name: str) -> None:
    data = _corpus(name).read_bytes()
    whole = read(data)
    assert read(data, chunks=range(1, len(data))) == whole
    *same, last = read(data + GARBAGE["long"])
    assert same == whole and isinstance(last, Notice)


def test_corpus_decryption_secrets() -> None:
    events = list(read_capture(_corpus("firefox-tls13-facebook-dsb.pcapng")))
    (secrets,) = [e for e in events if isinstance(e, Secrets)]
    assert secrets.secrets_type == 0x544C534B
    assert b"CLIENT_HANDSHAKE_TRAFFIC_SECRET" in secrets.data
    first_packet = packets(events)[0]
    assert secrets.offset < first_packet.offset


# ---------------------------------------------------------------------------------------------
# The fast lane: packets the flow table does not need are passed over, undecoded


class _Taking:
    """A lane's packet method: keeps each packet handed to it (a Packet without its offset); no output."""

    def __init__(self) -> None:
        self.taken: list[tuple[object, ...]] = []

    def packet(self, *fields: object) -> bool:
        assert len(fields) == 9
        self.taken.append(fields)
        return False

    def times(self) -> list[object]:
        return [fields[0] for fields in self.taken]


def _fields(packet: Packet) -> tuple[object, ...]:
    """What a lane's packet method is given for ``packet``."""
    return tuple(getattr(packet, f.name) for f in dataclasses.fields(Packet) if f.name != "offset")


class _Lane(_Taking):
    """Knows one flow: server to client passed over whole, client to server only when empty."""

    def __init__(self) -> None:
        super().__init__()
        up = CLIENT4 + SERVER4 + struct.pack(">HH", 40000, 80)
        down = SERVER4 + CLIENT4 + struct.pack(">HH", 80, 40000)
        self.lanes: dict[bytes, tuple[object, bool]] = {up: ("flow", False), down: ("flow", True)}
        self.passed: list[float] = []

    def pass_over(self, flow: object, time: float, count: int = 1) -> bool:
        assert flow == "flow"
        assert count == 1
        self.passed.append(time)
        return len(self.passed) % 2 == 0  # every second one: "output waits"

    def passable(self) -> int:
        return 1  # one packet at a time: each one's time is seen


class _RunLane(_Taking):
    """Knows one flow, passed over whole, in runs of at most ``most`` packets."""

    def __init__(self, most: int) -> None:
        super().__init__()
        down = SERVER4 + CLIENT4 + struct.pack(">HH", 80, 40000)
        self.lanes: dict[bytes, tuple[object, bool]] = {down: ("flow", True)}
        self.most = most
        self.runs: list[tuple[float, int]] = []

    def pass_over(self, flow: object, time: float, count: int = 1) -> bool:
        assert flow == "flow"
        assert 1 <= count <= self.passable()
        self.runs.append((time, count))
        return sum(n for _t, n in self.runs) % self.most == 0

    def passable(self) -> int:
        return self.most - sum(n for _t, n in self.runs) % self.most


# The walks the fast lane takes: the optional C ones (phonehome._lane) and the pure-Python loops.
C_WALKS = (capture._walk_pcap, capture._walk_pcapng)
WALKS = [
    pytest.param(
        C_WALKS,
        id="c",
        marks=pytest.mark.skipif(capture._walk_pcap is None, reason="phonehome._lane is not built"),
    ),
    pytest.param((None, None), id="python"),
]


def _use_walks(monkeypatch: pytest.MonkeyPatch, walks: tuple[object, object]) -> None:
    monkeypatch.setattr(capture, "_walk_pcap", walks[0])
    monkeypatch.setattr(capture, "_walk_pcapng", walks[1])


@pytest.fixture(params=WALKS)
def walk(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> object:
    _use_walks(monkeypatch, request.param)
    return request.param


def _pcapng_of(frames: Iterable[tuple[float, bytes]], order: str = "<") -> bytes:
    """The frames as EPBs of an Ethernet interface with microsecond stamps, behind an IDB of a
    loopback interface the lane does not read."""
    out = [shb(order), idb(order, linktype=0), idb(order, linktype=1)]
    out += [epb(frame, round(t * 1e6), order, iface=1) for t, frame in frames]
    return b"".join(out)


# Each container the fast lane walks: classic pcap and pcapng.
CONTAINERS = [pytest.param(lambda frames: pcap(frames), id="pcap"), pytest.param(_pcapng_of, id="pcapng")]


@pytest.mark.usefixtures("walk")
@pytest.mark.parametrize("container", CONTAINERS)
def test_fast_lane_passes_over_exactly_the_packets_that_cannot_matter(
    container: Callable[[Iterable[tuple[float, bytes]]], bytes],
) -> None:
    def down(payload: bytes = b"data", flags: int = PUSH_ACK, **kw: object) -> bytes:
        seg = dpkt.tcp.TCP(sport=80, dport=40000, seq=1, flags=flags, data=payload)
        return eth(dpkt.ip.IP(src=SERVER4, dst=CLIENT4, p=6, ttl=64, data=seg, **kw))

    def up(payload: bytes = HTTP, flags: int = PUSH_ACK) -> bytes:
        seg = dpkt.tcp.TCP(sport=40000, dport=80, seq=1, flags=flags, data=payload)
        return eth(dpkt.ip.IP(src=CLIENT4, dst=SERVER4, p=6, ttl=64, data=seg))

    bad_offset = bytearray(down())
    bad_offset[14 + 20 + 12] = 0x40  # TCP data offset 4: a damage notice, never passed over
    later = bytearray(down())
    short = bytearray(down())
    short[14 + 2 : 14 + 4] = (30).to_bytes(2, "big")
    later[14 + 6 : 14 + 8] = b"\x00\x03"  # fragment offset 3 (24 bytes)
    frames = {
        1.0: (down(), True),
        2.0: (down(b""), True),  # an ACK from the server
        3.0: (down(flags=dpkt.tcp.TH_FIN | dpkt.tcp.TH_ACK), False),
        4.0: (down(flags=dpkt.tcp.TH_RST), False),
        5.0: (up(), False),  # the client's data is read
        6.0: (up(b"", dpkt.tcp.TH_ACK), True),  # ... but not its bare ACKs
        7.0: (up(b"", dpkt.tcp.TH_SYN), False),
        8.0: (down(opts=b"\x01\x01\x01\x01"), False),  # IP options: decoded the long way
        9.0: (down(mf=1), True),  # a first fragment (offset 0): passed over
        10.0: (bytes(later), False),  # a later fragment: not TCP to the decoder either
        11.0: (bytes(bad_offset), False),
        12.0: (bytes(eth(ip6(tcp()))), False),
        13.0: (bytes(short), False),  # IP length cuts the TCP header: no packet at all
    }
    data = container((t, f) for t, (f, _) in frames.items())
    plain = read(data)
    lane = _Lane()
    reader = CaptureReader("t.pcap", lane)
    reader.feed(data)
    reader.close()
    fast = list(reader.events())
    assert lane.passed == [t for t, (_f, passed) in frames.items() if passed]
    kept = [e for e in plain if not (isinstance(e, Packet) and e.time in lane.passed)]
    # The packets not passed over are taken, in order; the reader yields no Packet beside them.
    assert lane.taken == [_fields(e) for e in kept if isinstance(e, Packet)]
    assert [e for e in fast if not isinstance(e, Flush)] == [e for e in kept if not isinstance(e, Packet)]
    flushes = [e for e in fast if isinstance(e, Flush)]
    assert len(flushes) == len(lane.passed) // 2


@pytest.mark.usefixtures("walk")
def test_fast_lane_walks_big_endian_pcapng_with_its_interfaces_stamps() -> None:
    frames = [(1.5, _down_frame()), (2.25, eth(ip4(tcp())))]  # passed over, then read
    for tsresol, tsoffset in ((None, None), (9, None), (0x80 | 20, 100)):  # us; ns; 2^-20 s, +100 s
        units = {None: 1e6, 9: 1e9, 0x80 | 20: float(1 << 20)}[tsresol]
        data = shb(">") + idb(">", linktype=1, tsresol=tsresol, tsoffset=tsoffset)
        data += b"".join(epb(frame, round(t * units), ">") for t, frame in frames)
        lane = _Lane()
        reader = CaptureReader("t.pcapng", lane)
        reader.feed(data)
        reader.close()
        events = list(reader.events())
        assert lane.passed == [1.5 + (tsoffset or 0)], tsresol
        assert lane.times() == [2.25 + (tsoffset or 0)] and not any(isinstance(e, Packet) for e in events)


@pytest.mark.usefixtures("walk")
def test_fast_lane_walks_big_endian_nanosecond_and_modified_pcap() -> None:
    frames = [(1.5, _down_frame()), (2.25, eth(ip4(tcp())))]  # passed over, then read
    for order, magic, hlen in (("<", 0xA1B23C4D, 16), (">", 0xA1B2C3D4, 16), ("<", 0xA1B2CD34, 24)):
        data = _pcap_of(frames, order, magic, hlen)
        lane = _Lane()
        reader = CaptureReader("t.pcap", lane)
        reader.feed(data)
        reader.close()
        events = list(reader.events())
        assert lane.passed == [1.5], (order, magic)
        assert lane.times() == [2.25] and not any(isinstance(e, Packet) for e in events)


@pytest.mark.usefixtures("walk")
@pytest.mark.parametrize("container", CONTAINERS)
def test_a_run_of_one_flow_is_passed_over_in_calls_no_longer_than_the_lane_allows(
    container: Callable[[Iterable[tuple[float, bytes]]], bytes],
) -> None:
    times = [1.0 + i for i in range(7)] + [9.0] + [10.0 + i for i in range(5)]
    frames = [(t, _down_frame() if t != 9.0 else eth(ip4(tcp()))) for t in times]  # a request at 9
    lane = _RunLane(3)
    reader = CaptureReader("t.pcap", lane)
    reader.feed(container(frames))
    reader.close()
    events = list(reader.events())
    assert sum(n for _t, n in lane.runs) == 12
    # Each call names the time of the last packet of its run, and no run spans the request.
    ends = [sum(n for _t, n in lane.runs[: i + 1]) for i in range(len(lane.runs))]
    passed = [t for t in times if t != 9.0]
    assert [t for t, _n in lane.runs] == [passed[end - 1] for end in ends]
    assert 7 in ends
    assert lane.times() == [9.0] and not any(isinstance(e, Packet) for e in events)
    # A Flush for each True answer, at the record of the run's last packet.
    assert len([e for e in events if isinstance(e, Flush)]) == len([end for end in ends if end % 3 == 0])


def _down_frame() -> bytes:
    seg = dpkt.tcp.TCP(sport=80, dport=40000, seq=1, flags=PUSH_ACK, data=b"data")
    return eth(dpkt.ip.IP(src=SERVER4, dst=CLIENT4, p=6, ttl=64, data=seg))


def _pcap_of(frames: Sequence[tuple[float, bytes]], order: str, magic: int, hlen: int) -> bytes:
    units = 1e9 if magic == 0xA1B23C4D else 1e6
    out = [struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 65535, 1)]
    for t, frame in frames:
        sec = int(t)
        head = struct.pack(order + "IIII", sec, round((t - sec) * units), len(frame), len(frame))
        out.append(head + b"\0" * (hlen - 16) + frame)
    return b"".join(out)


def _lane_outputs(data: bytes, chunk: int) -> list[object]:
    """What a flow table makes of a capture read through its fast lane, fed in ``chunk``-byte pieces."""
    table = FlowTable("t.pcap")
    reader = CaptureReader("t.pcap", table)
    out: list[object] = []

    def drain() -> None:
        for event in reader.events():
            if not isinstance(event, Flush):
                out.append(event)
            out.extend(table.drain())

    try:
        for pos in range(0, len(data), chunk):
            reader.feed(data[pos : pos + chunk])
            drain()
        reader.close()
        drain()
    except InputError as exc:
        out.append(str(exc))
    table.finish()
    out.extend(table.drain())
    out.append(table.stats)
    return out


def _corrupted_corpus_pcaps() -> list[object]:
    if not CORPUS_PCAP.is_dir():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"no corpus at {CORPUS_PCAP}"))]
    params = []
    for path in sorted(p for p in CORPUS_PCAP.rglob("*") if p.suffix in (".pcap", ".pcapng")):
        data = path.read_bytes()
        if sniff_capture(data[:4]) is None:
            continue
        params.append(pytest.param(data, id=str(path.relative_to(CORPUS))))
    return params


@pytest.mark.skipif(capture._walk_pcap is None, reason="phonehome._lane is not built")
@pytest.mark.parametrize("data", _corrupted_corpus_pcaps())
def test_c_walk_reads_every_corpus_pcap_as_the_python_loop_does(
    data: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pcap and pcapng; whole, cut short, and with bytes flipped through the records (lengths,
    # addresses, flags): exchanges, notices, stats and errors must be the same, in any chunking.
    cut = data[: len(data) * 2 // 3]
    flipped = bytearray(data)
    for at in range(24, len(flipped), 97):
        flipped[at] ^= 0x5A
    for variant in (data, cut, bytes(flipped)):
        for chunk in (len(variant) or 1, 1500):
            _use_walks(monkeypatch, (None, None))
            python = _lane_outputs(variant, chunk)
            _use_walks(monkeypatch, C_WALKS)
            assert _lane_outputs(variant, chunk) == python


@pytest.mark.skipif(capture._walk_pcap is None, reason="phonehome._lane is not built")
def test_c_walk_refuses_arguments_outside_its_buffer() -> None:
    walk = capture._walk_pcap
    assert walk is not None
    ok = (b"\0" * 64, 0, 64, 16, False, 1e6, 65535, 14, 12, {}, lambda _f, _t, _n: False, lambda: 1, -1, None)
    assert walk(*ok) == (0, -1, 1, 0)  # an empty record: too short for the lane, left to Python
    for index, value in ((2, 65), (1, 65), (1, -1), (3, 8), (8, 13), (5, 0.0)):
        bad = list(ok)
        bad[index] = value
        with pytest.raises(ValueError, match="out of range"):
            walk(*bad)
    with pytest.raises(TypeError):
        walk(bytearray(64), *ok[1:])


@pytest.mark.skipif(capture._walk_pcapng is None, reason="phonehome._lane is not built")
def test_c_pcapng_walk_refuses_arguments_outside_its_buffer_and_malformed_links() -> None:
    walk = capture._walk_pcapng
    assert walk is not None
    block = epb(eth(ip4(tcp())), 1_500_000)
    taking = _Taking()
    ok = (
        block,
        0,
        len(block),
        False,
        ((14, 12, 1e6, 0.0),),
        1 << 20,
        {},
        lambda _f, _t, _n: False,
        lambda: 1,
        taking.packet,
    )
    assert walk(*ok)[:3] == (len(block), -1, 0)  # taken, no output: on to the end of buf
    assert taking.times() == [1.5]
    output = _Taking()
    output.packet = lambda *fields: True  # type: ignore[method-assign]
    assert walk(*ok[:9], output.packet) == (len(block), -1, 2, 0)  # output waits after the block at 0
    assert walk(block, 0, len(block) - 1, *ok[3:])[2] == 0  # not whole yet
    assert walk(block, *ok[1:4], (None,), *ok[5:])[2] == 1  # an interface the lane does not read
    assert walk(block, *ok[1:4], (), *ok[5:])[2] == 1  # no such interface
    for index, value in ((2, len(block) + 1), (1, -1), (5, 31)):
        bad = list(ok)
        bad[index] = value
        with pytest.raises(ValueError, match="out of range"):
            walk(*bad)
    for links in (((14, 12, 0.0, 0.0),), ((14, 13, 1e6, 0.0),)):
        with pytest.raises(ValueError, match="out of range"):
            walk(block, *ok[1:4], links, *ok[5:])
    for links in (((14, 12),), [(14, 12, 1e6, 0.0)], (("14", 12, 1e6, 0.0),)):
        with pytest.raises(TypeError):
            walk(block, *ok[1:4], links, *ok[5:])


class _CountingFile(io.BufferedReader):
    """A file that counts how often the reading goes back in it."""

    seeks = 0

    def seek(self, offset: int, whence: int = 0) -> int:
        type(self).seeks += 1
        return super().seek(offset, whence)


def _whole(data: bytes, source: str) -> list[Event]:
    reader = CaptureReader(source)
    reader.feed(data)
    reader.close()
    return list(reader.events())


@pytest.mark.parametrize("path", CORPUS_FILES)
@pytest.mark.parametrize("chunk_size", [7, 100, 4096])
def test_a_file_read_in_chunks_gives_what_it_gives_whole(path: Path, chunk_size: int) -> None:
    # Each chunk of a file begins where the reader stopped in the one before (CaptureReader.release),
    # damaged files included.
    data = path.read_bytes()
    if sniff_capture(data[:12]) is None:
        pytest.skip("not a capture: test_corpus_file_reads expects an InputError")
    _CountingFile.seeks = 0
    handle = _CountingFile(io.FileIO(path), 1 << 16)
    assert list(read_capture(path, chunk_size=chunk_size, handle=handle)) == _whole(data, str(path))
    if len(data) > 2 * chunk_size and chunk_size > 24:
        assert _CountingFile.seeks > 0
