"""DNS message parsing, cross-checked against dpkt on built messages and on real captures."""

from __future__ import annotations

import contextlib
import ipaddress
import struct
from collections.abc import Iterator
from pathlib import Path

import dpkt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phonehome.errors import InputError
from phonehome.protocols.dns import DnsMessage, parse_dns, split_tcp_dns

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"
DNS_CAPTURES = ["android", "googledns_android10", "iphone", "waze", "whatsapp"]

A, CNAME, AAAA, MX, TXT = 1, 5, 28, 15, 16


def header(
    ident: int = 0x1234, flags: int = 0x0100, qd: int = 0, an: int = 0, ns: int = 0, ar: int = 0
) -> bytes:
    return struct.pack("!HHHHHH", ident, flags, qd, an, ns, ar)


def wire_name(*labels: bytes) -> bytes:
    return b"".join(bytes([len(label)]) + label for label in labels) + b"\0"


def question(name: bytes, qtype: int = A) -> bytes:
    return name + struct.pack("!HH", qtype, 1)


def rr(name: bytes, rtype: int, rdata: bytes, rclass: int = 1) -> bytes:
    return name + struct.pack("!HHIH", rtype, rclass, 300, len(rdata)) + rdata


# --- built by hand ----------------------------------------------------------------------------


def test_query_and_response_with_compression() -> None:
    msg = (
        header(ident=7, flags=0x8180, qd=1, an=3)
        + question(wire_name(b"WWW", b"Example", b"com"))
        + rr(b"\xc0\x0c", CNAME, b"\x03cdn" + b"\xc0\x10")  # cdn.example.com
        + rr(b"\xc0\x2d", A, bytes([93, 184, 216, 34]))
        + rr(b"\xc0\x2d", AAAA, bytes.fromhex("20010db8000000000000000000000001"))
    )
    assert parse_dns(msg) == DnsMessage(
        id=7,
        is_response=True,
        queries=(("www.example.com", A),),
        answers=(
            ("www.example.com", CNAME, "cdn.example.com"),
            ("cdn.example.com", A, "93.184.216.34"),
            ("cdn.example.com", AAAA, "2001:db8::1"),
        ),
    )


def test_other_record_types_and_classes_are_skipped() -> None:
    msg = (
        header(flags=0x8180, qd=1, an=3)
        + question(wire_name(b"example", b"com"), MX)
        + rr(b"\xc0\x0c", MX, b"\x00\x0a" + wire_name(b"mx"))
        + rr(b"\xc0\x0c", A, b"\1\2\3\4", rclass=3)  # CHAOS
        + rr(b"\xc0\x0c", A, b"\1\2\3\4", rclass=0x8001)  # mDNS cache-flush bit
    )
    parsed = parse_dns(msg)
    assert parsed.queries == (("example.com", MX),)
    assert parsed.answers == (("example.com", A, "1.2.3.4"),)


def test_authority_and_additional_sections_are_not_needed() -> None:
    msg = header(qd=1, ar=5) + question(wire_name(b"a"))
    assert parse_dns(msg).queries == (("a", A),)


def test_root_name_and_escaped_labels() -> None:
    msg = (
        header(qd=3)
        + question(b"\0", 2)
        + question(wire_name(b"a.b", b"back\\slash", b"Sp ace"))
        + question(wire_name(b"\x00\x7f\xff", b"UTF\xc3\xa9"))
    )
    assert parse_dns(msg).queries == (
        ("", 2),
        ("a\\.b.back\\\\slash.sp\\032ace", A),
        ("\\000\\127\\255.utf\\195\\169", A),
    )


def test_longest_name_is_accepted() -> None:
    # 3 labels of 63 + one of 61: 4 * 64 - 2 + 1 = 255 octets on the wire.
    labels = [b"a" * 63, b"b" * 63, b"c" * 63, b"d" * 61]
    assert len(wire_name(*labels)) == 255
    msg = header(qd=1) + question(wire_name(*labels))
    assert parse_dns(msg).queries[0][0] == ".".join(label.decode() for label in labels)


BAD = {
    "short header": b"\0" * 11,
    "counts too large": header(qd=3) + question(wire_name(b"a")),
    "answer count too large": header(an=1) + b"\0" * 10,
    "name past end": header(qd=1) + b"\x05abc",
    "no terminating label": header(qd=1) + b"\x01a",
    "question tail cut": header(qd=1) + wire_name(b"a") + b"\0\1",
    "pointer to itself": header(qd=1) + b"\xc0\x0c" + b"\0\1\0\1",
    "pointer loop": header(qd=1) + b"\xc0\x0e\xc0\x0c" + b"\0\1\0\1",
    "pointer loop through labels": header(qd=1) + b"\x01a\xc0\x0c" + b"\0\1\0\1",
    "pointer past end": header(qd=1) + b"\xc0\xff" + b"\0\1\0\1",
    "pointer cut off": header(qd=1) + b"\x03abc\x01a\xc0",
    "extended label type": header(qd=1) + b"\x41a" + b"\0" * 5,
    "reserved label type": header(qd=1) + b"\x81a" + b"\0" * 5,
    "name over 255": header(qd=1) + question(wire_name(*[b"x" * 63] * 4)),
    "rdata past end": header(an=1) + rr(b"\0", A, b"\1\2\3\4")[:-1],
    "A of 5 octets": header(an=1) + rr(b"\0", A, b"\1\2\3\4\5"),
    "AAAA of 4 octets": header(an=1) + rr(b"\0", AAAA, b"\1\2\3\4"),
    "CNAME past its rdata": header(an=1) + rr(b"\0", CNAME, b"\x03abc") + b"\0",
    "rr tail cut": header(an=1) + wire_name(b"abcdefghij") + b"\0\1\0\1",
}


@pytest.mark.parametrize("payload", BAD.values(), ids=BAD.keys())
def test_malformed_messages_raise_input_error(payload: bytes) -> None:
    with pytest.raises(InputError) as info:
        parse_dns(payload)
    assert info.value.source is None and info.value.offset is None


def test_long_pointer_chain_is_bounded() -> None:
    # The question's name points into a chain of 200 pointers, each to the one before, ending at a
    # root label: no loop, but longer than any real name can need.
    root = 18
    chain = bytearray(b"\0")
    for i in range(200):
        chain += struct.pack("!H", 0xC000 | (root if i == 0 else root + 1 + 2 * (i - 1)))
    last = root + 1 + 2 * 199
    msg = header(qd=1) + struct.pack("!H", 0xC000 | last) + struct.pack("!HH", A, 1) + bytes(chain)
    with pytest.raises(InputError, match="loop"):
        parse_dns(msg)
    # The same chain cut to 100 pointers is followed.
    short = root + 1 + 2 * 99
    msg = header(qd=1) + struct.pack("!H", 0xC000 | short) + struct.pack("!HH", A, 1) + bytes(chain)
    assert parse_dns(msg).queries == (("", A),)


# --- against dpkt --------------------------------------------------------------------------------

labels = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_", min_size=1, max_size=12)
names = st.lists(labels, min_size=1, max_size=5).map(".".join)


@st.composite
def dpkt_messages(draw: st.DrawFn) -> bytes:
    msg = dpkt.dns.DNS(id=draw(st.integers(0, 0xFFFF)))
    msg.qr = draw(st.sampled_from([dpkt.dns.DNS_Q, dpkt.dns.DNS_R]))
    msg.qd = [
        dpkt.dns.DNS.Q(name=name, type=qtype)
        for name, qtype in draw(st.lists(st.tuples(names, st.sampled_from([A, AAAA, CNAME, 65])), max_size=3))
    ]
    answers = []
    kinds = st.sampled_from(["a", "aaaa", "cname", "txt"])
    for kind, name in draw(st.lists(st.tuples(kinds, names), max_size=5)):
        if kind == "a":
            ip = draw(st.binary(min_size=4, max_size=4))
            answers.append(dpkt.dns.DNS.RR(name=name, type=A, ip=ip))
        elif kind == "aaaa":
            ip6 = draw(st.binary(min_size=16, max_size=16))
            answers.append(dpkt.dns.DNS.RR(name=name, type=AAAA, ip6=ip6))
        elif kind == "cname":
            answers.append(dpkt.dns.DNS.RR(name=name, type=CNAME, cname=draw(names)))
        else:
            answers.append(dpkt.dns.DNS.RR(name=name, type=TXT, text=[b"hello"]))
    msg.an = answers
    return bytes(msg)


def dpkt_view(payload: bytes) -> DnsMessage:
    """What dpkt makes of a message, in our shape."""
    msg = dpkt.dns.DNS(payload)
    answers: list[tuple[str, int, str]] = []
    for answer in msg.an:
        if answer.cls & 0x7FFF != 1:
            continue
        if answer.type == A:
            answers.append((answer.name.lower(), A, str(ipaddress.IPv4Address(answer.ip))))
        elif answer.type == AAAA:
            answers.append((answer.name.lower(), AAAA, str(ipaddress.IPv6Address(answer.ip6))))
        elif answer.type == CNAME:
            answers.append((answer.name.lower(), CNAME, answer.cname.lower()))
    return DnsMessage(
        id=msg.id,
        is_response=msg.qr == dpkt.dns.DNS_R,
        queries=tuple((q.name.lower(), q.type) for q in msg.qd),
        answers=tuple(answers),
    )


@settings(max_examples=200)
@given(dpkt_messages())
def test_agrees_with_dpkt_on_built_messages(payload: bytes) -> None:
    assert parse_dns(payload) == dpkt_view(payload)


@settings(max_examples=300)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_give_a_message_or_input_error(payload: bytes) -> None:
    with contextlib.suppress(InputError):
        parse_dns(payload)


@settings(max_examples=300)
@given(dpkt_messages(), st.data())
def test_damaged_messages_give_a_message_or_input_error(payload: bytes, data: st.DataObject) -> None:
    damaged = bytearray(payload)
    for _ in range(data.draw(st.integers(1, 4))):
        if not damaged:
            break
        i = data.draw(st.integers(0, len(damaged) - 1))
        damaged[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(damaged)))
    for candidate in (bytes(damaged), bytes(damaged[:cut])):
        with contextlib.suppress(InputError):
            parse_dns(candidate)


# --- TCP framing ---------------------------------------------------------------------------------


def framed(*messages: bytes) -> bytes:
    return b"".join(struct.pack("!H", len(m)) + m for m in messages)


ONE = header(ident=1, qd=1) + question(wire_name(b"one", b"example"))
TWO = header(ident=2, qd=1) + question(wire_name(b"two", b"example"))


def test_split_tcp_whole() -> None:
    messages, rest = split_tcp_dns(framed(ONE, TWO))
    assert messages == [ONE, TWO]
    assert rest == b""
    assert [parse_dns(m).id for m in messages] == [1, 2]


def test_split_tcp_byte_at_a_time() -> None:
    stream = framed(ONE, TWO)
    got: list[bytes] = []
    buffer = b""
    for i in range(len(stream)):
        messages, buffer = split_tcp_dns(buffer + stream[i : i + 1])
        got += messages
        if i == len(ONE) + 1:
            assert got == [ONE]
    assert got == [ONE, TWO]
    assert buffer == b""


def test_split_tcp_with_trailing_data() -> None:
    partial = framed(TWO)[:7]
    messages, rest = split_tcp_dns(framed(ONE, b"") + partial)
    assert messages == [ONE, b""]
    assert rest == partial
    assert split_tcp_dns(b"\x00") == ([], b"\x00")


# --- real captures -------------------------------------------------------------------------------


def udp_dns_payloads(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        for _ts, frame in dpkt.pcap.Reader(f):
            eth = dpkt.ethernet.Ethernet(frame)
            ip = eth.data
            if not isinstance(ip, dpkt.ip.IP | dpkt.ip6.IP6):
                continue
            udp = ip.data
            if isinstance(udp, dpkt.udp.UDP) and 53 in (udp.sport, udp.dport):
                yield bytes(udp.data)


def test_agrees_with_dpkt_on_real_captures() -> None:
    if not CORPUS.is_dir():
        pytest.skip(f"capture corpus not found at {CORPUS}")
    checked = 0
    for capture in DNS_CAPTURES:
        for payload in udp_dns_payloads(CORPUS / "pcap" / "ndpi" / f"{capture}.pcap"):
            try:
                expected = dpkt_view(payload)
            except (dpkt.UnpackError, UnicodeDecodeError):
                # dpkt refused it: all that matters is that we fail cleanly, if at all.
                with contextlib.suppress(InputError):
                    parse_dns(payload)
                continue
            assert parse_dns(payload) == expected
            checked += 1
    # android.pcap and iphone.pcap hold 80 DNS packets between them; the others hold none.
    assert checked >= 70


def test_a_message_read_before_under_another_id_is_the_same_message_with_its_own_id() -> None:
    from phonehome.protocols import dns

    query = question(wire_name(b"again", b"example"))
    first, second = parse_dns(header(ident=5, qd=1) + query), parse_dns(header(ident=6, qd=1) + query)
    assert (first.id, second.id) == (5, 6)
    assert first.queries == second.queries == (("again.example", 1),)
    assert parse_dns(header(ident=5, qd=1) + query) is first  # the very message, as read before
    damaged = header(ident=9, qd=1) + query[:-3]
    for _ in range(2):  # never remembered: refused every time
        with pytest.raises(InputError):
            parse_dns(damaged)
    for i in range(dns._SEEN_MAX + 10):  # the memory of messages read is bounded
        parse_dns(header(ident=i & 0xFFFF, qd=1) + question(wire_name(b"n%d" % i, b"example")))
    assert len(dns._SEEN) <= dns._SEEN_MAX
