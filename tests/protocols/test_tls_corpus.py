"""Golden tests on real encrypted captures: TLS 1.2 and 1.3, key logs and pcapng secrets blocks, QUIC."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from factories import CORPUS, NO_CORPUS
from phonehome.model import Exchange, Notice
from phonehome.protocols.http2 import Request, RequestReader
from phonehome.protocols.keylog import KeyStore, parse_keylog
from phonehome.protocols.tlsrecords import CLIENT, SERVER, Plaintext, TlsDecryptor
from phonehome.sources import capture, load_keylogs, read_packets
from tls_sessions import tcp_streams

pytestmark = pytest.mark.skipif(not CORPUS.is_dir(), reason=NO_CORPUS)
PCAP2HAR = CORPUS / "pcap" / "pcap2har"
GOLDENS = CORPUS / "pcap" / "pcap2har-goldens"

# capture -> its pcap2har golden (HAR-like JSON)
H2_GOLDENS = [
    ("firefox-tls13-facebook-dsb.pcapng", "test_http2.py-test_firefox_tls13"),
    ("http2-dump.pcap", "test_http2.py-test_http2_parse"),
]


def _exchanges(path: Path, keylogs: list[str] = ()) -> tuple[list[Exchange], list[Notice]]:  # type: ignore[assignment]
    events = list(read_packets(str(path), None, load_keylogs(keylogs)))
    return [e for e in events if isinstance(e, Exchange)], [e for e in events if isinstance(e, Notice)]


def _golden(name: str) -> list[dict[str, object]]:
    return json.loads((GOLDENS / name).read_text())["log"]["entries"]  # type: ignore[no-any-return]


def _h2_requests(path: Path) -> list[Request]:
    """Decrypt with the capture's own secrets blocks, then read the client's HTTP/2 frames."""
    blocks = [e.data for e in capture.read_capture(str(path)) if isinstance(e, capture.Secrets)]
    keys = KeyStore([s for block in blocks for s in parse_keylog(block)[0]])
    streams = tcp_streams(str(path))
    out: list[Request] = []
    for (src, sport, dst, dport), client in streams.items():
        if dport != 443:
            continue
        dec = TlsDecryptor(keys)
        dec.receive(CLIENT, client)
        dec.receive(SERVER, streams[(dst, dport, src, sport)])
        reader = RequestReader()
        for event in dec.events():
            if isinstance(event, Plaintext) and event.direction == CLIENT:
                reader.receive_data(event.data)
        reader.receive_eof()
        out += [e for e in reader.events() if isinstance(e, Request)]
        assert dec.problems() == []
    return out


@pytest.mark.parametrize(("capture_name", "golden"), H2_GOLDENS)
def test_http2_requests_match_the_golden(capture_name: str, golden: str) -> None:
    expected = [
        (e["request"]["method"], [h["name"] for h in e["request"]["headers"]])  # type: ignore[index]
        for e in _golden(golden)
    ]
    got = [(r.method, [n.decode() for n, _ in r.headers]) for r in _h2_requests(PCAP2HAR / capture_name)]
    assert sorted(got) == sorted(expected)


@pytest.mark.parametrize(("capture_name", "golden"), H2_GOLDENS)
def test_http2_exchanges_through_the_flow_table(capture_name: str, golden: str) -> None:
    exchanges, notices = _exchanges(PCAP2HAR / capture_name)
    requests = [e for e in exchanges if e.protocol == "http2"]
    expected = [(e["request"]["method"], e["request"]["url"]) for e in _golden(golden)]  # type: ignore[index]
    assert sorted((e.method, e.url) for e in requests) == sorted(expected)
    assert {(e.encrypted, e.tls_version, e.tls_cipher) for e in requests} == {
        (True, "TLS 1.3", "TLS_AES_128_GCM_SHA256")
    }
    assert not [n for n in notices if "decrypt" in n.message]


def test_tls12_cbc_with_a_key_log_gives_ping() -> None:
    folder = CORPUS / "tls"
    exchanges, notices = _exchanges(
        folder / "tls12-illustrated.pcap", [str(folder / "tls12-illustrated.keylog")]
    )
    raw = [e for e in exchanges if e.protocol == "raw"]
    assert [[p.data for p in e.parts] for e in raw] == [[b"ping"]]
    assert (raw[0].encrypted, raw[0].tls_version, raw[0].tls_cipher) == (
        True,
        "TLS 1.2",
        "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    )
    assert raw[0].host == "example.ulfheim.net"
    assert notices == []


def test_http2_over_tls12_gcm_on_port_8443() -> None:
    folder = CORPUS / "tls"
    exchanges, notices = _exchanges(
        folder / "http2-data-reassembly.pcap", [str(folder / "http2-data-reassembly.keylog")]
    )
    (request,) = [e for e in exchanges if e.protocol == "http2"]
    assert (request.method, request.server_port) == ("GET", 8443)
    assert request.url is not None and request.url.endswith(":8443/wireshark.png")
    agent = [p.data for p in request.parts if p.where == "header:user-agent"]
    assert agent == [b"curl/7.52.1"]
    assert request.tls_cipher == "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"
    assert notices == []


def test_quic_initial_names_the_http3_server() -> None:
    exchanges, notices = _exchanges(PCAP2HAR / "http3-connection7.pcap")
    quic = [e for e in exchanges if e.protocol == "quic"]
    assert [(e.host, e.transport, e.server_port, e.name_source) for e in quic] == [
        ("www.google.com", "udp", 443, "sni")
    ]
    assert [p.where for p in quic[0].parts] == ["sni"]
    # Nothing protected is scanned as raw bytes.
    assert not [e for e in exchanges if e.protocol == "raw" and e.server_port == 443]
    assert not [n for n in notices if "QUIC" in n.message]
