"""Real TLS connections made in memory with the ssl module (OpenSSL), with their NSS key log.

Both ends run in this process over memory BIOs, so no socket is involved; the bytes each side wrote
are recorded as the two streams a capture would hold, and OpenSSL writes the key log as it would for
SSLKEYLOGFILE.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from phonehome.protocols.tcp import Gap, Reassembler
from phonehome.sources import capture

HOST = "example.test"


@dataclass(frozen=True)
class Session:
    client: bytes  # what the client sent, as one TCP stream
    server: bytes  # what the server sent
    keylog: bytes  # NSS key log lines OpenSSL wrote
    version: str  # "TLSv1.2", "TLSv1.3"
    cipher: str  # OpenSSL's name of the suite


@functools.cache
def _certificate() -> tuple[str, str]:
    folder = Path(tempfile.mkdtemp(prefix="phonehome-tls-"))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return str(cert_path), str(key_path)


def _pump(src: ssl.MemoryBIO, dst: ssl.MemoryBIO, record: bytearray) -> bool:
    data = src.read()
    if data:
        record += data
        dst.write(data)
    return bool(data)


def session(
    client_says: list[bytes],
    server_says: list[bytes] = (),  # type: ignore[assignment]
    *,
    tls13: bool = True,
    ciphers: str | None = None,
    alpn: list[str] | None = None,
) -> Session:
    """A whole connection: handshake, then each side's messages in turn, then close_notify."""
    cert, key = _certificate()
    folder = Path(tempfile.mkdtemp(prefix="phonehome-keylog-"))
    keylog = folder / "keys.log"
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.load_verify_locations(cert)
    client_ctx.keylog_filename = str(keylog)
    version = ssl.TLSVersion.TLSv1_3 if tls13 else ssl.TLSVersion.TLSv1_2
    for ctx in (server_ctx, client_ctx):
        ctx.minimum_version = ctx.maximum_version = version
        if ciphers:
            ctx.set_ciphers(ciphers)
        if alpn:
            ctx.set_alpn_protocols(alpn)
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname=HOST)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    c2s, s2c = bytearray(), bytearray()
    done = [False, False]
    for _ in range(20):
        for index, end in enumerate((client, server)):
            if not done[index]:
                try:
                    end.do_handshake()
                    done[index] = True
                except ssl.SSLWantReadError:
                    pass
        moved = _pump(c_out, s_in, c2s) | _pump(s_out, c_in, s2c)
        if all(done) and not moved:
            break
    for turn in range(max(len(client_says), len(server_says))):
        if turn < len(client_says):
            client.write(client_says[turn])
            _pump(c_out, s_in, c2s)
            _read_all(server)
        if turn < len(server_says):
            server.write(server_says[turn])
            _pump(s_out, c_in, s2c)
            _read_all(client)
    cipher = client.cipher()
    result_version = client.version()
    for end in (client, server):
        with contextlib.suppress(ssl.SSLWantReadError, ssl.SSLError):
            end.unwrap()
    _pump(c_out, s_in, c2s)
    _pump(s_out, c_in, s2c)
    assert cipher is not None and result_version is not None
    return Session(bytes(c2s), bytes(s2c), keylog.read_bytes(), result_version, cipher[0])


def _read_all(end: ssl.SSLObject) -> bytes:
    out = bytearray()
    while True:
        try:
            chunk = end.read(1 << 16)
        except ssl.SSLWantReadError:
            return bytes(out)
        if not chunk:
            return bytes(out)
        out += chunk


def tcp_streams(path: str) -> dict[tuple[bytes, int, bytes, int], bytes]:
    """Every TCP stream of a capture, reassembled, by (src, sport, dst, dport)."""
    flows: dict[tuple[bytes, int, bytes, int], Reassembler] = {}
    for event in capture.read_capture(path):
        if isinstance(event, capture.Packet) and event.proto == 6:
            reasm = flows.setdefault((event.src, event.sport, event.dst, event.dport), Reassembler())
            reasm.add(event.seq, event.payload, syn=bool(event.flags & 2), fin=bool(event.flags & 1))
    return {key: b"".join(x for x in reasm.close() if not isinstance(x, Gap)) for key, reasm in flows.items()}
