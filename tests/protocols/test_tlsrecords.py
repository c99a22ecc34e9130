"""TLS record decryption on real connections (OpenSSL in memory, and the corpus), split every way."""

from __future__ import annotations

import itertools

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from factories import CORPUS, NO_CORPUS
from phonehome.protocols.keylog import KeyStore, Secret, parse_keylog
from phonehome.protocols.tlsrecords import (
    CLIENT,
    SERVER,
    Interrupted,
    Plaintext,
    TlsDecryptor,
    hkdf_expand_label,
    prf12,
)
from tls_sessions import Session, session, tcp_streams

CLIENT_SAYS = [b"GET /a HTTP/1.1\r\nHost: example.test\r\n\r\n", b"x" * 40000, b"tail"]
SERVER_SAYS = [b"HTTP/1.1 200 OK\r\n\r\n", b"pong"]

# (OpenSSL cipher string or None for TLS 1.3's default, expected IANA name, encrypt-then-MAC)
SUITES = [
    (None, "TLS_AES_256_GCM_SHA384"),
    ("ECDHE-RSA-AES128-GCM-SHA256", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"),
    ("AES256-GCM-SHA384", "TLS_RSA_WITH_AES_256_GCM_SHA384"),
    ("ECDHE-RSA-CHACHA20-POLY1305", "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"),
    ("ECDHE-RSA-AES256-SHA384", "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384"),
    ("AES128-SHA", "TLS_RSA_WITH_AES_128_CBC_SHA"),
    ("ECDHE-RSA-AES128-SHA256", "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256"),
]


def _sessions() -> dict[str | None, Session]:
    return {
        ciphers: session(CLIENT_SAYS, SERVER_SAYS, tls13=ciphers is None, ciphers=ciphers)
        for ciphers, _name in SUITES
    }


SESSIONS = _sessions()


def _keys(s: Session) -> KeyStore:
    return KeyStore(parse_keylog(s.keylog)[0])


def _run(dec: TlsDecryptor, feed: list[tuple[int, bytes]]) -> dict[int, bytes]:
    out = {CLIENT: b"", SERVER: b""}
    for direction, chunk in feed:
        dec.receive(direction, chunk)
    dec.close()
    for event in dec.events():
        if isinstance(event, Plaintext):
            out[event.direction] += event.data
    return out


def test_prf_matches_the_published_tls12_vector() -> None:
    # The TLS 1.2 PRF (SHA-256) test vector circulated on the IETF TLS list and used by many stacks.
    out = prf12(
        bytes.fromhex("9bbe436ba940f017b17652849a71db35"),
        b"test label",
        bytes.fromhex("a0ba9f936cda311827a6f796ffd5198c"),
        100,
    )
    assert out.hex().startswith("e3f229ba727be17b8d122620557cd453c2aab21d07c3d495329b52d4e61edb5a")


def test_hkdf_expand_label_matches_rfc9001_appendix_a() -> None:
    initial = bytes.fromhex("7db5df06e7a69e432496adedb00851923595221596ae2ae9fb8115c1e9ed0a44")
    client = hkdf_expand_label(initial, b"client in", b"", 32, "sha256")
    assert client.hex() == "c00cf151ca5be075ed0ebfb5c80323c42d6b7db67881289af4008f1f6c357aea"
    assert (
        hkdf_expand_label(client, b"quic key", b"", 16, "sha256").hex() == "1f369613dd76d5467730efcbe3b1a22d"
    )


@pytest.mark.parametrize(("ciphers", "name"), SUITES)
def test_both_directions_decrypt_to_what_was_sent(ciphers: str | None, name: str) -> None:
    s = SESSIONS[ciphers]
    dec = TlsDecryptor(_keys(s))
    out = _run(dec, [(CLIENT, s.client), (SERVER, s.server)])
    assert out[CLIENT] == b"".join(CLIENT_SAYS)
    assert out[SERVER] == b"".join(SERVER_SAYS)
    assert dec.cipher_name == name
    assert dec.version_name == ("TLS 1.3" if ciphers is None else "TLS 1.2")
    assert dec.problems() == []


def _cuts(data: bytes, points: list[int]) -> list[bytes]:
    edges = sorted({p % (len(data) + 1) for p in points} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(edges)]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from([c for c, _ in SUITES]),
    st.lists(st.integers(0, 1 << 17), max_size=30),
    st.lists(st.integers(0, 1 << 17), max_size=30),
    st.randoms(use_true_random=False),
)
def test_any_segmentation_and_interleaving_decrypts_the_same(
    ciphers: str | None, client_cuts: list[int], server_cuts: list[int], rnd: object
) -> None:
    s = SESSIONS[ciphers]
    client = [(CLIENT, c) for c in _cuts(s.client, client_cuts)]
    server = [(SERVER, c) for c in _cuts(s.server, server_cuts)]
    feed: list[tuple[int, bytes]] = []
    # Merge keeping each direction in order, the two sides interleaved at random.
    while client or server:
        side = client if (client and (not server or rnd.random() < 0.5)) else server  # type: ignore[attr-defined]
        feed.append(side.pop(0))
    out = _run(TlsDecryptor(_keys(s)), feed)
    assert out[CLIENT] == b"".join(CLIENT_SAYS)
    assert out[SERVER] == b"".join(SERVER_SAYS)


@pytest.mark.parametrize("ciphers", [None, "ECDHE-RSA-AES128-GCM-SHA256", "AES128-SHA"])
def test_a_wrong_key_is_counted_never_guessed(ciphers: str | None) -> None:
    s = SESSIONS[ciphers]
    wrong = KeyStore(
        [Secret(x.label, x.client_random, bytes(len(x.secret))) for x in parse_keylog(s.keylog)[0]]
    )
    dec = TlsDecryptor(wrong)
    assert _run(dec, [(CLIENT, s.client), (SERVER, s.server)]) == {CLIENT: b"", SERVER: b""}
    problems = dec.problems()
    assert problems and all("authentication failed" in p for p in problems)


def test_no_key_names_the_client_random() -> None:
    s = SESSIONS[None]
    dec = TlsDecryptor(KeyStore())
    _run(dec, [(CLIENT, s.client), (SERVER, s.server)])
    assert dec.client_random is not None
    assert f"no key for client_random {dec.client_random.hex()}" in dec.problems()[0]


def test_only_application_secrets_still_decrypt_the_application_data() -> None:
    s = SESSIONS[None]
    kept = [x for x in parse_keylog(s.keylog)[0] if x.label.endswith("TRAFFIC_SECRET_0")]
    dec = TlsDecryptor(KeyStore(kept))
    out = _run(dec, [(CLIENT, s.client), (SERVER, s.server)])
    assert out[CLIENT] == b"".join(CLIENT_SAYS)
    # The encrypted handshake records had no key: counted, not delivered.
    assert any("authentication failed" in p for p in dec.problems())


def _records(stream: bytes) -> list[bytes]:
    """The TLS records of a stream, each whole (header and payload)."""
    out, pos = [], 0
    while pos < len(stream):
        size = 5 + int.from_bytes(stream[pos + 3 : pos + 5], "big")
        out.append(stream[pos : pos + size])
        pos += size
    return out


def _seal13(secret: bytes, seq: int, content: bytes, inner_type: int) -> bytes:
    """One TLS 1.3 record of TLS_AES_256_GCM_SHA384 (RFC 8446 §5.2-5.3), written without the decryptor."""
    key = hkdf_expand_label(secret, b"key", b"", 32, "sha384")
    iv = hkdf_expand_label(secret, b"iv", b"", 12, "sha384")
    nonce = bytes(a ^ b for a, b in zip(iv, seq.to_bytes(12, "big"), strict=True))
    inner = content + bytes([inner_type])
    header = b"\x17\x03\x03" + (len(inner) + 16).to_bytes(2, "big")
    return header + AESGCM(key).encrypt(nonce, inner, header)


def test_a_key_update_moves_that_direction_to_its_next_keys() -> None:
    s = SESSIONS[None]
    assert s.cipher == "TLS_AES_256_GCM_SHA384"
    (secret,) = [x.secret for x in parse_keylog(s.keylog)[0] if x.label == "CLIENT_TRAFFIC_SECRET_0"]
    records = _records(s.client)
    # The client's last record is its close_notify; before it, its Finished and then application
    # records numbered from 0 under CLIENT_TRAFFIC_SECRET_0 (RFC 8446 §5.3).
    kept = records[:-1]
    seq = sum(r[0] == 0x17 for r in kept) - 1
    key_update = bytes([24, 0, 0, 1, 0])  # KeyUpdate, update_not_requested (§4.6.3)
    stream = b"".join(kept)
    for generation in range(1, 4):
        stream += _seal13(secret, seq, key_update, 0x16)
        # §7.2: application_traffic_secret_N+1 = HKDF-Expand-Label(secret_N, "traffic upd", "", 48)
        secret = hkdf_expand_label(secret, b"traffic upd", b"", 48, "sha384")
        stream += _seal13(secret, 0, f"after update {generation};".encode(), 0x17)
        stream += _seal13(secret, 1, b"again;", 0x17)
        seq = 2
    dec = TlsDecryptor(_keys(s))
    out = _run(dec, [(CLIENT, stream), (SERVER, s.server)])
    expected = b"".join(CLIENT_SAYS) + b"".join(b"after update %d;again;" % g for g in range(1, 4))
    assert out[CLIENT] == expected
    assert dec.problems() == []
    # Without the update, the records after it do not open: the next keys are what made them.
    stale = b"".join(kept) + _seal13(secret, 0, b"lost", 0x17)
    dec = TlsDecryptor(_keys(s))
    assert _run(dec, [(CLIENT, stale), (SERVER, s.server)])[CLIENT] == b"".join(CLIENT_SAYS)
    assert any("authentication failed" in p for p in dec.problems())


def test_an_oversized_record_stops_that_direction() -> None:
    s = SESSIONS[None]
    dec = TlsDecryptor(_keys(s))
    dec.receive(SERVER, s.server)
    dec.receive(CLIENT, s.client)
    dec.receive(CLIENT, b"\x17\x03\x03\xff\xff" + bytes(100))
    dec.receive(CLIENT, s.client)
    events = [e for e in dec.events() if e.direction == CLIENT]
    assert b"".join(e.data for e in events if isinstance(e, Plaintext)) == b"".join(CLIENT_SAYS)
    assert isinstance(events[-1], Interrupted) and "over the 16640 byte limit" in events[-1].reason


def test_a_gap_interrupts_and_is_reported() -> None:
    s = SESSIONS["ECDHE-RSA-AES128-GCM-SHA256"]
    dec = TlsDecryptor(_keys(s))
    dec.receive(SERVER, s.server)
    dec.receive(CLIENT, s.client[: len(s.client) // 2])
    dec.receive_gap(CLIENT, 100)
    dec.receive(CLIENT, s.client[len(s.client) // 2 + 100 :])
    events = dec.events()
    assert isinstance(events[-1], Interrupted)
    assert "100 bytes missing" in dec.problems()[0]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400), st.binary(max_size=400))
def test_hostile_bytes_never_raise(client: bytes, server: bytes) -> None:
    s = SESSIONS[None]
    dec = TlsDecryptor(_keys(s))
    _run(dec, [(CLIENT, s.client[:300] + client), (SERVER, server)])
    dec2 = TlsDecryptor(_keys(s))
    _run(dec2, [(CLIENT, b"\x16\x03\x01" + client), (SERVER, b"\x16\x03\x03" + server)])


@pytest.mark.skipif(not CORPUS.is_dir(), reason=NO_CORPUS)
def test_tls12_illustrated_decrypts_to_ping_and_pong() -> None:
    folder = CORPUS / "tls"
    keys = KeyStore(parse_keylog((folder / "tls12-illustrated.keylog").read_bytes())[0])
    streams = tcp_streams(str(folder / "tls12-illustrated.pcap"))
    (client_key,) = [k for k in streams if k[3] == 8443]
    server_key = (client_key[2], client_key[3], client_key[0], client_key[1])
    dec = TlsDecryptor(keys)
    out = _run(dec, [(CLIENT, streams[client_key]), (SERVER, streams[server_key])])
    assert out == {CLIENT: b"ping", SERVER: b"pong"}
    assert (dec.version_name, dec.cipher_name) == ("TLS 1.2", "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA")
