"""The TLS record layer of one connection, decrypted with secrets from a key log (sans-I/O).

Feed each direction's reassembled stream to :meth:`TlsDecryptor.receive`; :meth:`~TlsDecryptor.events`
hands back the application data each side sent, in order, as :class:`Plaintext`. The decryptor
follows the handshake far enough to know the connection: the client random (which finds the
secrets in the :class:`~phonehome.protocols.keylog.KeyStore`), and from the ServerHello the
server random, version and cipher suite. It then derives the record keys the way the peers did:

- TLS 1.2: key block from the master secret with the PRF (RFC 5246 §5, §6.3); AES-GCM (RFC 5288),
  ChaCha20-Poly1305 (RFC 7905) and AES-CBC with HMAC-SHA1/SHA256/SHA384 (RFC 5246 §6.2.3.2, and
  encrypt-then-MAC, RFC 7366).
- TLS 1.3: traffic keys from the traffic secrets with HKDF-Expand-Label (RFC 8446 §7.1, §7.3), AES-GCM and
  ChaCha20-Poly1305, moving from handshake to application keys at Finished and to the next
  generation at each KeyUpdate (RFC 8446 §4.6.3, §7.2).

Resumed sessions need nothing special: a key log names every connection by its own client random.
A record that cannot be decrypted is never guessed at: it is counted with the reason, and
:meth:`~TlsDecryptor.problems` says how many and why.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections import Counter
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from phonehome.protocols.keylog import KeyStore

__all__ = [
    "CLIENT",
    "SERVER",
    "SUITES",
    "VERSIONS",
    "Interrupted",
    "Plaintext",
    "Suite",
    "TlsDecryptor",
    "hkdf_expand_label",
    "prf12",
]

CLIENT: Final = 0
SERVER: Final = 1
_SIDE = ("client", "server")

CT_CHANGE_CIPHER_SPEC, CT_ALERT, CT_HANDSHAKE, CT_APPLICATION_DATA, CT_HEARTBEAT = 20, 21, 22, 23, 24
_CONTENT_TYPES = frozenset({20, 21, 22, 23, 24})
_NEEDS_KEYS = frozenset({CT_CHANGE_CIPHER_SPEC, CT_APPLICATION_DATA})
HS_CLIENT_HELLO, HS_SERVER_HELLO, HS_FINISHED, HS_KEY_UPDATE = 1, 2, 20, 24
EXT_ENCRYPT_THEN_MAC, EXT_SUPPORTED_VERSIONS = 22, 43
TLS12, TLS13 = 0x0303, 0x0304

VERSIONS: dict[int, str] = {
    0x0300: "SSL 3.0",
    0x0301: "TLS 1.0",
    0x0302: "TLS 1.1",
    0x0303: "TLS 1.2",
    0x0304: "TLS 1.3",
}

_HEADER = struct.Struct("!BHH")
# RFC 8446 §5.2: a TLSCiphertext fragment is at most 2^14 + 256 bytes; RFC 5246 §6.2.3 allows
# 2^14 + 2048 in TLS 1.2. Anything longer is damage, not TLS.
_MAX_RECORD_13 = (1 << 14) + 256
_MAX_RECORD_12 = (1 << 14) + 2048
# Records held while the ServerHello (and so the keys) is still unknown, per direction.
_MAX_WAITING = 1 << 20
# A handshake message being put together across records; longer ones are not followed.
_MAX_HANDSHAKE = 1 << 18
# RFC 8446 §4.1.3: the ServerHello random that marks a HelloRetryRequest.
_HRR_RANDOM = hashlib.sha256(b"HelloRetryRequest").digest()


@dataclass(frozen=True, slots=True)
class Suite:
    """What a cipher suite means for the record layer."""

    name: str  # IANA name
    aead: str | None  # "aes-gcm", "chacha20-poly1305", or None for CBC with HMAC
    key_len: int
    fixed_iv_len: int  # TLS 1.2 implicit IV (RFC 5288 §3: 4 for GCM; RFC 7905 §2: 12 for ChaCha)
    mac: str | None  # CBC suites' HMAC hash
    prf: str  # hash of the TLS 1.2 PRF or the TLS 1.3 HKDF
    tls13: bool = False


def _gcm12(name: str, key_len: int, prf: str = "sha256") -> Suite:
    return Suite(name, "aes-gcm", key_len, 4, None, prf)


def _chacha12(name: str) -> Suite:
    return Suite(name, "chacha20-poly1305", 32, 12, None, "sha256")


def _cbc12(name: str, key_len: int, mac: str) -> Suite:
    # RFC 5246 §5: the PRF is SHA-256 unless the suite names another (SHA-384 suites, RFC 5289).
    return Suite(name, None, key_len, 0, mac, "sha384" if mac == "sha384" else "sha256")


SUITES: dict[int, Suite] = {
    # TLS 1.3, RFC 8446 §B.4.
    0x1301: Suite("TLS_AES_128_GCM_SHA256", "aes-gcm", 16, 12, None, "sha256", True),
    0x1302: Suite("TLS_AES_256_GCM_SHA384", "aes-gcm", 32, 12, None, "sha384", True),
    0x1303: Suite("TLS_CHACHA20_POLY1305_SHA256", "chacha20-poly1305", 32, 12, None, "sha256", True),
    # TLS 1.2 AEAD, RFC 5288, RFC 5289, RFC 7905.
    0x009C: _gcm12("TLS_RSA_WITH_AES_128_GCM_SHA256", 16),
    0x009D: _gcm12("TLS_RSA_WITH_AES_256_GCM_SHA384", 32, "sha384"),
    0x009E: _gcm12("TLS_DHE_RSA_WITH_AES_128_GCM_SHA256", 16),
    0x009F: _gcm12("TLS_DHE_RSA_WITH_AES_256_GCM_SHA384", 32, "sha384"),
    0xC02B: _gcm12("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", 16),
    0xC02C: _gcm12("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", 32, "sha384"),
    0xC02F: _gcm12("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", 16),
    0xC030: _gcm12("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", 32, "sha384"),
    0xCCA8: _chacha12("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"),
    0xCCA9: _chacha12("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"),
    0xCCAA: _chacha12("TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256"),
    # TLS 1.2 CBC, RFC 5246 §A.5, RFC 4492, RFC 5289.
    0x002F: _cbc12("TLS_RSA_WITH_AES_128_CBC_SHA", 16, "sha1"),
    0x0035: _cbc12("TLS_RSA_WITH_AES_256_CBC_SHA", 32, "sha1"),
    0x003C: _cbc12("TLS_RSA_WITH_AES_128_CBC_SHA256", 16, "sha256"),
    0x003D: _cbc12("TLS_RSA_WITH_AES_256_CBC_SHA256", 32, "sha256"),
    0x0033: _cbc12("TLS_DHE_RSA_WITH_AES_128_CBC_SHA", 16, "sha1"),
    0x0039: _cbc12("TLS_DHE_RSA_WITH_AES_256_CBC_SHA", 32, "sha1"),
    0x0067: _cbc12("TLS_DHE_RSA_WITH_AES_128_CBC_SHA256", 16, "sha256"),
    0x006B: _cbc12("TLS_DHE_RSA_WITH_AES_256_CBC_SHA256", 32, "sha256"),
    0xC009: _cbc12("TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", 16, "sha1"),
    0xC00A: _cbc12("TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", 32, "sha1"),
    0xC013: _cbc12("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", 16, "sha1"),
    0xC014: _cbc12("TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", 32, "sha1"),
    0xC023: _cbc12("TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256", 16, "sha256"),
    0xC024: _cbc12("TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384", 32, "sha384"),
    0xC027: _cbc12("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256", 16, "sha256"),
    0xC028: _cbc12("TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384", 32, "sha384"),
}

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {"sha256": hashes.SHA256, "sha384": hashes.SHA384}
_MAC_SIZE = {"sha1": 20, "sha256": 32, "sha384": 48}
_HASH_SIZE = _MAC_SIZE


@dataclass(frozen=True, slots=True)
class Plaintext:
    """Application data one side sent, decrypted, in stream order."""

    direction: int  # CLIENT or SERVER
    data: bytes


@dataclass(frozen=True, slots=True)
class Interrupted:
    """Decryption of one direction stopped here; what follows in that direction is not delivered."""

    direction: int
    reason: str


Event = Plaintext | Interrupted


class _AuthFailed(Exception):
    """A record did not authenticate under the key tried."""


# ---- key derivation ---------------------------------------------------------------------------


def prf12(secret: bytes, label: bytes, seed: bytes, length: int, hash_name: str = "sha256") -> bytes:
    """The TLS 1.2 PRF: P_hash(secret, label + seed), RFC 5246 §5."""
    seed = label + seed
    out = bytearray()
    a = seed
    while len(out) < length:
        a = hmac.digest(secret, a, hash_name)
        out += hmac.digest(secret, a + seed, hash_name)
    return bytes(out[:length])


def hkdf_expand_label(secret: bytes, label: bytes, context: bytes, length: int, hash_name: str) -> bytes:
    """HKDF-Expand-Label, RFC 8446 §7.1."""
    full = b"tls13 " + label
    info = struct.pack("!HB", length, len(full)) + full + bytes([len(context)]) + context
    return HKDFExpand(_HASHES[hash_name](), length, info).derive(secret)


# ---- record protection --------------------------------------------------------------------------


def _aead(kind: str, key: bytes) -> AESGCM | ChaCha20Poly1305:
    return AESGCM(key) if kind == "aes-gcm" else ChaCha20Poly1305(key)


class _Aead12:
    """TLS 1.2 AEAD records: RFC 5246 §6.2.3.3 with RFC 5288 (GCM) or RFC 7905 (ChaCha20-Poly1305)."""

    __slots__ = ("_aead", "_explicit", "_iv")

    def __init__(self, suite: Suite, key: bytes, iv: bytes) -> None:
        self._aead = _aead(suite.aead or "", key)
        self._iv = iv
        self._explicit = suite.aead == "aes-gcm"  # GCM sends 8 bytes of nonce with each record

    def open(self, seq: int, header: bytes, fragment: bytes) -> tuple[int, bytes]:
        if self._explicit:
            if len(fragment) < 24:
                raise _AuthFailed
            nonce = self._iv + fragment[:8]
            body = fragment[8:]
        else:
            if len(fragment) < 16:
                raise _AuthFailed
            nonce = _xor_seq(self._iv, seq)
            body = fragment
        aad = seq.to_bytes(8, "big") + header[:3] + (len(body) - 16).to_bytes(2, "big")
        try:
            return header[0], self._aead.decrypt(nonce, body, aad)
        except InvalidTag:
            raise _AuthFailed from None


class _Cbc12:
    """TLS 1.2 AES-CBC records with HMAC.

    MAC-then-encrypt (RFC 5246 §6.2.3.2), or encrypt-then-MAC when negotiated (RFC 7366).
    """

    __slots__ = ("_etm", "_hash", "_key", "_mac_key", "_mac_size")

    def __init__(self, suite: Suite, key: bytes, mac_key: bytes, etm: bool) -> None:
        self._key = key
        self._mac_key = mac_key
        self._hash = suite.mac or "sha1"
        self._mac_size = _MAC_SIZE[self._hash]
        self._etm = etm

    def _decrypt(self, iv: bytes, data: bytes) -> bytes:
        decryptor = Cipher(algorithms.AES(self._key), modes.CBC(iv)).decryptor()
        return decryptor.update(data) + decryptor.finalize()

    def open(self, seq: int, header: bytes, fragment: bytes) -> tuple[int, bytes]:
        mac_size = self._mac_size
        prefix = seq.to_bytes(8, "big") + header[:3]
        if self._etm:
            body, mac = fragment[:-mac_size], fragment[-mac_size:]
            if len(body) < 32 or len(body) % 16:
                raise _AuthFailed
            expected = hmac.digest(self._mac_key, prefix + len(body).to_bytes(2, "big") + body, self._hash)
            if not hmac.compare_digest(expected, mac):
                raise _AuthFailed
            plain = self._decrypt(body[:16], body[16:])
            pad = plain[-1]
            if pad + 1 > len(plain):
                raise _AuthFailed
            return header[0], plain[: -pad - 1]
        if len(fragment) < 32 or len(fragment) % 16:
            raise _AuthFailed
        plain = self._decrypt(fragment[:16], fragment[16:])
        pad = plain[-1]
        end = len(plain) - pad - 1 - mac_size
        if end < 0 or plain[end + mac_size : -1] != bytes([pad]) * pad:
            raise _AuthFailed
        content, mac = plain[:end], plain[end : end + mac_size]
        expected = hmac.digest(self._mac_key, prefix + len(content).to_bytes(2, "big") + content, self._hash)
        if not hmac.compare_digest(expected, mac):
            raise _AuthFailed
        return header[0], content


class _Aead13:
    """TLS 1.3 records, RFC 8446 §5.2-§5.3: per-record nonce, header as AAD, inner content type."""

    __slots__ = ("_aead", "_iv", "secret")

    def __init__(self, suite: Suite, secret: bytes) -> None:
        self.secret = secret
        self._aead = _aead(suite.aead or "", hkdf_expand_label(secret, b"key", b"", suite.key_len, suite.prf))
        self._iv = hkdf_expand_label(secret, b"iv", b"", 12, suite.prf)

    def open(self, seq: int, header: bytes, fragment: bytes) -> tuple[int, bytes]:
        if len(fragment) < 17:
            raise _AuthFailed
        try:
            inner = self._aead.decrypt(_xor_seq(self._iv, seq), fragment, header)
        except InvalidTag:
            raise _AuthFailed from None
        # RFC 8446 §5.4: zero padding follows the real content type.
        stripped = inner.rstrip(b"\x00")
        if not stripped:
            raise _AuthFailed
        return stripped[-1], stripped[:-1]


_Protection = _Aead12 | _Cbc12 | _Aead13


def _xor_seq(iv: bytes, seq: int) -> bytes:
    # RFC 8446 §5.3 (and RFC 7905 §2): the 64-bit sequence number, left-padded, XORed with the IV.
    n = len(iv)
    return (int.from_bytes(iv, "big") ^ seq).to_bytes(n, "big")


# ---- per-direction state -------------------------------------------------------------------------


class _Direction:
    __slots__ = (
        "buf",
        "encrypted",
        "handshake",
        "protection",
        "seq",
        "stage",
        "stages",
        "stopped",
        "waiting",
        "waiting_bytes",
    )

    def __init__(self) -> None:
        self.buf = bytearray()
        self.encrypted = False  # TLS 1.2: after ChangeCipherSpec
        self.protection: _Protection | None = None
        self.seq = 0
        self.handshake = bytearray()  # handshake messages being put together
        # TLS 1.3: the key stages of this direction in order (early, handshake, application), the
        # current one, and its secret's label.
        self.stages: list[tuple[str, _Aead13]] = []
        self.stage = -1
        self.stopped: str | None = None
        self.waiting: list[tuple[bytes, bytes]] = []  # (header, fragment) until the keys are known
        self.waiting_bytes = 0


_STAGES_13: tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]] = (
    (
        ("early", "CLIENT_EARLY_TRAFFIC_SECRET"),
        ("handshake", "CLIENT_HANDSHAKE_TRAFFIC_SECRET"),
        ("application", "CLIENT_TRAFFIC_SECRET_0"),
    ),
    (("handshake", "SERVER_HANDSHAKE_TRAFFIC_SECRET"), ("application", "SERVER_TRAFFIC_SECRET_0")),
)


class TlsDecryptor:
    """Both directions of one TLS connection: records in, application data out."""

    def __init__(self, keys: KeyStore) -> None:
        self._keys = keys
        self._dirs = (_Direction(), _Direction())
        self._events: list[Event] = []
        self.client_random: bytes | None = None
        self.server_random: bytes | None = None
        self.version: int | None = None
        self.suite_id: int | None = None
        self.suite: Suite | None = None
        self._etm = False
        self._secrets: dict[str, bytes] | None = None
        self._failed: Counter[tuple[int, str]] = Counter()
        self.decrypted_records = 0
        self.decrypted_bytes = 0

    # ---- what is known about the connection ----

    @property
    def server_hello_seen(self) -> bool:
        return self.version is not None

    @property
    def version_name(self) -> str | None:
        return VERSIONS.get(self.version, f"0x{self.version:04x}") if self.version is not None else None

    @property
    def cipher_name(self) -> str | None:
        if self.suite is not None:
            return self.suite.name
        return f"0x{self.suite_id:04x}" if self.suite_id is not None else None

    @property
    def held(self) -> int:
        """Bytes held right now: partial records, handshake messages, records waiting for keys."""
        return sum(len(d.buf) + len(d.handshake) + d.waiting_bytes for d in self._dirs)

    def problems(self) -> list[str]:
        """Why records could not be decrypted, one sentence per side and reason."""
        out = []
        for (direction, reason), count in sorted(self._failed.items()):
            noun = "record" if count == 1 else "records"
            out.append(f"{count} TLS {noun} from the {_SIDE[direction]} could not be decrypted: {reason}")
        for direction, state in enumerate(self._dirs):
            if state.stopped:
                out.append(f"decryption of the {_SIDE[direction]}'s records stopped: {state.stopped}")
        return out

    # ---- input ----

    def receive(self, direction: int, data: bytes) -> None:
        """The next bytes of one direction's stream."""
        state = self._dirs[direction]
        if state.stopped or not data:
            return
        buf = state.buf
        buf += data
        pos = 0
        limit = _MAX_RECORD_13 if self.version == TLS13 else _MAX_RECORD_12
        while len(buf) - pos >= 5:
            ctype, version, length = _HEADER.unpack_from(buf, pos)
            if ctype not in _CONTENT_TYPES or version >> 8 != 3:
                self._stop(direction, f"bytes that are not a TLS record at record {pos}")
                return
            if length > limit:
                self._stop(direction, f"a record of {length} bytes, over the {limit} byte limit")
                return
            end = pos + 5 + length
            if len(buf) < end:
                break
            self._record(direction, bytes(buf[pos : pos + 5]), bytes(buf[pos + 5 : end]))
            pos = end
            if state.stopped:
                return
        del buf[:pos]

    def receive_gap(self, direction: int, length: int) -> None:
        """Bytes of one direction were never captured: record boundaries and sequence are lost."""
        if not self._dirs[direction].stopped:
            self._stop(direction, f"{length} bytes missing from the capture")

    def close(self) -> None:
        """End of the connection: records still waiting for keys are counted."""
        for direction, state in enumerate(self._dirs):
            if state.waiting:
                reason = "no ServerHello seen" if self.version is None else "no keys"
                self._failed[(direction, reason)] += len(state.waiting)
                state.waiting = []

    def events(self) -> list[Event]:
        out, self._events = self._events, []
        return out

    # ---- records ----

    def _stop(self, direction: int, reason: str) -> None:
        state = self._dirs[direction]
        state.stopped = reason
        state.buf = bytearray()
        state.waiting = []
        self._events.append(Interrupted(direction, reason))

    def _record(self, direction: int, header: bytes, fragment: bytes) -> None:
        state = self._dirs[direction]
        ctype = header[0]
        if state.waiting or ((self.version is None or self.client_random is None) and ctype in _NEEDS_KEYS):
            # Protected records (or the switch to them) ahead of the hello that says how to read
            # them: a client's first flight before the ServerHello, or segments out of order.
            self._wait(direction, header, fragment)
            return
        if self.version == TLS13:
            if ctype == CT_APPLICATION_DATA:
                self._open13(direction, header, fragment)
            elif ctype == CT_HANDSHAKE and not state.stages:
                self._plain_handshake(direction, fragment)
            # RFC 8446 §5: ChangeCipherSpec is sent for compatibility only; plaintext alerts carry nothing.
            return
        if state.encrypted:
            self._open12(direction, header, fragment)
            return
        if ctype == CT_HANDSHAKE:
            self._plain_handshake(direction, fragment)
        elif ctype == CT_CHANGE_CIPHER_SPEC:
            state.encrypted = True
            state.seq = 0
            state.protection = self._protection12(direction)

    def _wait(self, direction: int, header: bytes, fragment: bytes) -> None:
        state = self._dirs[direction]
        if state.waiting_bytes + len(fragment) > _MAX_WAITING:
            self._failed[(direction, "no ServerHello seen")] += 1
            return
        state.waiting.append((header, fragment))
        state.waiting_bytes += len(fragment)

    def _replay_waiting(self) -> None:
        for direction, state in enumerate(self._dirs):
            waiting, state.waiting, state.waiting_bytes = state.waiting, [], 0
            for header, fragment in waiting:
                self._record(direction, header, fragment)

    def _fail(self, direction: int, reason: str) -> None:
        self._failed[(direction, reason)] += 1

    def _no_key(self) -> str:
        if self.version not in (TLS12, TLS13):
            return f"{self.version_name} is not supported"
        if self.suite is None:
            return f"cipher suite {self.cipher_name} is not supported"
        if self.client_random is None:
            return "no ClientHello seen"
        return f"no key for client_random {self.client_random.hex()}"

    def _open12(self, direction: int, header: bytes, fragment: bytes) -> None:
        state = self._dirs[direction]
        seq = state.seq
        state.seq += 1
        protection = state.protection
        if protection is None:
            self._fail(direction, self._no_key())
            return
        try:
            ctype, data = protection.open(seq, header, fragment)
        except _AuthFailed:
            self._fail(direction, "authentication failed (wrong key?)")
            return
        self._deliver(direction, ctype, data)

    def _open13(self, direction: int, header: bytes, fragment: bytes) -> None:
        state = self._dirs[direction]
        if not state.stages:
            self._fail(direction, self._no_key())
            return
        # The current stage first; if it does not open the record, the stages after it (a key log
        # may lack the handshake secrets, or early data may not have been sent).
        for index in range(max(state.stage, 0), len(state.stages)):
            seq = state.seq if index == state.stage else 0
            try:
                ctype, data = state.stages[index][1].open(seq, header, fragment)
            except _AuthFailed:
                continue
            if index != state.stage:
                state.stage = index
                state.handshake.clear()  # RFC 8446 §5.1: handshake messages never span key changes
            state.seq = seq + 1
            self._deliver(direction, ctype, data)
            return
        state.seq += 1
        self._fail(direction, "authentication failed (wrong key?)")

    def _deliver(self, direction: int, ctype: int, data: bytes) -> None:
        self.decrypted_records += 1
        self.decrypted_bytes += len(data)
        if ctype == CT_APPLICATION_DATA:
            if data:
                self._events.append(Plaintext(direction, data))
        elif ctype == CT_HANDSHAKE and self.version == TLS13:
            self._encrypted_handshake(direction, data)

    # ---- handshake ----

    def _messages(self, direction: int, data: bytes) -> list[tuple[int, bytes]]:
        """Whole handshake messages, joined across records (RFC 8446 §5.1)."""
        state = self._dirs[direction]
        buf = state.handshake
        buf += data
        out: list[tuple[int, bytes]] = []
        pos = 0
        while len(buf) - pos >= 4:
            length = int.from_bytes(buf[pos + 1 : pos + 4], "big")
            if length > _MAX_HANDSHAKE:
                buf.clear()  # not followed further; key changes are still found by trial
                return out
            if len(buf) - pos < 4 + length:
                break
            out.append((buf[pos], bytes(buf[pos + 4 : pos + 4 + length])))
            pos += 4 + length
        del buf[:pos]
        return out

    def _plain_handshake(self, direction: int, data: bytes) -> None:
        if self.version is not None and self.client_random is not None:
            self._dirs[direction].handshake.clear()
            return  # the rest of the plaintext handshake (certificates, ...): nothing needed from it
        for msg_type, body in self._messages(direction, data):
            if direction == CLIENT and msg_type == HS_CLIENT_HELLO and self.client_random is None:
                if len(body) >= 34:
                    self.client_random = body[2:34]
                    self._hellos_known()
            elif direction == SERVER and msg_type == HS_SERVER_HELLO and self.version is None:
                self._server_hello(body)
                self._hellos_known()

    def _hellos_known(self) -> None:
        if self.version is None or self.client_random is None:
            return
        if self.version == TLS13:
            self._setup13()
        self._replay_waiting()

    def _server_hello(self, body: bytes) -> None:
        # RFC 8446 §4.1.3 / RFC 5246 §7.4.1.3: version, random, session id, suite, compression, extensions.
        if len(body) < 38:
            return
        random = body[2:34]
        if random == _HRR_RANDOM:
            return  # a HelloRetryRequest: the real ServerHello follows
        version = int.from_bytes(body[:2], "big")
        pos = 35 + body[34]
        if len(body) < pos + 3:
            return
        suite_id = int.from_bytes(body[pos : pos + 2], "big")
        pos += 3
        etm = False
        if len(body) >= pos + 2:
            end = min(len(body), pos + 2 + int.from_bytes(body[pos : pos + 2], "big"))
            pos += 2
            while pos + 4 <= end:
                ext, size = struct.unpack_from("!HH", body, pos)
                value = body[pos + 4 : pos + 4 + size]
                if ext == EXT_SUPPORTED_VERSIONS and len(value) == 2:
                    version = int.from_bytes(value, "big")
                elif ext == EXT_ENCRYPT_THEN_MAC:
                    etm = True
                pos += 4 + size
        self.server_random = random
        self.version = version
        self.suite_id = suite_id
        suite = SUITES.get(suite_id)
        self.suite = suite if suite is not None and suite.tls13 == (version == TLS13) else None
        self._etm = etm

    def _lookup(self) -> dict[str, bytes] | None:
        if self._secrets is None and self.client_random is not None:
            self._secrets = self._keys.get(self.client_random)
        return self._secrets

    def _setup13(self) -> None:
        secrets = self._lookup()
        suite = self.suite
        if secrets is None or suite is None:
            return
        for direction, labels in enumerate(_STAGES_13):
            state = self._dirs[direction]
            state.stages = [
                (stage, _Aead13(suite, secrets[label]))
                for stage, label in labels
                if label in secrets and len(secrets[label]) == hashes_size(suite.prf)
            ]

    def _protection12(self, direction: int) -> _Protection | None:
        secrets = self._lookup()
        suite = self.suite
        if self.version != TLS12 or secrets is None or suite is None or "CLIENT_RANDOM" not in secrets:
            return None
        assert self.client_random is not None and self.server_random is not None
        mac_len = _MAC_SIZE[suite.mac] if suite.mac else 0
        iv_len = suite.fixed_iv_len
        # RFC 5246 §6.3: key_block = PRF(master, "key expansion", server_random + client_random),
        # cut into client MAC key, server MAC key, client key, server key, client IV, server IV.
        block = prf12(
            secrets["CLIENT_RANDOM"],
            b"key expansion",
            self.server_random + self.client_random,
            2 * (mac_len + suite.key_len + iv_len),
            suite.prf,
        )
        mac_key = block[direction * mac_len : (direction + 1) * mac_len]
        base = 2 * mac_len
        key = block[base + direction * suite.key_len : base + (direction + 1) * suite.key_len]
        base += 2 * suite.key_len
        iv = block[base + direction * iv_len : base + (direction + 1) * iv_len]
        if suite.aead is None:
            return _Cbc12(suite, key, mac_key, self._etm)
        return _Aead12(suite, key, iv)

    def _encrypted_handshake(self, direction: int, data: bytes) -> None:
        state = self._dirs[direction]
        for msg_type, body in self._messages(direction, data):
            if msg_type == HS_FINISHED:
                # RFC 8446 §7.2: after its Finished a side sends with its application traffic keys.
                for index, (stage, _protection) in enumerate(state.stages):
                    if stage == "application" and index > state.stage:
                        state.stage = index
                        state.seq = 0
                        state.handshake.clear()
                        return
            elif msg_type == HS_KEY_UPDATE and len(body) == 1 and self.suite is not None:
                current = state.stages[state.stage][1]
                # RFC 8446 §7.2: application_traffic_secret_N+1 =
                #   HKDF-Expand-Label(application_traffic_secret_N, "traffic upd", "", Hash.length)
                size = hashes_size(self.suite.prf)
                following = hkdf_expand_label(current.secret, b"traffic upd", b"", size, self.suite.prf)
                state.stages[state.stage] = ("application", _Aead13(self.suite, following))
                state.seq = 0
                state.handshake.clear()
                return


def hashes_size(name: str) -> int:
    return _HASH_SIZE[name]
