"""The flow table: packets in capture order become the exchanges the phone sent."""

from __future__ import annotations

import random
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from factories import client_hello
from phonehome.model import Exchange, Notice
from phonehome.protocols.flows import ACK, FIN, SYN, FlowTable, Limits

PHONE, SERVER, RESOLVER = bytes([10, 0, 0, 2]), bytes([93, 184, 216, 34]), bytes([10, 0, 0, 1])
PSH = 0x08


def _tcp_session(request: bytes, *, sport: int = 40000, dport: int = 80, isn: int = 1000) -> list[tuple]:
    """(proto, src, dst, sport, dport, flags, seq, payload) for a whole connection, segments of 7 bytes."""
    out = [
        (6, PHONE, SERVER, sport, dport, SYN, isn, b""),
        (6, SERVER, PHONE, dport, sport, SYN | ACK, 5000, b""),
    ]
    seq = isn + 1
    for i in range(0, len(request), 7):
        out.append((6, PHONE, SERVER, sport, dport, ACK | PSH, (seq + i) & 0xFFFFFFFF, request[i : i + 7]))
    end = (seq + len(request)) & 0xFFFFFFFF
    out.append((6, PHONE, SERVER, sport, dport, FIN | ACK, end, b""))
    out.append((6, SERVER, PHONE, dport, sport, FIN | ACK, 5001, b""))
    return out


def _run(packets: list[tuple], limits: Limits | None = None) -> list[Exchange | Notice]:
    table = FlowTable("test", limits)
    events: list[Exchange | Notice] = []
    for t, p in enumerate(packets):
        table.packet(float(t), *p)
        events.extend(table.drain())
    table.finish()
    events.extend(table.drain())
    return events


def _exchanges(events: list[Exchange | Notice]) -> list[Exchange]:
    return [e for e in events if isinstance(e, Exchange)]


REQUEST = (
    b"POST /v1/register?imei=865123456789019 HTTP/1.1\r\nHost: api.example.com\r\n"
    b"Cookie: a=1; uid=42\r\nContent-Type: application/json\r\nContent-Length: 17\r\n\r\n"
    b'{"phone":"+9198"}'
)


def test_http_request_becomes_an_exchange_with_its_parts() -> None:
    (ex,) = _exchanges(_run(_tcp_session(REQUEST)))
    assert ex.protocol == "http" and ex.method == "POST" and ex.host == "api.example.com"
    assert ex.url == "http://api.example.com/v1/register?imei=865123456789019"
    assert (ex.client_ip, ex.client_port, ex.server_ip, ex.server_port) == (
        "10.0.0.2",
        40000,
        "93.184.216.34",
        80,
    )
    wheres = [(p.where, p.data) for p in ex.parts]
    assert ("query", b"imei=865123456789019") in wheres
    assert ("cookie", b"uid=42") in wheres
    assert ("body", b'{"phone":"+9198"}') in wheres
    assert ("header:host", b"api.example.com") in wheres


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), isn=st.sampled_from([0, 1000, 2**32 - 20]))
def test_reordered_and_retransmitted_segments_give_the_same_exchange(seed: int, isn: int) -> None:
    packets = _tcp_session(REQUEST, isn=isn)
    handshake, data, tail = packets[:2], packets[2:-2], packets[-2:]
    rng = random.Random(seed)
    shuffled = data + rng.sample(data, k=min(5, len(data)))  # duplicates: retransmissions
    rng.shuffle(shuffled)
    (ex,) = _exchanges(_run(handshake + shuffled + tail))
    (expected,) = _exchanges(_run(packets))
    assert ex.parts == expected.parts and ex.url == expected.url


def test_dns_answer_names_the_server_and_the_query_is_an_exchange() -> None:
    query = struct.pack("!HHHHHH", 7, 0x0100, 1, 0, 0, 0) + b"\x03api\x07example\x03com\x00\x00\x01\x00\x01"
    answer = (
        struct.pack("!HHHHHH", 7, 0x8180, 1, 1, 0, 0)
        + b"\x03api\x07example\x03com\x00\x00\x01\x00\x01"
        + b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04"
        + SERVER
    )
    raw = b"\x00\x01binary-protocol imei=865123456789019"
    packets = [
        (17, PHONE, RESOLVER, 5353 + 1, 53, 0, 0, query),
        (17, RESOLVER, PHONE, 53, 5354, 0, 0, answer),
        *_tcp_session(raw, dport=5000),
    ]
    dns_ex, raw_ex = _exchanges(_run(packets))
    assert dns_ex.protocol == "dns" and dns_ex.parts[0].data == b"api.example.com"
    assert raw_ex.protocol == "raw" and raw_ex.host == "api.example.com"
    assert raw_ex.name_source == "dns" and dns_ex.name_source == "dns"
    assert raw_ex.parts[0].data == raw


def test_tls_client_hello_gives_the_server_name() -> None:
    sni = b"tracker.example.net"
    hs = client_hello(sni.decode())
    hello = b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs + b"\x17\x03\x03\x00\x05" + b"\xaa" * 5
    (ex,) = _exchanges(_run(_tcp_session(hello, dport=443)))
    assert ex.protocol == "tls" and ex.encrypted and ex.host == "tracker.example.net"
    assert [(p.where, p.data) for p in ex.parts] == [("sni", sni)]


def test_a_missing_segment_is_marked_and_never_glued() -> None:
    raw = b"A" * 30 + b"secret-1234567" + b"B" * 30
    packets = _tcp_session(raw, dport=7000)
    dropped = packets[2 + 4]  # bytes 28-35: the start of "secret-1234567"
    events = _run([p for p in packets if p is not dropped])
    chunks = [e.parts[0].data for e in _exchanges(events)]
    assert all(b"secret-1234567" not in c for c in chunks)
    assert b"".join(chunks) == raw.replace(dropped[7], b"")
    assert any(isinstance(e, Notice) for e in events) or len(chunks) == 2


def test_mid_flow_capture_uses_the_well_known_port() -> None:
    packets = [p for p in _tcp_session(REQUEST, sport=51000, dport=8080) if not p[5] & SYN]
    (ex,) = _exchanges(_run(packets))
    assert ex.server_port == 8080 and ex.method == "POST"


def test_flow_count_is_bounded() -> None:
    packets = []
    for port in range(40000, 40050):
        packets.append((6, PHONE, SERVER, port, 9000, SYN, 1, b""))
        packets.append((6, PHONE, SERVER, port, 9000, ACK | PSH, 2, b"x"))
    events = _run(packets, Limits(max_flows=10))
    notices = [e for e in events if isinstance(e, Notice)]
    assert any("oldest closed early" in n.message for n in notices)
    assert len(_exchanges(events)) == 50  # every flow still read, the evicted ones early


def test_udp_only_the_first_speaker_is_scanned() -> None:
    packets = [
        (17, PHONE, SERVER, 40000, 9999, 0, 0, b"hello from phone"),
        (17, SERVER, PHONE, 9999, 40000, 0, 0, b"reply from server"),
    ]
    (ex,) = _exchanges(_run(packets))
    assert ex.transport == "udp" and ex.parts[0].data == b"hello from phone"


def test_stream_buffer_bound_gives_up_the_hole_with_a_notice() -> None:
    session = _tcp_session(REQUEST)
    del session[3]  # the second data segment never arrives
    events = _run(session, Limits(max_stream_buffer=40))
    notices = [e.message for e in events if isinstance(e, Notice)]
    assert any("over 40 bytes (or too many pieces) held out of order" in n for n in notices), notices
    # Without the bound the hole is waited for until the flow ends: no such notice.
    unbounded = [e.message for e in _run(session) if isinstance(e, Notice)]
    assert not any("held out of order" in n for n in unbounded)


def test_bytes_held_across_all_flows_are_bounded_largest_holders_closed_first() -> None:
    # 40 flows each send a request head whose body never finishes: each parser holds its body.
    packets = []
    for n, port in enumerate(range(40000, 40040)):
        body = bytes([65 + n % 26]) * (2000 + 100 * n)
        head = b"POST /u HTTP/1.1\r\nHost: a.example\r\nContent-Length: 99999\r\n\r\n"
        packets.append((6, PHONE, SERVER, port, 80, SYN, 1, b""))
        packets.append((6, PHONE, SERVER, port, 80, ACK | PSH, 2, head + body))
    table = FlowTable("test", Limits(max_total_held=32 << 10))
    events: list[Exchange | Notice] = []
    most = 0
    for t, p in enumerate(packets):
        table.packet(float(t), *p)
        events.extend(table.drain())
        most = max(most, sum(f.consumer.held() for f in table._tcp.values() if f.consumer))
    table.finish()
    events.extend(table.drain())
    closed = [e for e in events if isinstance(e, Notice) and "held across all TCP flows" in e.message]
    assert closed, "the bound was never applied"
    # Counted every limit/16 bytes taken in, so what is held overshoots by at most that plus one packet.
    assert most <= (32 << 10) + (2 << 10) + 6100
    # The flows closed early are the ones holding most, and every request is still reported.
    ports = {int(c.flow.split(":")[1].split(">")[0]) for c in closed}
    assert min(ports) >= 40010, sorted(ports)  # the small holders are left alone
    assert len(_exchanges(events)) == 40


def test_addresses_named_by_dns_are_bounded_oldest_forgotten() -> None:
    addresses = [bytes([93, 184, 0, n]) for n in range(1, 6)]
    answer = struct.pack("!HHHHHH", 7, 0x8180, 1, len(addresses), 0, 0)
    answer += b"\x03api\x07example\x03com\x00\x00\x01\x00\x01"
    for address in addresses:
        answer += b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04" + address
    table = FlowTable("test", Limits(max_names=3))
    table.packet(0.0, 17, RESOLVER, PHONE, 53, 5354, 0, 0, answer)
    notices = [e.message for e in table.drain() if isinstance(e, Notice)]
    assert notices == ["more than 3 addresses named by DNS; oldest forgotten"]
    assert list(table.names) == ["93.184.0.3", "93.184.0.4", "93.184.0.5"]


# ---- the capture reader's fast lane ----------------------------------------------------------


def _pcap_file(path, packets: list[tuple], times: list[float]) -> None:  # type: ignore[no-untyped-def]
    import dpkt

    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for (proto, src, dst, sport, dport, flags, seq, payload), t in zip(packets, times, strict=True):
        assert proto == 6
        tcp = dpkt.tcp.TCP(sport=sport, dport=dport, seq=seq, flags=flags, data=payload)
        ip = dpkt.ip.IP(src=src, dst=dst, p=6, ttl=64, data=tcp)
        frame = bytes(dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, type=0x0800, data=ip))
        sec = int(t)
        out.append(struct.pack("<IIII", sec, round((t - sec) * 1e6), len(frame), len(frame)) + frame)
    path.write_bytes(b"".join(out))


def _without_lane(path: str) -> list[Exchange | Notice]:
    from phonehome.sources.capture import Packet, read_capture

    table = FlowTable(path, Limits())
    events: list[Exchange | Notice] = []
    for event in read_capture(path):  # without a lane, the reader yields each packet it decodes
        if isinstance(event, Packet):
            e = event
            table.packet(e.time, e.proto, e.src, e.dst, e.sport, e.dport, e.flags, e.seq, e.payload)
        elif isinstance(event, Notice):
            events.append(event)
        events.extend(table.drain())
    table.finish()
    events.extend(table.drain())
    return events


def test_packets_passed_over_undecoded_change_nothing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from phonehome.sources import read_packets

    # Flow A sends a request and stays open; flow B then downloads for long enough (over 4096
    # packets, the expiry period, and past the idle timeout) that A expires while the reader is
    # passing B's packets over; then B's client sends a request of its own and both close.
    # A's request has no end of head: the HTTP parser hands it on only when the flow closes.
    a = _tcp_session(b"GET /a?imei=356938035643809 HTTP/1.1\r\nHost: a.example\r\n", sport=40001)
    a_open = a[:-2]
    b = _tcp_session(b"GET /b HTTP/1.1\r\nHost: b.example\r\n\r\n", sport=40002)
    download = [(6, SERVER, PHONE, 80, 40002, ACK, 5001 + 100 * i, b"x" * 100) for i in range(5000)]
    acks = [(6, PHONE, SERVER, 40002, 80, ACK, 1001, b"") for _ in range(50)]
    packets = a_open + b[:2] + download[:2500] + acks + download[2500:] + b[2:] + a[-2:]
    times = [1000.0 + i * 0.5 for i in range(len(packets))]
    path = tmp_path / "lane.pcap"
    _pcap_file(path, packets, times)
    fast = list(read_packets(str(path)))
    slow = _without_lane(str(path))
    assert fast == slow
    hosts = [e.host for e in fast if isinstance(e, Exchange)]
    assert hosts == ["a.example", "b.example"]


def test_a_tls_connection_without_secrets_is_passed_over_past_its_client_hello(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from phonehome.sources import capture, read_packets

    sni = b"tracker.example.net"
    hs = client_hello(sni.decode())
    hello = b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs
    # The hello in one segment, then the client's encrypted records, one gap among them.
    packets = _tcp_session(hello + b"\x17\x03\x03\x00\x40" + b"\xaa" * 64 * 5, dport=443)
    packets = [p for i, p in enumerate(packets) if i != len(packets) // 2]
    path = tmp_path / "tls.pcap"
    _pcap_file(path, packets, [1000.0 + i for i in range(len(packets))])
    passed: list[int] = []
    original = FlowTable.pass_over

    def counting(self: FlowTable, flow: object, time: float, count: int = 1) -> bool:
        passed.append(count)
        return original(self, flow, time, count)

    FlowTable.pass_over = counting  # type: ignore[method-assign]
    try:
        fast = list(read_packets(str(path)))
    finally:
        FlowTable.pass_over = original  # type: ignore[method-assign]
    assert fast == _without_lane(str(path))
    (ex,) = _exchanges(fast)
    assert ex.host == "tracker.example.net" and not [e for e in fast if isinstance(e, Notice)]
    # Every segment of records after the hello's was passed over, not decoded.
    hello_segments = -(-len(hello) // 7)
    records = len(packets) - 4 - hello_segments
    assert sum(passed) == records
    assert capture._walk_pcap is None or records > 10


def test_a_flow_closed_has_no_lanes_even_when_its_consumer_reads_on_closing() -> None:
    # A consumer reads what the flow held when it closes, and may then change what it reads
    # (a ClientHello completed by bytes held out of order stops the reading): no lane comes back.
    table = FlowTable("test")
    table.packet(0.0, 6, PHONE, SERVER, 40000, 443, SYN, 1000, b"")
    ((flow, _whole),) = {id(v[0]): v for v in table.lanes.values()}.values()
    assert len(table.lanes) == 2
    table.finish()
    assert table.lanes == {}
    table.stop_reading(flow)
    table.set_lanes(flow)
    assert table.lanes == {}
