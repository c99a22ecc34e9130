"""The flow table with TLS secrets: decrypted HTTP/1, HTTP/2 and raw data, wrong keys, h2c, QUIC."""

from __future__ import annotations

import hpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phonehome.model import Exchange, Notice
from phonehome.protocols.flows import ACK, FIN, SYN, FlowTable
from phonehome.protocols.http2 import PREFACE
from phonehome.protocols.keylog import KeyStore, Secret, parse_keylog
from tls_sessions import HOST, Session, session

PHONE, SERVER = bytes([10, 0, 0, 2]), bytes([93, 184, 216, 34])
REQUEST = (
    b"POST /up?imei=865123456789019 HTTP/1.1\r\nHost: " + HOST.encode() + b"\r\nContent-Length: 4\r\n\r\nbody"
)


def _frame(ftype: int, flags: int, stream: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + stream.to_bytes(4, "big") + payload


H2_BLOCK = hpack.Encoder().encode(
    [(":method", "GET"), (":path", "/h2?id=1"), (":authority", HOST), (":scheme", "https"), ("x-imei", "865")]
)
H2_REQUEST = PREFACE + _frame(4, 0, 0, b"") + _frame(1, 0x5, 1, H2_BLOCK)

SESSION_13 = session([REQUEST], [b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"])
SESSION_12_H2 = session([H2_REQUEST], [], tls13=False, ciphers="ECDHE-RSA-AES128-GCM-SHA256", alpn=["h2"])


def _segments(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def _packets(s: Session, client_size: int = 1400, server_size: int = 1400, dport: int = 443) -> list[tuple]:
    """The connection as packets: the client's first flight, the server's, then the rest."""
    c_seq, s_seq = 1000, 5000
    out: list[tuple] = [
        (PHONE, SERVER, 40000, dport, SYN, c_seq, b""),
        (SERVER, PHONE, dport, 40000, SYN | ACK, s_seq, b""),
    ]
    c_seq += 1
    s_seq += 1
    hello_end = 5 + int.from_bytes(s.client[3:5], "big")
    for chunk in _segments(s.client[:hello_end], client_size):
        out.append((PHONE, SERVER, 40000, dport, ACK, c_seq, chunk))
        c_seq += len(chunk)
    for chunk in _segments(s.server, server_size):
        out.append((SERVER, PHONE, dport, 40000, ACK, s_seq, chunk))
        s_seq += len(chunk)
    for chunk in _segments(s.client[hello_end:], client_size):
        out.append((PHONE, SERVER, 40000, dport, ACK, c_seq, chunk))
        c_seq += len(chunk)
    out.append((PHONE, SERVER, 40000, dport, FIN | ACK, c_seq, b""))
    out.append((SERVER, PHONE, dport, 40000, FIN | ACK, s_seq, b""))
    return out


def _run(packets: list[tuple], keys: KeyStore | None) -> list[Exchange | Notice]:
    table = FlowTable("test", keys=keys)
    out: list[Exchange | Notice] = []
    for i, (src, dst, sport, dport, flags, seq, payload) in enumerate(packets):
        table.packet(float(i), 6, src, dst, sport, dport, flags, seq, payload)
        out += table.drain()
    table.finish()
    return out + table.drain()


def _keys(s: Session) -> KeyStore:
    return KeyStore(parse_keylog(s.keylog)[0])


def test_http1_inside_tls13_is_an_encrypted_https_exchange() -> None:
    events = _run(_packets(SESSION_13), _keys(SESSION_13))
    assert not [e for e in events if isinstance(e, Notice)]
    hello, request = events
    assert isinstance(hello, Exchange) and hello.protocol == "tls" and hello.host == HOST
    assert isinstance(request, Exchange) and request.protocol == "http"
    assert request.url == f"https://{HOST}/up?imei=865123456789019"
    assert (request.encrypted, request.tls_version, request.tls_cipher) == (
        True,
        "TLS 1.3",
        SESSION_13.cipher,
    )
    assert request.parts[-1].data == b"body"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 2000), st.integers(1, 2000))
def test_any_tcp_segmentation_gives_the_same_exchanges(client_size: int, server_size: int) -> None:
    events = _run(_packets(SESSION_13, client_size, server_size), _keys(SESSION_13))
    assert [(e.protocol, e.url, e.parts) for e in events if isinstance(e, Exchange)] == [
        (e.protocol, e.url, e.parts)
        for e in _run(_packets(SESSION_13), _keys(SESSION_13))
        if isinstance(e, Exchange)
    ]


def test_http2_inside_tls12_has_the_fields_of_http1() -> None:
    events = _run(_packets(SESSION_12_H2), _keys(SESSION_12_H2))
    (request,) = [e for e in events if isinstance(e, Exchange) and e.protocol == "http2"]
    assert request.url == f"https://{HOST}/h2?id=1" and request.method == "GET"
    assert request.host == HOST and request.name_source == "http"
    assert (request.tls_version, request.tls_cipher) == ("TLS 1.2", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256")
    assert [(p.where, p.data) for p in request.parts] == [
        ("path", b"/h2"),
        ("query", b"id=1"),
        ("header:host", HOST.encode()),
        ("header:x-imei", b"865"),
    ]


def test_a_wrong_key_log_gives_one_notice_per_flow() -> None:
    secrets = parse_keylog(SESSION_13.keylog)[0]
    wrong = KeyStore([Secret(x.label, x.client_random, bytes(len(x.secret))) for x in secrets])
    events = _run(_packets(SESSION_13), wrong)
    assert [e.protocol for e in events if isinstance(e, Exchange)] == ["tls"]
    (notice,) = [e for e in events if isinstance(e, Notice)]
    assert notice.flow == "tcp 10.0.0.2:40000>93.184.216.34:443"
    assert "could not be decrypted: authentication failed" in notice.message


def test_secrets_for_other_connections_name_the_client_random() -> None:
    other = KeyStore([Secret("CLIENT_RANDOM", bytes(32), bytes(48))])
    events = _run(_packets(SESSION_13), other)
    (notice,) = [e for e in events if isinstance(e, Notice)]
    assert "no key for client_random" in notice.message


def test_without_keys_only_the_client_hello_is_read() -> None:
    events = _run(_packets(SESSION_13), None)
    assert [(type(e).__name__, getattr(e, "protocol", None)) for e in events] == [("Exchange", "tls")]


def test_cleartext_http2_with_prior_knowledge() -> None:
    plain = Session(H2_REQUEST, b"", b"", "", "")
    packets = [p for p in _packets(plain, 7, dport=8080) if p[0] == PHONE]
    (request,) = _run(packets, None)
    assert isinstance(request, Exchange) and request.protocol == "http2"
    assert request.url == f"https://{HOST}/h2?id=1"  # the :scheme the client sent
    assert not request.encrypted and request.tls_version is None
