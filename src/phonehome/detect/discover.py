"""Suspected identifiers: values in outbound traffic that look like identifiers nobody declared.

A phone and its apps send identifiers their owner cannot know to list: a vendor device ID, an
SDK's install ID, a hash of something. Following ReCon (Ren et al., MobiSys 2016), which learned
to flag leaks without knowing the values, :class:`Discoverer` watches every exchange of an audit,
splits what was sent into ``key = value`` fields (query, form and JSON bodies, XML parameters,
headers, cookies, path segments) and bare tokens, and scores each distinct value on three kinds of
evidence, each a table below:

- **shape** (:data:`SHAPES`): an IMEI or ICCID with a valid Luhn digit, an IMSI with a real mobile
  country code, a MAC address, a UUID, a 16-hex Android ID, an e-mail address, a phone number
  valid in the device's region, a hex digest, a long random-looking token;
- **key** (:data:`ID_KEYS`): the name it travels under (``imei``, ``deviceId``, ``gaid``, ...),
  matched on the key's trailing words so ``x-crashlytics-installation-id`` and ``advertisingTrackingId``
  count and ``threadId`` does not; a trailing ``md5``/``sha1``/``hash`` is read as "hashed";
- **persistence**: the same value sent to several unrelated organisations (registrable domains),
  or the same at one endpoint across requests and connections.

Positive weights combine as independent evidence (``1 - Π(1 - w)``). What lowers confidence:
a key that names an app credential or a per-request value (:data:`NOT_ID_WORDS`: ``api_key``,
``token``, ``signature``, ``nonce``, ``session``, ``request_id``, ...), and a value that changes on
every request to the same endpoint (a nonce). What is never a suspect: values the profile declares
(they are findings already), user agents, version strings, timestamps, package names, URLs, short
or non-random text. A value is reported when its confidence reaches :data:`MIN_CONFIDENCE`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote

import phonenumbers

from phonehome.attribute.domains import normalise as normalise_host
from phonehome.detect.forms import forms_of
from phonehome.model import WHERE_BODY, WHERE_COOKIE, WHERE_PATH, WHERE_QUERY, Exchange
from phonehome.profile import MCCS, Profile, luhn_valid
from phonehome.protocols.compression import decompress, sniff_compression

__all__ = ["ID_KEYS", "MIN_CONFIDENCE", "NOT_ID_WORDS", "SHAPES", "Discoverer", "Field", "Suspect", "fields"]

MIN_CONFIDENCE = 0.5
MAX_BODY = 1 << 20  # bytes of one body parsed for fields
MAX_FIELDS = 2000  # fields taken from one exchange

# --- fields: what an exchange sent, as (where, key path, value) ---------------------------------------------


@dataclass(frozen=True, slots=True)
class Field:
    """One value the phone sent and the key it travelled under."""

    where: str  # the Part's where: query, body, header:x-foo, cookie, path
    key: str | None  # the innermost key name, None for a bare token
    path: str  # the full key path, for aligning the same field across requests ("body:user.id")
    value: str


_UNINTERESTING_HEADERS = frozenset(
    {"host", "user-agent", "accept", "accept-language", "accept-encoding", "content-type", "referer"}
    | {"origin", "cache-control", "pragma", "if-modified-since", "if-none-match", "range", "te", "expect"}
    | {"content-md5", "date", "upgrade", "keep-alive"}
)
_XML_PARAM = re.compile(rb"""name=["']([\w.:\-]{1,64})["']\s+value=["']([^"'<>]{1,512})["']""")
_XML_ELEMENT = re.compile(rb"<([A-Za-z_][\w.:\-]{0,63})(?:\s[^<>]*)?>([^<>]{1,512})</\1>")
_SUB_FIELD = re.compile(r"([A-Za-z_][\w.\-]{0,63})=([^,;&\s]{1,512})")
# Tokens worth looking at in text with no structure: every shape that stands on its own.
_BARE_TOKEN = re.compile(
    rb"[\w.+\-]{1,64}@[\w\-]+(?:\.[\w\-]+)+"  # e-mail
    rb"|(?<![\w:\-])(?:[0-9A-Fa-f]{2}[:\-]){5}[0-9A-Fa-f]{2}(?![\w:\-])"  # MAC
    rb"|(?<![\w\-])[0-9A-Fa-f]{8}-(?:[0-9A-Fa-f]{4}-){3}[0-9A-Fa-f]{12}(?![\w\-])"  # UUID
    rb"|(?<![\w+])\+?\d{10,20}(?!\w)"  # IMEI, IMSI, ICCID, phone
)


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def _inflate(data: bytes) -> bytes:
    # Compressed bodies are parsed decompressed, bounded so a bomb costs nothing; a bad stream is left.
    kind = sniff_compression(data)
    if kind is None:
        return data
    out, _warning = decompress("deflate" if kind == "zlib" else kind, data, MAX_BODY)
    return out or data


def _json_fields(where: str, node: object, path: str, key: str | None, depth: int = 0) -> Iterator[Field]:
    if depth > 32:
        return
    if isinstance(node, dict):
        for name, value in node.items():
            yield from _json_fields(
                where, value, f"{path}.{name}" if path else str(name), str(name), depth + 1
            )
    elif isinstance(node, list):
        for item in node:
            yield from _json_fields(where, item, f"{path}[]", key, depth + 1)
    elif isinstance(node, str):
        stripped = node.strip()
        if stripped[:1] in ("{", "[") and len(stripped) < MAX_BODY:  # JSON inside a JSON string
            try:
                yield from _json_fields(where, json.loads(stripped), path, key, depth + 1)
                return
            except (ValueError, RecursionError):
                pass
        yield Field(where, key, f"{where}:{path}", node)
    elif isinstance(node, int) and not isinstance(node, bool):
        yield Field(where, key, f"{where}:{path}", str(node))


def _form_fields(where: str, text: str) -> Iterator[Field]:
    for name, value in parse_qsl(text, keep_blank_values=False):
        stripped = value.strip()
        if stripped[:1] in ("{", "["):
            try:
                yield from _json_fields(where, json.loads(stripped), name, name)
                continue
            except (ValueError, RecursionError):
                pass
        yield Field(where, name, f"{where}:{name}", value)


def _bare_fields(where: str, data: bytes) -> Iterator[Field]:
    for m in _BARE_TOKEN.finditer(data):
        yield Field(where, None, f"{where}:", _text(m.group()))


def _body_fields(where: str, data: bytes, content_type: str | None) -> Iterator[Field]:
    data = _inflate(data[:MAX_BODY])
    stripped = data.lstrip()
    if stripped[:1] in (b"{", b"["):
        try:
            yield from _json_fields(where, json.loads(stripped), "", None)
            return
        except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser goes
            pass
    if stripped[:1] == b"<":
        found = False
        for m in _XML_PARAM.finditer(data):
            found = True
            yield Field(where, _text(m.group(1)), f"{where}:{_text(m.group(1))}", _text(m.group(2)))
        for m in _XML_ELEMENT.finditer(data):
            found = True
            yield Field(where, _text(m.group(1)), f"{where}:{_text(m.group(1))}", _text(m.group(2)).strip())
        if found:
            return
    if (content_type or "").lower().startswith("application/x-www-form-urlencoded") or (
        b"=" in data and not any(b < 0x20 for b in data[:1024]) and b" " not in data[:256].strip()
    ):
        yield from _form_fields(where, _text(data))
        return
    yield from _bare_fields(where, data)


def _header_fields(where: str, data: bytes) -> Iterator[Field]:
    name = where.partition(":")[2]
    if name in _UNINTERESTING_HEADERS:
        return
    text = _text(data)
    subs = list(_SUB_FIELD.finditer(text))
    if (subs and not name.startswith("x-")) or len(subs) > 1:
        # "Sentry sentry_key=..., sentry_client=..." or "Bearer a=b; c=d": the pairs are the fields.
        for m in subs:
            yield Field(where, m.group(1), f"{where}:{m.group(1)}", m.group(2))
        return
    yield Field(where, name, where, text.strip())


def _path_fields(where: str, data: bytes) -> Iterator[Field]:
    previous: str | None = None
    for segment in _text(data).split("/"):
        if not segment:
            continue
        value = unquote(segment)
        yield Field(where, previous, f"{where}:{previous or ''}", value)
        previous = value if len(value) <= 32 and value.replace("_", "").replace("-", "").isalpha() else None


def fields(exchange: Exchange) -> list[Field]:
    """Every ``key = value`` the exchange sent, in order, and bare tokens where there are no keys."""
    out: list[Field] = []
    for part in exchange.parts:
        where = part.where
        if where == WHERE_QUERY:
            found: Iterator[Field] = _form_fields(where, _text(part.data))
        elif where == WHERE_COOKIE:
            name, _, value = _text(part.data).partition("=")
            found = iter((Field(where, name.strip(), f"{where}:{name.strip()}", value.strip()),))
        elif where == WHERE_PATH:
            found = _path_fields(where, part.data)
        elif where.startswith("header:"):
            found = _header_fields(where, part.data)
        elif where == WHERE_BODY:
            found = _body_fields(where, part.data, part.content_type)
        else:  # dns, sni, raw: no keys to read, only tokens that stand on their own
            found = _bare_fields(where, part.data)
        for item in found:
            out.append(item)
            if len(out) >= MAX_FIELDS:
                return out
    return out


# --- shapes ----------------------------------------------------------------------------------------------

_HEX = re.compile(r"[0-9a-fA-F]+")
_MAC = re.compile(r"(?:[0-9a-fA-F]{2}([:\-]))(?:[0-9a-fA-F]{2}\1){4}[0-9a-fA-F]{2}")
_UUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
_EMAIL = re.compile(r"[\w.+\-]{1,64}@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,24}")
_TOKEN = re.compile(r"[A-Za-z0-9_\-:.=+/]{12,256}")
# MACs that identify no device: unset, broadcast, and what Android 6+ reports to apps instead of the
# real address (developer.android.com "Android 6.0 changes: access to hardware identifier").
_PLACEHOLDER_MACS = frozenset({"00:00:00:00:00:00", "ff:ff:ff:ff:ff:ff", "02:00:00:00:00:00"})


def _distinct(value: str, minimum: int) -> bool:
    return len(set(value.lower())) >= minimum


def _is_imei(v: str) -> bool:
    # 3GPP TS 23.003 §6.2.1: 15 digits, the last a Luhn check digit.
    return len(v) == 15 and v.isdigit() and luhn_valid(v) and _distinct(v, 4)


def _is_iccid(v: str) -> bool:
    # ITU-T E.118: 19 or 20 digits starting 89 (telecommunications), Luhn check digit last.
    return 19 <= len(v) <= 20 and v.isdigit() and v.startswith("89") and luhn_valid(v)


def _is_imsi(v: str) -> bool:
    # 3GPP TS 23.003 §2.2: MCC (ITU-T E.212) + MNC + MSIN, 15 digits in practice.
    return len(v) == 15 and v.isdigit() and int(v[:3]) in MCCS and _distinct(v, 4)


def _is_mac(v: str) -> bool:
    return _MAC.fullmatch(v) is not None and v.lower().replace("-", ":") not in _PLACEHOLDER_MACS


def _is_uuid(v: str) -> bool:
    return _UUID.fullmatch(v) is not None and _distinct(v.replace("-", ""), 4)


def _is_android_id(v: str) -> bool:
    # Settings.Secure.ANDROID_ID: a 64-bit number as 16 hex digits, in lower case.
    return (
        len(v) == 16 and _HEX.fullmatch(v) is not None and v.islower() and not v.isdigit() and _distinct(v, 6)
    )


def _is_email(v: str) -> bool:
    return _EMAIL.fullmatch(v) is not None


def _is_digest(v: str) -> bool:
    return len(v) in (32, 40, 64) and _HEX.fullmatch(v) is not None and _distinct(v, 8)


def _is_token(v: str) -> bool:
    letters = sum(c.isalpha() for c in v)
    digits = sum(c.isdigit() for c in v)
    return _TOKEN.fullmatch(v) is not None and letters >= 3 and digits >= 3 and _distinct(v, 8)


@dataclass(frozen=True, slots=True)
class Shape:
    name: str
    test: Callable[[str], bool]
    weight: float  # confidence from the shape alone
    reason: str


# Most specific first; the first that matches names the value's shape. Weights say how rarely a
# value of that shape is anything but an identifier.
SHAPES: tuple[Shape, ...] = (
    Shape("iccid", _is_iccid, 0.7, "ICCID shape: 19-20 digits from 89, valid Luhn check digit"),
    Shape("imei", _is_imei, 0.6, "IMEI shape: 15 digits with a valid Luhn check digit"),
    Shape("imsi", _is_imsi, 0.45, "IMSI shape: 15 digits starting with a real mobile country code"),
    Shape("email", _is_email, 0.7, "an e-mail address"),
    Shape("mac", _is_mac, 0.6, "a MAC address"),
    Shape("uuid", _is_uuid, 0.35, "UUID shape (advertising IDs and install IDs are UUIDs)"),
    Shape("android_id", _is_android_id, 0.3, "Android ID shape: 16 lower-case hex digits"),
    Shape("digest", _is_digest, 0.15, "a hex digest (identifiers are often sent hashed)"),
    Shape("token", _is_token, 0.1, "a long random-looking token"),
)

# --- key names -------------------------------------------------------------------------------------------

# Key names identifiers travel under, seen in the wild (ReCon's and Agrigento's key lists, SDK
# documentation). Compared with the key's trailing one, two or three words joined in lower case,
# so "x-crashlytics-installation-id" matches "installationid" and "deviceIdMd5" matches "deviceid".
ID_KEYS: frozenset[str] = frozenset(
    {
        *("imei", "imei1", "imei2", "meid", "imsi", "iccid", "msisdn", "simserial", "simserialnumber"),
        *("udid", "openudid", "uuid", "guid", "uid", "userid", "deviceid", "devid", "did", "hwid"),
        *("androidid", "aid", "ssaid", "gsfid", "gaid", "aaid", "adid", "idfa", "idfv", "advertisingid"),
        *("advertiserid", "trackingid", "advertisingtrackingid", "adtrackingid", "googleadid"),
        *("installid", "installationid", "instanceid", "appinstanceid", "clientid", "cid", "visitorid"),
        *("anonymousid", "distinctid", "deviceuuid", "deviceguid", "deviceidentifier", "uniqueid"),
        *("uniquedeviceid", "hardwareid", "subscriberid", "deviceserial", "serial", "serialno"),
        *("serialnumber", "mac", "macaddr", "macaddress", "wifimac", "btmac", "bssid"),
        *("phone", "phonenumber", "mobile", "mobilenumber", "tel", "email", "mail", "emailaddress"),
        *("cuid", "mid", "oaid", "vaid", "deviceidhash", "devicehash", "hashedid"),
        # Push registration tokens live as long as the install and are sent to ad and analytics hosts.
        *("devicetoken", "pushtoken", "fcmtoken", "gcmtoken", "registrationid", "regid"),
        # OpenRTB 2.x device object (IAB): ifa, and hashed device and MAC IDs.
        *("ifa", "dpidmd5", "dpidsha1", "didmd5", "didsha1", "macmd5", "macsha1"),
    }
)
# Trailing words that say the value is a digest or encoding of what the rest of the key names.
_HASH_WORDS = frozenset({"md5", "sha1", "sha256", "hash", "hashed", "enc", "encrypted", "b64", "base64"})
# Words that say a key holds an app credential or a value made fresh per request or session.
NOT_ID_WORDS: frozenset[str] = frozenset(
    {
        *("key", "apikey", "appkey", "devkey", "sdkkey", "secret", "token", "auth", "signature", "sig"),
        *("hmac", "nonce", "salt", "session", "sessionid", "sid", "request", "requestid", "reqid"),
        *("event", "eventid", "trace", "traceid", "span", "spanid", "checksum", "crc", "etag", "hash"),
        *("version", "build", "ts", "time", "timestamp", "csrf", "otp", "block", "blockid", "message"),
        *("messageid", "txn", "order", "orderid", "price", "amount", "count", "seq", "random", "rnd"),
        *("cb", "cachebuster", "callback", "state", "code", "sum", "icon", "app", "appid", "bundle"),
    }
)
_WORD = re.compile(r"[A-Z]?[a-z]+\d*|[A-Z]+\d*(?![a-z])|\d+")


def key_words(key: str) -> list[str]:
    """Words of a key name: ``advertisingTrackingId`` -> advertising, tracking, id."""
    return [w.lower() for w in _WORD.findall(key)]


def key_verdict(key: str | None) -> tuple[str | None, bool, bool]:
    """(ID key it matches, hashed, names a non-identifier): how a key name bears on its value."""
    if not key:
        return None, False, False
    words = key_words(key)
    not_id = any(w in NOT_ID_WORDS for w in words) or "".join(words[-2:]) in NOT_ID_WORDS
    hashed = False
    while len(words) > 1 and words[-1] in _HASH_WORDS:
        words.pop()
        hashed = True
    for n in (3, 2, 1):
        if len(words) >= n and (joined := "".join(words[-n:])) in ID_KEYS:
            return joined, hashed, False
    if "".join(words) in ID_KEYS:
        return "".join(words), hashed, False
    return None, hashed, not_id


# --- what is never an identifier ----------------------------------------------------------------------------

_VERSION = re.compile(r"v?\d+(?:\.\d+){1,3}(?:[-+_.]?[A-Za-z0-9]+)*")
_PACKAGE = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*){2,}")
_URL = re.compile(r"[a-z][a-z0-9+.\-]*://", re.IGNORECASE)
_DECIMAL = re.compile(r"-?\d+\.\d+")
_EPOCH_LOW, _EPOCH_HIGH = 946_684_800, 2_524_608_000  # 2000-01-01 to 2050-01-01 UTC
# A host name ("x.apps.googleusercontent.com"): the last label is letters only.
_HOST_NAME = re.compile(r"[\w\-]+(?:\.[\w\-]+)+\.[A-Za-z]{2,24}")
# Digests of nothing: what a hash of an empty body or an unset field looks like on every phone.
_EMPTY_DIGESTS = frozenset(
    hashlib.new(name, b"").hexdigest() for name in ("md5", "sha1", "sha224", "sha256", "sha384", "sha512")
)


def _is_timestamp(value: str) -> bool:
    digits = value.split(".", 1)[0] if _DECIMAL.fullmatch(value) else value
    if not digits.isdigit() or len(digits) not in (10, 13, 16, 19):
        return False
    seconds = int(digits) / 10.0 ** (len(digits) - 10)
    return _EPOCH_LOW <= seconds <= _EPOCH_HIGH


def _never(value: str) -> str | None:
    """Why ``value`` cannot be an identifier, or None."""
    if len(value) < 8:
        return "short"
    if len(set(value.lower()) - set("-:._ ")) < 3:
        return "placeholder"  # all zeros ("limit ad tracking"), 02:00:00:00:00:00, "xxxxxxxx"
    if value.lower() in _EMPTY_DIGESTS:
        return "digest of nothing"
    if _is_timestamp(value):
        return "timestamp"
    if _VERSION.fullmatch(value) or _DECIMAL.fullmatch(value):
        return "version or number"
    if (_PACKAGE.fullmatch(value) or _HOST_NAME.fullmatch(value)) and "@" not in value:
        return "package or host name"
    if _URL.match(value) or value.startswith("/"):
        return "URL or path"
    if " " in value.strip() or len(value) > 256:
        return "text"
    return None


# --- the discoverer ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Suspect:
    """A value that looks like an identifier the profile does not declare."""

    value: str
    key: str | None  # the key it travelled under most often
    confidence: float  # 0..1
    reasons: tuple[str, ...]
    hosts: tuple[str, ...]
    shape: str | None = None  # SHAPES name, when one matched
    count: int = 1  # how many times it was sent
    where: tuple[str, ...] = ()


@dataclass(slots=True)
class _Seen:
    keys: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    hosts: dict[str, None] = field(default_factory=dict)
    orgs: dict[str, None] = field(default_factory=dict)
    flows: set[str] = field(default_factory=set)
    slots: set[tuple[str, str, str]] = field(default_factory=set)
    where: dict[str, None] = field(default_factory=dict)
    count: int = 0


def _organisation(host: str | None, ip: str) -> str:
    name = normalise_host(host) if host else None
    if name is None:
        return ip
    return name.site or name.domain or name.host


def _phone_shape(value: str, region: str | None) -> bool:
    digits = value[1:] if value.startswith("+") else value
    if not digits.isdigit() or not 8 <= len(digits) <= 15 or (region is None and not value.startswith("+")):
        return False
    try:
        number = phonenumbers.parse(value, None if value.startswith("+") else region)
    except phonenumbers.NumberParseException:
        return False
    return bool(phonenumbers.is_valid_number(number))


class Discoverer:
    """Collects the fields of every exchange of an audit; :meth:`suspects` scores the values."""

    def __init__(self, profile: Profile) -> None:
        self.region = profile.region
        declared: set[str] = set()
        for ident in profile.identifiers:
            for _name, text in forms_of(ident.kind, ident.value, ident.region):
                declared.add(text.lower())
        self.declared = frozenset(declared)
        self._values: dict[str, _Seen] = {}
        # (host, path, key path) -> values seen there, in order, to tell nonces from stable values
        self._slots: dict[tuple[str, str, str], list[str]] = defaultdict(list)

    def observe(self, exchange: Exchange) -> None:
        host = exchange.host or exchange.server_ip
        org = _organisation(exchange.host, exchange.server_ip)
        path = (exchange.url or "").split("?", 1)[0]
        for item in fields(exchange):
            value = item.value.strip()
            if not value or value.lower() in self.declared or _never(value):
                continue
            seen = self._values.get(value)
            if seen is None:
                seen = self._values[value] = _Seen()
            seen.count += 1
            seen.keys[item.key or ""] += 1
            seen.hosts.setdefault(host)
            seen.orgs.setdefault(org)
            seen.flows.add(exchange.flow)
            if item.key is not None:  # bare tokens share no slot whose history would mean anything
                slot = (host, path, item.path)
                self._slots[slot].append(value)
                seen.slots.add(slot)
            seen.where.setdefault(item.where)

    def score(self, value: str, seen: _Seen) -> tuple[float, list[str], str | None, str | None]:
        """(confidence, reasons, shape, key) for one value."""
        key = max(seen.keys, key=lambda k: seen.keys[k]) or None
        positive: list[tuple[float, str]] = []
        negative: list[tuple[float, str]] = []
        shape = next((s for s in SHAPES if s.test(value)), None)
        if shape is not None:
            positive.append((shape.weight, shape.reason))
        elif _phone_shape(value, self.region):
            shape = Shape("phone", lambda v: True, 0.5, "")
            region = "its own country code" if value.startswith("+") else f"region {self.region}"
            positive.append((0.5, f"a valid phone number ({region})"))
        id_key = None
        for name in sorted(seen.keys, key=lambda k: -seen.keys[k]):
            matched, hashed, not_id = key_verdict(name)
            if matched is not None:
                id_key = name
                how = " (hashed)" if hashed else ""
                positive.append((0.6, f"sent under key {name!r}{how}, a name identifiers travel under"))
                break
            if not_id and name == key:
                negative.append((0.2, f"key {name!r} names a credential or a per-request value"))
        if shape is None and id_key is None:
            return 0.0, [], None, key
        if len(seen.orgs) >= 2:
            orgs = ", ".join(list(seen.orgs)[:4])
            positive.append((0.5, f"sent to {len(seen.orgs)} unrelated organisations ({orgs})"))
        stable = [
            slot for slot in seen.slots if len(set(self._slots[slot])) == 1 and len(self._slots[slot]) > 1
        ]
        nonce = bool(seen.slots) and all(
            len(self._slots[slot]) > 1 and self._slots[slot].count(value) == 1 for slot in seen.slots
        )
        if nonce:
            negative.append((0.1, "changes on every request to the same endpoint (a nonce)"))
        elif stable and len(seen.flows) >= 2:
            positive.append((0.3, f"the same in {seen.count} requests over {len(seen.flows)} connections"))
        elif stable:
            positive.append((0.15, f"the same in {seen.count} requests"))
        confidence = 1.0
        for weight, _reason in positive:
            confidence *= 1.0 - weight
        confidence = 1.0 - confidence
        for factor, _reason in negative:
            confidence *= factor
        reasons = [reason for _w, reason in positive] + [reason for _f, reason in negative]
        return confidence, reasons, shape.name if shape else None, id_key or key

    def suspects(self, minimum: float = MIN_CONFIDENCE) -> list[Suspect]:
        """Every value whose confidence reaches ``minimum``, most confident first."""
        out: list[Suspect] = []
        for value, seen in self._values.items():
            confidence, reasons, shape, key = self.score(value, seen)
            if confidence >= minimum:
                out.append(
                    Suspect(
                        value=value,
                        key=key,
                        confidence=round(confidence, 2),
                        reasons=tuple(reasons),
                        hosts=tuple(seen.hosts),
                        shape=shape,
                        count=seen.count,
                        where=tuple(seen.where),
                    )
                )
        out.sort(key=lambda s: (-s.confidence, s.value))
        return out
