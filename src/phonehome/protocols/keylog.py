"""TLS secrets from an NSS key log (sans-I/O).

The NSS key log format (``SSLKEYLOGFILE``, also what a pcapng Decryption Secrets Block of type
``TLSK`` holds) has one secret per line: ``LABEL <client_random hex> <secret hex>``, with ``#``
comments and blank lines. :func:`parse_keylog` turns the text into secrets keyed by the 32-byte
ClientHello random, which is how every TLS connection (a resumed one too) finds its keys.
"""

from __future__ import annotations

import binascii
from collections.abc import Iterator
from dataclasses import dataclass

from phonehome.errors import InputError

__all__ = ["LABELS", "KeyStore", "Secret", "parse_keylog"]

# Labels phonehome uses, with the secret length each may have (bytes). TLS 1.3 secrets are one hash
# long: 32 (SHA-256) or 48 (SHA-384). The TLS 1.2 master secret is 48 bytes (RFC 5246 §8.1).
LABELS: dict[str, frozenset[int]] = {
    "CLIENT_RANDOM": frozenset({48}),
    "CLIENT_EARLY_TRAFFIC_SECRET": frozenset({32, 48}),
    "CLIENT_HANDSHAKE_TRAFFIC_SECRET": frozenset({32, 48}),
    "SERVER_HANDSHAKE_TRAFFIC_SECRET": frozenset({32, 48}),
    "CLIENT_TRAFFIC_SECRET_0": frozenset({32, 48}),
    "SERVER_TRAFFIC_SECRET_0": frozenset({32, 48}),
}
_RANDOM_SIZE = 32
# Other labels of the format (EXPORTER_SECRET, EARLY_EXPORTER_SECRET, RSA, ECH_SECRET, ...) are
# well-formed lines that hold nothing phonehome decrypts with; they are read and left aside.
_MAX_LINE = 4096


@dataclass(frozen=True, slots=True)
class Secret:
    label: str
    client_random: bytes
    secret: bytes


def _lines(data: bytes) -> Iterator[tuple[int, bytes]]:
    for number, raw in enumerate(data.splitlines(), 1):
        line = raw.strip()
        if line and not line.startswith(b"#"):
            yield number, line


def _parse_line(line: bytes) -> Secret | str | None:
    """The secret on ``line``, None for a label phonehome does not use, or why the line is bad."""
    if len(line) > _MAX_LINE:
        return f"line longer than {_MAX_LINE} bytes"
    fields = line.split()
    if len(fields) != 3:
        return f"expected 'LABEL <client_random hex> <secret hex>', found {len(fields)} fields"
    raw_label, random_hex, secret_hex = fields
    if not raw_label.isascii() or not raw_label.replace(b"_", b"").isalnum():
        return "label is not a word of letters, digits and '_'"
    try:
        client_random = binascii.unhexlify(random_hex)
        secret = binascii.unhexlify(secret_hex)
    except (binascii.Error, ValueError):
        return "client random or secret is not hexadecimal"
    label = raw_label.decode("ascii")
    sizes = LABELS.get(label)
    if sizes is None:
        return None
    if len(client_random) != _RANDOM_SIZE:
        return f"client random of {len(client_random)} bytes, expected {_RANDOM_SIZE}"
    if len(secret) not in sizes:
        return f"{label} secret of {len(secret)} bytes, expected {' or '.join(map(str, sorted(sizes)))}"
    return Secret(label, client_random, secret)


def parse_keylog(
    data: bytes, *, source: str | None = None, strict: bool = True
) -> tuple[list[Secret], list[tuple[int, str]]]:
    """The secrets in an NSS key log, and the bad lines that were skipped as (line number, why).

    With ``strict`` (a key log the user named) the first bad line raises :class:`InputError` naming
    ``source`` and the line; otherwise (a key log embedded in a capture) bad lines are skipped and
    listed so the caller can report them.
    """
    secrets: list[Secret] = []
    bad: list[tuple[int, str]] = []
    for number, line in _lines(data):
        parsed = _parse_line(line)
        if isinstance(parsed, Secret):
            secrets.append(parsed)
        elif parsed is not None:
            if strict:
                raise InputError(f"key log: {parsed}", source=source, line=number)
            bad.append((number, parsed))
    return secrets, bad


class KeyStore:
    """Secrets by client random, merged from every key log given (user files and capture blocks)."""

    __slots__ = ("_by_random",)

    def __init__(self, secrets: list[Secret] | tuple[Secret, ...] = ()) -> None:
        self._by_random: dict[bytes, dict[str, bytes]] = {}
        self.add(secrets)

    def add(self, secrets: list[Secret] | tuple[Secret, ...]) -> None:
        for item in secrets:
            # A later line for the same connection and label wins, as in Wireshark.
            self._by_random.setdefault(item.client_random, {})[item.label] = item.secret

    def copy(self) -> KeyStore:
        """A store that starts with these secrets and takes more without changing this one."""
        other = KeyStore()
        other._by_random = {random: dict(labels) for random, labels in self._by_random.items()}
        return other

    def get(self, client_random: bytes) -> dict[str, bytes] | None:
        return self._by_random.get(client_random)

    def __len__(self) -> int:
        return len(self._by_random)

    def __bool__(self) -> bool:
        return bool(self._by_random)
