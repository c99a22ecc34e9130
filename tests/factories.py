"""One-line builders for the objects tests need: identifiers, profiles, exchanges, captures."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from phonehome.model import Exchange, Finding, Part
from phonehome.profile import Identifier

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
NO_CORPUS = "../shared/corpus is absent (a fresh clone has no shared folder beside it)"

# Valid values of every identifier kind, as a profile would hold them after normalisation.
SAMPLES: dict[str, Identifier] = {
    "imei": Identifier("imei", "imei", "device", "865123456789019"),
    "imsi": Identifier("imsi", "imsi", "subscriber", "404101234567890"),
    "iccid": Identifier("iccid", "iccid", "subscriber", "8991101200003204514"),
    "phone": Identifier("phone", "phone", "subscriber", "+919876543210", region="IN"),
    "carrier": Identifier("carrier", "text", "subscriber", "airtel"),
    "android_id": Identifier("android_id", "hex", "device", "b9e28776354d259e"),
    "advertising_id": Identifier("advertising_id", "uuid", "device", "5ac6a0ff-8d18-47bc-a902-2812cf0c251e"),
    "wifi_mac": Identifier("wifi_mac", "mac", "device", "02:1a:11:f0:aa:b3"),
    "serial": Identifier("serial", "serial", "device", "R58M12ABCDE"),
    "email": Identifier("email", "email", "account", "Owner@Example.org"),
    "udid": Identifier("udid", "opaque", "custom", "e6dbd30b-XYZ-0001"),
    "contact.phone": Identifier("contact.phone", "phone", "contacts", "+919811122233", "Asha Verma", "IN"),
    "contact.email": Identifier("contact.email", "email", "contacts", "asha@example.org", "Asha Verma"),
    "contact.name": Identifier("contact.name", "name", "contacts", "Asha Verma", "Asha Verma"),
    "message.peer": Identifier("message.peer", "phone", "messages", "+919822233344", "+919822233344", "IN"),
    "message.text": Identifier("message.text", "text", "messages", "Meet at the gate at 6", "+919822233344"),
}


def exchange(*parts: tuple[str, bytes], host: str = "example.com", ip: str = "93.184.216.34") -> Exchange:
    return Exchange(
        source="test",
        flow="tcp 10.0.0.2:40000>93.184.216.34:80",
        time=0.0,
        transport="tcp",
        protocol="http",
        client_ip="10.0.0.2",
        client_port=40000,
        server_ip=ip,
        server_port=80,
        parts=tuple(Part(w, d) for w, d in parts),
        host=host,
    )


_FINDING = Finding(
    identifier="imei",
    category="device",
    encoding="plain",
    where="body",
    host="api.account.xiaomi.com",
    ip="42.62.48.171",
    port=80,
    url=None,
    country="CN",
    country_source="geolite2",
    transport="tcp",
    protocol="http",
    encrypted=False,
    time=0.0,
    flow="f",
    source="s",
    evidence="«x»",
)


def finding(**fields: object) -> Finding:
    """A finding of an IMEI sent in clear text to Xiaomi in China, with ``fields`` changed."""
    return replace(_FINDING, **fields)  # type: ignore[arg-type]


def client_hello(name: str) -> bytes:
    """A TLS 1.3 ClientHello handshake message (no record header) naming ``name`` in its SNI."""
    sni = name.encode()
    ext = b"\x00\x00" + (len(sni) + 5).to_bytes(2, "big") + (len(sni) + 3).to_bytes(2, "big") + b"\x00"
    ext += len(sni).to_bytes(2, "big") + sni
    body = (
        b"\x03\x03"
        + bytes(32)
        + b"\x00"
        + b"\x00\x02\x13\x01"
        + b"\x01\x00"
        + len(ext).to_bytes(2, "big")
        + ext
    )
    return b"\x01" + len(body).to_bytes(3, "big") + body
