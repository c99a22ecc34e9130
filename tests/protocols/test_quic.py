"""QUIC Initial packets: the RFC key vectors, packets built the way a client does, and a real capture."""

from __future__ import annotations

import contextlib

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from factories import CORPUS, NO_CORPUS, client_hello
from phonehome.errors import InputError
from phonehome.protocols.quic import InitialReader, initial_keys, looks_like_initial
from phonehome.sources import capture

DCID = bytes.fromhex("8394c8f03e515708")  # RFC 9001 Appendix A
V1, V2 = 0x00000001, 0x6B3343CF


def test_initial_keys_match_rfc9001_and_rfc9369_vectors() -> None:
    v1 = initial_keys(V1, DCID)
    assert v1.iv.hex() == "fa044b2f42a3fd3b46fb255c"
    assert v1.hp.hex() == "9f50449e04a0e810283a1e9933adedd2"
    v2 = initial_keys(V2, DCID)
    assert v2.iv.hex() == "91f73e2351d8fa91660e909f"
    assert v2.hp.hex() == "45b95e15235d6f45a6b19cbcb0294ba9"


def _varint(n: int) -> bytes:
    return (0x4000 | n).to_bytes(2, "big") if n >= 64 else bytes([n])


def initial(version: int, pn: int, frames: bytes) -> bytes:
    """A client Initial packet, protected as RFC 9001 §5 says (the sender's side)."""
    keys = initial_keys(version, DCID)
    frames += bytes(max(0, 40 - len(frames)))  # PADDING, so the header-protection sample exists
    type_bits = 0 if version == V1 else 1
    first = 0xC0 | type_bits << 4 | 0x01  # packet number length 2
    pn_bytes = pn.to_bytes(2, "big")
    length = len(pn_bytes) + len(frames) + 16
    header = bytes([first]) + version.to_bytes(4, "big") + bytes([len(DCID)]) + DCID + b"\x00" + b"\x00"
    header += (0x4000 | length).to_bytes(2, "big") + pn_bytes
    nonce = (int.from_bytes(keys.iv, "big") ^ pn).to_bytes(12, "big")
    sealed = keys.aead.encrypt(nonce, frames, header)
    pn_offset = len(header) - 2
    sample = sealed[2:18]  # 4 bytes after the packet number starts, the number being 2 bytes long
    encryptor = Cipher(algorithms.AES(keys.hp), modes.ECB()).encryptor()
    mask = encryptor.update(sample) + encryptor.finalize()
    protected = bytearray(header + sealed)
    protected[0] ^= mask[0] & 0x0F
    for i in range(2):
        protected[pn_offset + i] ^= mask[1 + i]
    return bytes(protected)


def crypto(offset: int, data: bytes) -> bytes:
    return b"\x06" + _varint(offset) + _varint(len(data)) + data


@pytest.mark.parametrize("version", [V1, V2])
def test_client_hello_split_and_reordered_over_packets(version: int) -> None:
    hello = client_hello("video.example.net")
    cut = len(hello) // 2
    reader = InitialReader()
    assert looks_like_initial(initial(version, 0, b"\x01"))
    # The second half first (as chaos-protected clients send), then a coalesced datagram.
    assert reader.receive_datagram(initial(version, 0, b"\x01" + crypto(cut, hello[cut:]))) is None
    found = reader.receive_datagram(initial(version, 1, crypto(0, hello[:cut])) + b"\x40" + bytes(30))
    assert found is not None
    assert found.hello.server_name == "video.example.net"
    assert found.version == ("QUIC v1" if version == V1 else "QUIC v2")


def test_a_tampered_initial_is_an_input_error() -> None:
    packet = bytearray(initial(V1, 0, crypto(0, client_hello("a.example"))))
    packet[-1] ^= 1
    with pytest.raises(InputError, match="does not authenticate"):
        InitialReader().receive_datagram(bytes(packet))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_hostile_datagrams_raise_only_input_error(tail: bytes) -> None:
    reader = InitialReader()
    for datagram in (b"\xc0\x00\x00\x00\x01" + tail, b"\xd0\x6b\x33\x43\xcf" + tail, tail):
        with contextlib.suppress(InputError):
            reader.receive_datagram(datagram)


@pytest.mark.skipif(not CORPUS.is_dir(), reason=NO_CORPUS)
def test_http3_capture_names_its_server() -> None:
    reader = InitialReader()
    names = set()
    for event in capture.read_capture(str(CORPUS / "pcap" / "pcap2har" / "http3-connection7.pcap")):
        if isinstance(event, capture.Packet) and event.dport == 443 and looks_like_initial(event.payload):
            found = reader.receive_datagram(event.payload)
            if found:
                names.add((found.version, found.hello.server_name, found.hello.alpn))
    assert names == {("QUIC v1", "www.google.com", ("h3",))}


def test_crypto_data_past_the_client_hello_limit_is_an_input_error_not_silence() -> None:
    far = b"\x06" + (0x80000000 | 65530).to_bytes(4, "big") + _varint(16) + bytes(16)
    reader = InitialReader()
    with pytest.raises(InputError, match="runs past the 65536 byte limit"):
        reader.receive_datagram(initial(V1, 0, far))
