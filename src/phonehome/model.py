"""The data model every stage shares.

Every input format (pcap, pcapng, HAR, ...) is turned at the edge into :class:`Exchange` records:
one unit of data the phone sent, already split into the :class:`Part` s that detection scans.
Nothing after ``sources/`` and ``protocols/`` knows which format a capture came in.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any

from phonehome.quickinit import quick_init

# Where a value sat inside what the phone sent. HTTP headers are "header:<lower-case name>".
WHERE_QUERY = "query"
WHERE_PATH = "path"
WHERE_COOKIE = "cookie"
WHERE_BODY = "body"
WHERE_DNS = "dns"
WHERE_SNI = "sni"
WHERE_RAW = "raw"


def header_where(name: str) -> str:
    return "header:" + name.lower()


@quick_init
@dataclass(frozen=True, slots=True)
class Part:
    """One scannable piece of a message: its place (``where``) and its bytes as sent."""

    where: str
    data: bytes
    # What the bytes are declared to be, when the protocol says so (a body's Content-Type),
    # so that decoders can pick the right reading first. Never trusted for safety.
    content_type: str | None = None


@quick_init
@dataclass(frozen=True, slots=True)
class Exchange:
    """One unit the phone sent: an HTTP request, a DNS query, a TLS ClientHello, a raw stream chunk."""

    source: str  # the input file
    flow: str  # stable flow label, e.g. "tcp 10.0.0.2:40000>42.62.48.10:80"
    time: float  # epoch seconds of the first byte
    transport: str  # "tcp" | "udp"
    protocol: str  # "http" | "dns" | "tls" | "raw"
    client_ip: str
    client_port: int
    server_ip: str
    server_port: int
    parts: tuple[Part, ...]
    host: str | None = None  # the name the phone used (Host, SNI or DNS query)
    url: str | None = None
    method: str | None = None
    encrypted: bool = False  # seen inside TLS (decrypted) or over a protocol that is always encrypted
    tls_version: str | None = None  # e.g. "TLS 1.3", when the bytes were read from inside TLS
    tls_cipher: str | None = None  # IANA name, e.g. "TLS_AES_128_GCM_SHA256"
    name_source: str | None = None  # where ``host`` came from: "http", "sni", "dns", "har", "mitm", ...


@quick_init
@dataclass(frozen=True, slots=True)
class Notice:
    """A warning about the input: something skipped, damaged or bounded, and where."""

    source: str
    message: str
    offset: int | None = None
    flow: str | None = None
    # True when the file itself is damaged (a truncated or corrupt record): the audit goes on past
    # it, but the input was not read whole, which the exit status reports.
    damage: bool = False

    def __str__(self) -> str:
        where = self.source
        if self.offset is not None:
            where += f", offset {self.offset}"
        if self.flow:
            where += f", flow {self.flow}"
        return f"{where}: {self.message}"


@quick_init
@dataclass(frozen=True, slots=True)
class Finding:
    """One place where a declared identifier left the phone."""

    identifier: str  # profile key, or contact.phone, message.peer, ...
    category: str  # device, subscriber, network, account, contacts, messages, custom
    encoding: str  # chain from the identifier to the wire, e.g. "plain", "sha256(md5)", "base64(gzip(plain))"
    where: str
    host: str | None
    ip: str
    port: int
    url: str | None
    country: str | None
    country_source: str | None
    transport: str
    protocol: str
    encrypted: bool
    time: float
    flow: str
    source: str
    evidence: str  # printable-escaped bytes around the match, the match between « »
    form: str = "plain"  # which normal form of the value matched (e164, national, no-check-digit, ...)
    tls_version: str | None = None
    tls_cipher: str | None = None
    name_source: str | None = None  # see Exchange.name_source
    # Filled by attribute/: the registrable domain of ``host`` and who runs it.
    domain: str | None = None
    owner: str | None = None
    role: str | None = None  # vendor, first-party, cloud, cdn, advertising, analytics, crash, social, ...
    # Filled by policy/: "allowed" or "violation", and the rule that decided it.
    verdict: str = "violation"
    rule: str | None = None
    extra: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # Findings cross process boundaries by the hundred thousand (audit -j, fleet); pickled as
        # their values in field order, they are rebuilt by the constructor (quick_init), without
        # the dataclass state functions, which look up the fields of every object.
        return (Finding, _finding_values(self))


# Every field of a finding, in order, in one call.
_finding_values = operator.attrgetter(*Finding.__slots__)
