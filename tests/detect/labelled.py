"""A labelled corpus of outbound requests for measuring suspected-identifier detection.

Two halves:

- **real**: the NoMoAds Android requests (``json/nomoads``) and the HTTP requests of nDPI's
  ``ocs.pcap``, read from ``../shared/corpus``. Each identifier in them was labelled by reading
  the request and the SDK's documentation: Unity's ``advertisingTrackingId`` (the advertising ID),
  AppsFlyer's ``device_id`` (its install ID), Firebase's ``app_instance_id``, Crashlytics'
  ``x-crashlytics-installation-id`` and Capptain's ``deviceid``. Everything else they carry is a
  negative: SDK and API keys and developer tokens (the same for every install of the app),
  Crashlytics' ``instance`` (a hash of the app build), ``icon_hash``, per-event ``data_block_id``
  values, app and game IDs, asset and commit hashes, timestamps. One value is left unlabelled
  because its nature cannot be told from the traffic: Labgency's ``x-lgy-hss-a`` header.
- **generated**: a deterministic session of a phone with ten SDKs, each with its own host and
  organisation, sending the phone's identifiers in every shape (IMEI and ICCID with valid Luhn
  digits, IMSI, MACs, UUID install and advertising IDs, Android ID, e-mail, phone numbers,
  hashed IDs) under keys from ID-like to meaningless, in query strings, form and JSON bodies,
  XML, headers and cookies; and at least as many look-alikes that are not identifiers:
  Luhn-invalid 15-digit numbers, timestamps, version strings, per-request UUID nonces, session
  tokens, per-request hex signatures, build numbers, prices, coordinates, app keys, placeholder
  MACs and the all-zero advertising ID, configuration hashes, OAuth client IDs.

Scoring is on distinct values: a predicted value is a true positive when it is labelled an
identifier; any other predicted value (labelled negative or never labelled) is a false positive,
except the explicitly unlabelled ones, which count neither way.
"""

from __future__ import annotations

import hashlib
import json
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from phonehome.model import Exchange
from phonehome.profile import luhn_check_digit
from phonehome.protocols.message import request_parts
from phonehome.sources import read_input


@dataclass
class Labelled:
    exchanges: list[Exchange] = field(default_factory=list)
    positives: set[str] = field(default_factory=set)
    negatives: set[str] = field(default_factory=set)  # look-alikes placed on purpose or labelled by hand
    unlabelled: set[str] = field(default_factory=set)

    def extend(self, other: Labelled) -> None:
        self.exchanges.extend(other.exchanges)
        self.positives |= other.positives
        self.negatives |= other.negatives
        self.unlabelled |= other.unlabelled


def _exchange(
    host: str, method: str, target: str, headers: list[tuple[str, str]], body: bytes, time: float, flow: str
) -> Exchange:
    return Exchange(
        source="labelled",
        flow=flow,
        time=time,
        transport="tcp",
        protocol="http",
        client_ip="10.0.0.2",
        client_port=40000,
        server_ip="203.0.113.7",
        server_port=443,
        parts=request_parts(target, [("host", host), *headers], body),
        host=host,
        url=f"https://{host}{target}",
        method=method,
    )


# --- real requests ----------------------------------------------------------------------------------------

REAL_POSITIVES = {
    "7263697a-cb1e-4c6f-a641-c2bfe1683295",  # Unity Ads advertisingTrackingId (the Google advertising ID)
    "1550877338208-2569651653562673536",  # AppsFlyer device_id (AppsFlyer's install ID)
    "74852299baadaa00b4b8c722a60e4475",  # Firebase app_instance_id
    "382b8aba886d4eb284acaeb6cf9f3df5",  # x-crashlytics-installation-id
    "f2c993d6218f5e22fe284b2e90c82f3b",  # Capptain deviceid (ocs.pcap)
}
REAL_NEGATIVES = {
    "cb5a8c9f85eda84ee55a0224f126d6098122211a",  # x-crashlytics-api-key (per app)
    "470fa2b4ae81cd56ecbcda9735803434cec591fa",  # x-crashlytics-developer-token (per SDK)
    "227fee39-e25e-4040-b51c-e23567271fb6",  # x-braze-api-key (per app)
    "ca31cefc4a50493594c1b79512a59ff0",  # sentry_key (per project)
    "iNUbh9H6nAtrPPg6mXzXwT",  # AppsFlyer devkey (per developer)
    "7e62baf741b90442a9cffb839db7bfe4537b627a",  # Crashlytics instance: a hash of the app build
    "b37a24718e8c1e67ae26a8a79ae53ef3e119f521",  # icon_hash
    "43f4edeb67a4f6f0623b79c3b9809879",  # a per-event data_block_id (one of several)
    "023f7be8c8f9838f0531a6151324b63e46fceab2",  # a release hash in a path
    "5c604af47bf413001dbbb758",  # an asset ID in a path
    "1346929395371293",  # a Facebook app ID
    "1:294403164518:android:782b45c944f15853",  # a Firebase app ID
}
REAL_UNLABELLED = {"FFE869A2-33AD-A54A-BEC0-7210D03C835B-2594D63D"}


def real(corpus: Path) -> Labelled:
    out = Labelled(
        positives=set(REAL_POSITIVES), negatives=set(REAL_NEGATIVES), unlabelled=set(REAL_UNLABELLED)
    )
    for name in ("test_even.json", "test_uneven.json"):
        records = json.loads((corpus / "json" / "nomoads" / name).read_text(encoding="utf-8"))
        for key, record in records.items():
            headers = [(h, v) for h, v in record["headers"].items() if h != "host"]
            out.exchanges.append(
                _exchange(
                    record["host"],
                    record["method"],
                    record["uri"],
                    headers,
                    b"",
                    float(record["ts"]),
                    f"nomoads {key}",
                )
            )
    _format, events = read_input(corpus / "pcap" / "ndpi" / "ocs.pcap")
    out.exchanges.extend(e for e in events if isinstance(e, Exchange) and e.protocol == "http")
    return out


# --- generated requests -----------------------------------------------------------------------------------


def _luhn_number(rng: random.Random, prefix: str, length: int) -> str:
    body = prefix + "".join(rng.choice("0123456789") for _ in range(length - len(prefix) - 1))
    return body + luhn_check_digit(body)


def _not_luhn(rng: random.Random, length: int) -> str:
    number = _luhn_number(rng, rng.choice("123456789"), length)
    return number[:-1] + str((int(number[-1]) + rng.randint(1, 9)) % 10)


def _hex(rng: random.Random, digits: int) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(digits))


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _mac(rng: random.Random, sep: str, upper: bool) -> str:
    octets = [rng.randrange(256) for _ in range(6)]
    octets[0] &= 0xFC  # unicast, globally administered: a real vendor address
    text = sep.join(f"{o:02x}" for o in octets)
    return text.upper() if upper else text


def _token(rng: random.Random, size: int) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    while True:
        text = "".join(rng.choice(alphabet) for _ in range(size))
        if sum(c.isdigit() for c in text) >= 3:
            return text


@dataclass
class _Device:
    imei: str
    imei2: str
    imsi: str
    iccid: str
    wifi_mac: str
    bt_mac: str
    ad_id: str
    android_id: str
    email: str
    phone: str
    phone_national: str
    installs: list[str]
    vendor_id: str
    serial_hash: str


def _device(rng: random.Random) -> _Device:
    while True:
        imsi = "40410" + "".join(rng.choice("0123456789") for _ in range(10))
        if not imsi.endswith(luhn_check_digit(imsi[:-1])):
            break
    national = "9" + "".join(rng.choice("0123456789") for _ in range(9))
    imei = _luhn_number(rng, "35", 15)
    return _Device(
        imei=imei,
        imei2=_luhn_number(rng, "86", 15),
        imsi=imsi,
        iccid=_luhn_number(rng, "899110", 19),
        wifi_mac=_mac(rng, ":", False),
        bt_mac=_mac(rng, "-", True),
        ad_id=_uuid(rng),
        android_id=_hex(rng, 16),
        email=f"r.sharma{rng.randint(10, 99)}@gmail.com",
        phone="+91" + national,
        phone_national=national,
        installs=[_uuid(rng) for _ in range(4)],
        vendor_id=hashlib.md5(imei.encode()).hexdigest(),
        serial_hash=hashlib.sha1(_token(rng, 11).encode()).hexdigest(),
    )


@dataclass
class _Sdk:
    host: str
    path: str
    method: str
    style: str  # query, form, json, xml
    ids: list[tuple[str, str, str]]  # (where: field|header|cookie, key, device attribute or literal)


def _sdks(d: _Device) -> list[_Sdk]:
    return [
        _Sdk(
            "t.adnet-one.com",
            "/v2/track",
            "POST",
            "json",
            [
                ("field", "gaid", d.ad_id),
                ("field", "imei", d.imei),
                ("field", "install_id", d.installs[0]),
            ],
        ),
        _Sdk(
            "api.metrics-two.io",
            "/collect",
            "GET",
            "query",
            [
                ("field", "aid", d.android_id),
                ("field", "u", d.ad_id),
                ("field", "m", d.wifi_mac),
            ],
        ),
        _Sdk(
            "sdk.pushcorp.net",
            "/register",
            "POST",
            "form",
            [
                ("field", "deviceToken", d.installs[1]),
                ("field", "p1", d.imsi),
                ("field", "p2", d.iccid),
                ("field", "android_id", d.android_id),
            ],
        ),
        _Sdk(
            "log.vendor-os.cn",
            "/api/report",
            "POST",
            "json",
            [
                ("field", "d", d.imei2),
                ("field", "vid", d.vendor_id),
                ("field", "mobile", d.phone_national),
                ("field", "bt", d.bt_mac),
            ],
        ),
        _Sdk(
            "account.login-service.com",
            "/v1/session",
            "POST",
            "json",
            [
                ("field", "email", d.email),
                ("field", "msisdn", d.phone),
                ("field", "hw", d.serial_hash),
            ],
        ),
        _Sdk(
            "ads.exchange-three.com",
            "/bid",
            "POST",
            "json",
            [
                ("field", "ifa", d.ad_id),
                ("field", "dpidmd5", hashlib.md5(d.android_id.encode()).hexdigest()),
                ("field", "dpidsha1", hashlib.sha1(d.android_id.encode()).hexdigest()),
            ],
        ),
        _Sdk(
            "crash.reporter-four.com",
            "/spi/events",
            "POST",
            "json",
            [
                ("header", "x-install-uuid", d.installs[2]),
                ("field", "user", d.email),
            ],
        ),
        _Sdk(
            "cfg.game-backend.io",
            "/config",
            "GET",
            "query",
            [
                ("cookie", "uid", d.installs[3]),
                ("field", "contact", d.phone),
            ],
        ),
        _Sdk(
            "drm.media-five.tv",
            "/license",
            "POST",
            "xml",
            [
                ("field", "serialNumber", d.serial_hash),
                ("field", "wifiMac", d.wifi_mac.upper()),
                ("field", "sim", d.iccid),
            ],
        ),
        _Sdk(
            "geo.maps-six.com",
            "/v1/nearby",
            "GET",
            "query",
            [
                ("field", "client", d.installs[0]),
                ("field", "dev", d.imei),
            ],
        ),
    ]


def _noise(rng: random.Random, sdk_index: int, session: str, app_key: str, t: float) -> list[tuple[str, str]]:
    """Look-alike fields for one request: per request, per session and per app."""
    names = [
        ("request_id", "rid", "nonce", "r", "event_uuid")[sdk_index % 5],
        ("sig", "signature", "h", "hmac", "x")[sdk_index % 5],
        ("order", "ref", "txn", "seq_no", "n")[sdk_index % 5],
    ]
    return [
        (names[0], _uuid(rng)),  # a UUID nonce, new on every request
        (names[1], _hex(rng, 40) if sdk_index % 2 else _hex(rng, 64)),  # a per-request signature
        (names[2], _not_luhn(rng, 15)),  # a 15-digit number that is no IMEI
        ("ts", str(int(t * 1000)) if sdk_index % 2 else str(int(t))),
        ("t_iso", "2019-02-21T18:41:04Z"),
        ("sdk_version", ("4.8.14", "2.0.2", "10.3.1-beta", "7.1.1", "1.4.3.27")[sdk_index % 5]),
        ("app_version", f"{sdk_index + 1}.{rng.randint(0, 9)}.{rng.randint(0, 99)}"),
        ("build", str(rng.randint(10_000_000, 99_999_999))),
        ("price", f"{rng.randint(1, 99)}.{rng.randint(0, 99):02d}"),
        ("lat", f"{rng.uniform(-60, 60):.6f}"),
        ("lng", f"{rng.uniform(-170, 170):.6f}"),
        (("session", "sessionToken", "s", "sess", "session_id")[sdk_index % 5], session),
        (("api_key", "appKey", "k", "key", "devkey")[sdk_index % 5], app_key),
        ("bundle", "com.example.shop"),
        ("device_model", "Nexus 6"),
        ("mac", "02:00:00:00:00:00"),  # what Android 6+ gives apps instead of the real MAC
        ("lat_ad_id", "00000000-0000-0000-0000-000000000000"),  # the ad ID with ad tracking limited
        # a hash of an empty body, the same on every phone and to every host
        ("body_sha1", "da39a3ee5e6b4b0d3255bfef95601890afd80709" if sdk_index % 3 else _hex(rng, 40)),
        (
            "oauth_client_id",
            f"{rng.randint(10**11, 10**12)}-{_token(rng, 20).lower()}.apps.googleusercontent.com",
        ),
    ]


def _encode(style: str, items: list[tuple[str, str]]) -> tuple[str, bytes, list[tuple[str, str]]]:
    """(query, body, extra headers) carrying ``items`` in ``style``."""
    from urllib.parse import urlencode

    if style == "query":
        return "?" + urlencode(items), b"", []
    if style == "form":
        return "", urlencode(items).encode(), [("content-type", "application/x-www-form-urlencoded")]
    if style == "json":
        inner = dict(items[: len(items) // 2])
        outer: dict[str, object] = dict(items[len(items) // 2 :])
        outer["device"] = inner
        return "", json.dumps(outer).encode(), [("content-type", "application/json")]
    params = "".join(f'<param name="{k}" value="{v}"/>' for k, v in items)
    return "", f'<?xml version="1.0"?><request>{params}</request>'.encode(), [("content-type", "text/xml")]


def _requests(rng: random.Random, d: _Device, start: float) -> Iterator[Exchange]:
    app_keys = [_hex(rng, 32) for _ in range(10)]
    t = start
    for session_number in range(3):
        sessions = [_token(rng, 24) for _ in range(10)]
        for repeat in range(2):
            for index, sdk in enumerate(_sdks(d)):
                t += rng.uniform(0.5, 30.0)
                fields: list[tuple[str, str]] = []
                headers: list[tuple[str, str]] = [
                    ("user-agent", "Dalvik/2.1.0 (Linux; U; Android 7.1.1; Nexus 6 Build/N6F27M)")
                ]
                cookies: list[str] = []
                for where, key, value in sdk.ids:
                    if where == "field":
                        fields.append((key, value))
                    elif where == "header":
                        headers.append((key, value))
                    else:
                        cookies.append(f"{key}={value}")
                fields.extend(_noise(rng, index, sessions[index], app_keys[index], t))
                rng.shuffle(fields)
                query, body, extra = _encode(sdk.style, fields)
                headers.extend(extra)
                cookies.append(f"_sess={sessions[index]}")
                headers.append(("cookie", "; ".join(cookies)))
                flow = f"tcp 10.0.0.2:{40000 + session_number * 100 + index}>{sdk.host}:443 #{repeat}"
                yield _exchange(sdk.host, sdk.method, sdk.path + query, headers, body, t, flow)


def generated(seed: int = 2016) -> Labelled:
    rng = random.Random(seed)
    device = _device(rng)
    out = Labelled()
    out.exchanges = list(_requests(rng, device, 1_550_772_000.0))
    for sdk in _sdks(device):
        out.positives.update(value for _where, _key, value in sdk.ids)
    # Every other value the requests carry is a negative; the test collects them from the fields.
    return out
