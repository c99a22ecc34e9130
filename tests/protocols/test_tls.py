"""Reading the ClientHello: built by hand and fed three ways, split across records, and from real captures."""

from __future__ import annotations

import contextlib
import re
import struct
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import dpkt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phonehome.errors import InputError
from phonehome.protocols.tls import (
    NEED_DATA,
    ClientHello,
    ClientHelloReader,
    NeedData,
    looks_like_tls,
    parse_client_hello,
)

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"
# (capture, server port): the HTTPS captures, and DNS over TLS in googledns_android10.
TLS_CAPTURES = [
    ("android", 443),
    ("iphone", 443),
    ("whatsapp", 443),
    ("waze", 443),
    ("googledns_android10", 853),
]

TLS10, TLS12, TLS13 = 0x0301, 0x0303, 0x0304


# --- a small ClientHello builder -----------------------------------------------------------------


def u8(n: int) -> bytes:
    return bytes([n])


def u16(n: int) -> bytes:
    return struct.pack("!H", n)


def vec8(data: bytes) -> bytes:
    return u8(len(data)) + data


def vec16(data: bytes) -> bytes:
    return u16(len(data)) + data


def extension(ext_type: int, data: bytes) -> bytes:
    return u16(ext_type) + vec16(data)


def sni_extension(*names: bytes, name_type: int = 0) -> bytes:
    return extension(0, vec16(b"".join(u8(name_type) + vec16(name) for name in names)))


def alpn_extension(*protocols: bytes) -> bytes:
    return extension(16, vec16(b"".join(vec8(p) for p in protocols)))


def versions_extension(*versions: int) -> bytes:
    return extension(43, vec8(b"".join(u16(v) for v in versions)))


def hello_body(
    *extensions: bytes,
    legacy_version: int = TLS12,
    session_id: bytes = b"\x55" * 32,
    suites: Iterable[int] = (0x1301, 0x1302, 0xC02F),
    no_extensions: bool = False,
) -> bytes:
    body = (
        u16(legacy_version)
        + bytes(range(32))
        + vec8(session_id)
        + vec16(b"".join(u16(s) for s in suites))
        + vec8(b"\x00")
    )
    return body if no_extensions else body + vec16(b"".join(extensions))


def handshake(body: bytes, msg_type: int = 1) -> bytes:
    return u8(msg_type) + len(body).to_bytes(3, "big") + body


def records(message: bytes, sizes: Iterable[int] = (), version: int = TLS10) -> bytes:
    """``message`` cut into handshake records of the given fragment sizes (the rest in the last one)."""
    out = b""
    pos = 0
    for size in [*sizes, len(message)]:
        fragment = message[pos : pos + size]
        if fragment:
            out += u8(22) + u16(version) + vec16(fragment)
        pos += len(fragment)
    return out


def typical(server_name: bytes = b"api.example.com") -> bytes:
    return records(
        handshake(
            hello_body(
                extension(0x0A0A, b""),  # GREASE
                sni_extension(server_name),
                alpn_extension(b"h2", b"http/1.1"),
                versions_extension(0x3A3A, TLS13, TLS12),
                extension(21, b"\0" * 100),  # padding
            )
        )
    )


def read(chunks: Iterable[bytes], offset: int = 0) -> ClientHello | NeedData:
    reader = ClientHelloReader(offset=offset)
    for chunk in chunks:
        reader.receive_data(chunk)
    return reader.result()


EXPECTED = ClientHello(
    version=TLS13,
    server_name="api.example.com",
    alpn=("h2", "http/1.1"),
    cipher_suites=(0x1301, 0x1302, 0xC02F),
    offset=0,
)


# --- three ways ----------------------------------------------------------------------------------


def test_whole() -> None:
    assert read([typical()]) == EXPECTED


def test_byte_at_a_time() -> None:
    stream = typical()
    reader = ClientHelloReader()
    for i in range(len(stream)):
        assert reader.result() is NEED_DATA
        reader.receive_data(stream[i : i + 1])
    assert reader.result() == EXPECTED


def test_with_trailing_data() -> None:
    change_cipher_spec = b"\x14\x03\x03\x00\x01\x01"
    application_data = b"\x17\x03\x03\x00\x05hello"
    assert read([typical() + change_cipher_spec + application_data]) == EXPECTED
    assert read([typical(), b"GET / HTTP/1.1\r\n"]) == EXPECTED


def test_offset_is_where_the_reader_started() -> None:
    result = read([typical()], offset=1234)
    assert isinstance(result, ClientHello)
    assert result.offset == 1234


@settings(max_examples=200)
@given(
    st.lists(st.integers(1, 300), max_size=8),
    st.lists(st.integers(1, 400), max_size=8),
)
def test_split_across_records_and_segments(fragment_sizes: list[int], segment_sizes: list[int]) -> None:
    stream = records(
        handshake(hello_body(sni_extension(b"api.example.com"), alpn_extension(b"h2", b"http/1.1"))),
        fragment_sizes,
    )
    chunks = []
    pos = 0
    for size in [*segment_sizes, len(stream)]:
        chunks.append(stream[pos : pos + size])
        pos += size
    result = read(chunks)
    assert isinstance(result, ClientHello)
    assert result.server_name == "api.example.com"
    assert result.alpn == ("h2", "http/1.1")
    assert result.version == TLS12


def test_large_hello_over_several_full_records() -> None:
    body = hello_body(sni_extension(b"big.example"), extension(21, b"\0" * 40_000))
    stream = records(handshake(body), [1 << 14, 1 << 14])
    result = read([stream])
    assert isinstance(result, ClientHello)
    assert result.server_name == "big.example"


# --- fields --------------------------------------------------------------------------------------


def test_no_extensions_at_all() -> None:
    result = read([records(handshake(hello_body(legacy_version=TLS10, no_extensions=True)))])
    assert result == ClientHello(TLS10, None, (), (0x1301, 0x1302, 0xC02F), 0)


def test_version_is_the_highest_real_supported_version() -> None:
    body = hello_body(versions_extension(0x7A7A, TLS12, TLS13, 0x0301))
    result = read([records(handshake(body))])
    assert isinstance(result, ClientHello)
    assert result.version == TLS13
    only_grease = hello_body(versions_extension(0x7A7A), legacy_version=TLS12)
    result = read([records(handshake(only_grease))])
    assert isinstance(result, ClientHello)
    assert result.version == TLS12


def test_server_name_is_normalised() -> None:
    body = hello_body(sni_extension(b"WWW.Example.COM."))
    result = read([records(handshake(body))])
    assert isinstance(result, ClientHello)
    assert result.server_name == "www.example.com"
    body = hello_body(sni_extension(b"a b\\c\xff\x00"))
    result = read([records(handshake(body))])
    assert isinstance(result, ClientHello)
    assert result.server_name == "a\\032b\\\\c\\255\\000"


def test_first_host_name_entry_and_first_extension_win() -> None:
    body = hello_body(
        sni_extension(b"first.example"),
        sni_extension(b"second.example"),
        alpn_extension(b"h2"),
        alpn_extension(b"http/1.1"),
    )
    result = read([records(handshake(body))])
    assert isinstance(result, ClientHello)
    assert (result.server_name, result.alpn) == ("first.example", ("h2",))
    other_type = extension(0, vec16(u8(7) + vec16(b"opaque") + u8(0) + vec16(b"host.example")))
    result = read([records(handshake(hello_body(other_type)))])
    assert isinstance(result, ClientHello)
    assert result.server_name == "host.example"


def test_grease_cipher_suites_are_kept_as_sent() -> None:
    result = read([records(handshake(hello_body(suites=(0x2A2A, 0x1301))))])
    assert isinstance(result, ClientHello)
    assert result.cipher_suites == (0x2A2A, 0x1301)


def test_looks_like_tls() -> None:
    assert looks_like_tls(typical())
    assert looks_like_tls(b"\x16\x03\x00")
    assert looks_like_tls(b"\x16\x03\x04\x00")
    assert not looks_like_tls(b"\x16\x03\x05")
    assert not looks_like_tls(b"\x16\x02\x01")
    assert not looks_like_tls(b"\x17\x03\x03")
    assert not looks_like_tls(b"\x16\x03")
    assert not looks_like_tls(b"GET / HTTP/1.1\r\n")


# --- refusals ------------------------------------------------------------------------------------

GOOD_BODY = hello_body(sni_extension(b"x.example"))
BAD_STREAMS = {
    "http": b"GET / HTTP/1.1\r\n",
    "alert first": b"\x15\x03\x03\x00\x02\x02\x28",
    "record version": b"\x16\x03\x05\x00\x10",
    "record major": b"\x16\x02\x00",
    "empty record": b"\x16\x03\x01\x00\x00",
    "record over 2^14": b"\x16\x03\x01\x40\x01",
    "server hello": records(handshake(GOOD_BODY, msg_type=2)),
    "hello over 64 KiB": records(b"\x01\x01\x00\x01" + b"\0" * 100),
    "session id over 32": records(handshake(hello_body(session_id=b"s" * 33))),
    "odd cipher suites": records(handshake(GOOD_BODY[:34] + b"\x00" + b"\x00\x03\x13\x01\x13" + b"\x01\x00")),
    "no cipher suites": records(handshake(hello_body(suites=(), no_extensions=True))),
    "no compression": records(handshake(u16(TLS12) + bytes(32) + vec8(b"") + vec16(u16(0x1301)) + vec8(b""))),
    "truncated body": records(handshake(GOOD_BODY[:-3])),
    "trailing bytes in body": records(handshake(GOOD_BODY + b"\0")),
    "extension past its list": records(handshake(hello_body(b"\x00\x00\x00\x09abc"))),
    "empty host name": records(handshake(hello_body(sni_extension(b"")))),
    "empty sni list": records(handshake(hello_body(extension(0, vec16(b""))))),
    "sni trailing bytes": records(handshake(hello_body(extension(0, vec16(b"\0\0\1a") + b"z")))),
    "empty alpn protocol": records(handshake(hello_body(alpn_extension(b"h2", b"")))),
    "odd versions": records(handshake(hello_body(extension(43, vec8(b"\x03\x04\x03"))))),
}


@pytest.mark.parametrize("stream", BAD_STREAMS.values(), ids=BAD_STREAMS.keys())
def test_not_a_client_hello_raises_input_error(stream: bytes) -> None:
    reader = ClientHelloReader()
    reader.receive_data(stream)
    with pytest.raises(InputError) as info:
        reader.result()
    assert info.value.source is None
    # The verdict stands whatever comes next.
    reader.receive_data(typical())
    with pytest.raises(InputError):
        reader.result()


def test_not_tls_is_refused_from_the_first_byte() -> None:
    reader = ClientHelloReader()
    reader.receive_data(b"G")
    with pytest.raises(InputError):
        reader.result()


def test_parse_client_hello_on_its_own() -> None:
    assert parse_client_hello(GOOD_BODY).server_name == "x.example"


# --- arbitrary input -----------------------------------------------------------------------------


def settle(reader: ClientHelloReader) -> None:
    try:
        result = reader.result()
    except InputError:
        return
    assert result is NEED_DATA or isinstance(result, ClientHello)


@settings(max_examples=300)
@given(st.binary(max_size=500), st.integers(1, 64))
def test_arbitrary_bytes_never_raise_anything_else(data: bytes, chunk: int) -> None:
    reader = ClientHelloReader()
    for i in range(0, len(data), chunk):
        reader.receive_data(data[i : i + chunk])
        settle(reader)


@settings(max_examples=300)
@given(st.binary(max_size=400), st.integers(0, 0xFFFFFF))
def test_arbitrary_bodies_in_a_valid_frame(body: bytes, declared: int) -> None:
    reader = ClientHelloReader()
    message = b"\x01" + min(declared, len(body)).to_bytes(3, "big") + body
    reader.receive_data(records(message))
    settle(reader)
    with contextlib.suppress(InputError):
        parse_client_hello(body)


@settings(max_examples=300)
@given(st.data())
def test_damaged_client_hellos(data: st.DataObject) -> None:
    stream = bytearray(typical())
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(stream) - 1))
        stream[i] = data.draw(st.integers(0, 255))
    reader = ClientHelloReader()
    reader.receive_data(bytes(stream))
    settle(reader)


# --- real captures -------------------------------------------------------------------------------

HOST_NAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+")


def client_streams(path: Path, port: int) -> list[bytes]:
    """The first client-to-server bytes of each TCP flow to ``port``, in sequence order."""
    flows: dict[tuple[bytes, int, bytes], dict[int, bytes]] = defaultdict(dict)
    with path.open("rb") as f:
        for _ts, frame in dpkt.pcap.Reader(f):
            ip = dpkt.ethernet.Ethernet(frame).data
            if not isinstance(ip, dpkt.ip.IP | dpkt.ip6.IP6):
                continue
            tcp = ip.data
            if isinstance(tcp, dpkt.tcp.TCP) and tcp.dport == port and tcp.data:
                flows[(ip.src, tcp.sport, ip.dst)].setdefault(tcp.seq, bytes(tcp.data))
    streams = []
    for segments in flows.values():
        stream = b""
        for seq in sorted(segments):  # no wrap-around inside these few flows
            stream += segments[seq]
        streams.append(stream)
    return streams


def dpkt_server_name(stream: bytes) -> str | None:
    """The host name dpkt's TLS parser finds, with the SNI entry read by hand from its extension list."""
    record = dpkt.ssl.TLSRecord(stream)
    hello = dpkt.ssl.TLSHandshake(record.data).data
    for ext_type, ext_data in getattr(hello, "extensions", []):
        if ext_type == 0:
            length = struct.unpack("!H", ext_data[3:5])[0]
            return bytes(ext_data[5 : 5 + length]).decode("ascii").lower()
    return None


def test_real_client_hellos() -> None:
    if not CORPUS.is_dir():
        pytest.skip(f"capture corpus not found at {CORPUS}")
    named = cross_checked = 0
    for capture, port in TLS_CAPTURES:
        for stream in client_streams(CORPUS / "pcap" / "ndpi" / f"{capture}.pcap", port):
            if not looks_like_tls(stream):
                continue  # the capture began after the handshake
            result = read([stream])
            assert isinstance(result, ClientHello), capture
            assert read(stream[i : i + 1] for i in range(len(stream))) == result
            assert 0x0301 <= result.version <= 0x0304
            assert result.cipher_suites
            if result.server_name is not None:
                assert HOST_NAME.fullmatch(result.server_name), result.server_name
                named += 1
            try:
                expected = dpkt_server_name(stream)
            except (dpkt.UnpackError, dpkt.ssl.SSL3Exception):
                continue
            assert result.server_name == expected
            cross_checked += 1
    # 37 of the 50 ClientHellos in these captures carry a server name (waze's TLS 1.0 ones don't).
    assert named >= 35
    assert cross_checked >= 45
