"""The server name a QUIC client asks for, read from its Initial packets (sans-I/O).

QUIC Initial packets are protected, but with keys every observer can derive: they come from the
Destination Connection ID the client chose and a salt published with each version (RFC 9001 §5.2,
RFC 9369 §3.3.1). :class:`InitialReader` takes the client's datagrams of one UDP flow, removes header
protection (RFC 9001 §5.4), decrypts the Initial packets, joins their CRYPTO frames (RFC 9000 §19.6;
clients may split and reorder the ClientHello over several packets) and parses the ClientHello with
:func:`phonehome.protocols.tls.parse_client_hello`, so HTTP/3 destinations are named without secrets.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from phonehome.errors import InputError
from phonehome.protocols import tls
from phonehome.protocols.tlsrecords import hkdf_expand_label

__all__ = ["VERSIONS", "InitialReader", "QuicHello", "initial_keys", "looks_like_initial"]


@dataclass(frozen=True, slots=True)
class _Version:
    name: str
    salt: bytes
    label_prefix: bytes  # "quic " for v1, "quicv2 " for v2
    initial_type: int  # the long-header packet type bits that mean Initial


# RFC 9001 §5.2 and RFC 9369 §3.3.1 (salt), §3.3.2 (labels), §3.2 (packet types).
VERSIONS: dict[int, _Version] = {
    0x00000001: _Version("QUIC v1", bytes.fromhex("38762cf7f55934b34d179ae6a4c80cadccbb7f0a"), b"quic ", 0),
    0x6B3343CF: _Version("QUIC v2", bytes.fromhex("0dede3def700a6db819381be6e269dcbf9bd2ed9"), b"quicv2 ", 1),
}

_MAX_CRYPTO = 64 * 1024  # the ClientHello, however split, must fit in this
_MAX_PIECES = 256
# RFC 9000 §12.4: the frames an Initial packet may carry, besides CONNECTION_CLOSE.
FRAME_PADDING, FRAME_PING, FRAME_ACK, FRAME_ACK_ECN, FRAME_CRYPTO = 0x00, 0x01, 0x02, 0x03, 0x06


@dataclass(frozen=True, slots=True)
class QuicHello:
    version: str
    hello: tls.ClientHello


@dataclass(frozen=True, slots=True)
class _Keys:
    aead: AESGCM
    iv: bytes
    hp: bytes


def initial_keys(version: int, dcid: bytes) -> _Keys:
    """The client's Initial packet protection keys for ``dcid`` (RFC 9001 §5.2)."""
    spec = VERSIONS[version]
    initial_secret = hmac.digest(spec.salt, dcid, "sha256")  # HKDF-Extract
    client = hkdf_expand_label(initial_secret, b"client in", b"", 32, "sha256")
    prefix = spec.label_prefix
    return _Keys(
        AESGCM(hkdf_expand_label(client, prefix + b"key", b"", 16, "sha256")),
        hkdf_expand_label(client, prefix + b"iv", b"", 12, "sha256"),
        hkdf_expand_label(client, prefix + b"hp", b"", 16, "sha256"),
    )


def looks_like_initial(datagram: bytes) -> bool:
    """Whether a datagram starts with a long-header packet of a version whose Initials can be read."""
    return (
        len(datagram) >= 7 and datagram[0] & 0xC0 == 0xC0 and int.from_bytes(datagram[1:5], "big") in VERSIONS
    )


class _Cursor:
    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes, pos: int = 0) -> None:
        self.buf = buf
        self.pos = pos

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if n < 0 or end > len(self.buf):
            raise InputError("QUIC packet cut off")
        out = self.buf[self.pos : end]
        self.pos = end
        return out

    def varint(self) -> int:
        # RFC 9000 §16: the two high bits of the first byte give the length, 1 to 8 bytes.
        first = self.take(1)[0]
        size = 1 << (first >> 6)
        return int.from_bytes(bytes([first & 0x3F]) + self.take(size - 1), "big")


class InitialReader:
    """The client's datagrams of one UDP flow in, its ClientHello out once the CRYPTO data holds it."""

    __slots__ = ("_crypto", "_held", "_keys", "_version", "result")

    def __init__(self) -> None:
        self._crypto: dict[int, bytes] = {}  # CRYPTO data by offset, as received
        self._held = 0
        self._keys: dict[tuple[int, bytes], _Keys] = {}
        self._version: str | None = None
        self.result: QuicHello | None = None

    def receive_datagram(self, datagram: bytes) -> QuicHello | None:
        """Read one datagram; the ClientHello once complete. Raises InputError for damaged packets."""
        if self.result is not None:
            return self.result
        pos = 0
        # RFC 9000 §12.2: several packets may be coalesced in one datagram; each long header says its length.
        while pos < len(datagram) and datagram[pos] & 0x80 and self.result is None:
            pos = self._packet(datagram, pos)
        return self.result

    def _packet(self, datagram: bytes, start: int) -> int:
        cur = _Cursor(datagram, start)
        first = cur.take(1)[0]
        version = int.from_bytes(cur.take(4), "big")
        spec = VERSIONS.get(version)
        dcid = cur.take(cur.take(1)[0])
        cur.take(cur.take(1)[0])  # source connection id
        if spec is None or len(dcid) > 20:
            return len(datagram)  # a version (or version negotiation) whose packets cannot be read
        if (first >> 4) & 3 != spec.initial_type:
            # 0-RTT, Handshake or Retry: protected with keys an observer does not have; skip by length.
            if (first >> 4) & 3 == (3 if spec.initial_type == 0 else 0):  # Retry has no length field
                return len(datagram)
            length = cur.varint()
            cur.take(length)
            return cur.pos
        cur.take(cur.varint())  # token
        length = cur.varint()
        pn_offset = cur.pos
        end = pn_offset + length
        if end > len(datagram) or length < 20:
            raise InputError("QUIC Initial packet shorter than its length field says")
        keys = self._keys.get((version, dcid))
        if keys is None:
            keys = self._keys[(version, dcid)] = initial_keys(version, dcid)
        # RFC 9001 §5.4.2: the sample starts 4 bytes after the packet number field begins.
        sample = datagram[pn_offset + 4 : pn_offset + 20]
        encryptor = Cipher(algorithms.AES(keys.hp), modes.ECB()).encryptor()
        mask = encryptor.update(sample) + encryptor.finalize()
        first ^= mask[0] & 0x0F  # RFC 9001 §5.4.1: the low 4 bits of a long header are protected
        pn_len = (first & 0x03) + 1
        protected = datagram[pn_offset : pn_offset + pn_len]
        pn_bytes = bytes(b ^ m for b, m in zip(protected, mask[1:], strict=False))
        header = bytes([first]) + datagram[start + 1 : pn_offset] + pn_bytes
        # RFC 9001 §5.3: nonce = IV XOR packet number. Initial packet numbers start at 0 and the
        # client sends few, so the truncated number is the full one.
        packet_number = int.from_bytes(pn_bytes, "big")
        nonce = (int.from_bytes(keys.iv, "big") ^ packet_number).to_bytes(12, "big")
        try:
            payload = keys.aead.decrypt(nonce, datagram[pn_offset + pn_len : end], header)
        except InvalidTag:
            raise InputError("QUIC Initial packet does not authenticate with the Initial keys") from None
        self._version = spec.name
        self._frames(payload)
        return end

    def _frames(self, payload: bytes) -> None:
        cur = _Cursor(payload)
        while cur.pos < len(payload):
            ftype = cur.varint()
            if ftype in (FRAME_PADDING, FRAME_PING):
                continue
            if ftype in (FRAME_ACK, FRAME_ACK_ECN):
                # RFC 9000 §19.3: largest, delay, range count, first range, then ranges (and ECN counts).
                cur.varint()
                cur.varint()
                ranges = cur.varint()
                cur.varint()
                for _ in range(2 * ranges + (3 if ftype == FRAME_ACK_ECN else 0)):
                    cur.varint()
            elif ftype == FRAME_CRYPTO:
                offset = cur.varint()
                data = cur.take(cur.varint())
                self._crypto_data(offset, data)
            else:
                return  # CONNECTION_CLOSE or a frame not allowed in Initial: nothing more to read
        self._try_hello()

    def _crypto_data(self, offset: int, data: bytes) -> None:
        if offset + len(data) > _MAX_CRYPTO:
            raise InputError(
                f"QUIC CRYPTO data at offset {offset} ({len(data)} bytes) runs past the {_MAX_CRYPTO} byte "
                "limit of a ClientHello; this connection's name is not read"
            )
        if not data or offset in self._crypto:
            return
        if len(self._crypto) >= _MAX_PIECES:
            raise InputError(f"QUIC ClientHello in more than {_MAX_PIECES} CRYPTO pieces")
        self._crypto[offset] = data
        self._held += len(data)

    def _try_hello(self) -> None:
        joined = bytearray()
        for offset in sorted(self._crypto):
            data = self._crypto[offset]
            if offset > len(joined):
                break
            joined += data[len(joined) - offset :]
        if len(joined) < 4:
            return
        if joined[0] != tls.HANDSHAKE_CLIENT_HELLO:
            raise InputError(f"QUIC CRYPTO data starts with handshake message {joined[0]}, not a ClientHello")
        length = int.from_bytes(joined[1:4], "big")
        if length + 4 > _MAX_CRYPTO:
            raise InputError(f"QUIC ClientHello of {length} bytes, over the {_MAX_CRYPTO} byte limit")
        if len(joined) >= 4 + length:
            hello = tls.parse_client_hello(bytes(joined[4 : 4 + length]))
            self.result = QuicHello(self._version or "QUIC", hello)
            self._crypto.clear()
