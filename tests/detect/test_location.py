"""Coordinates near a declared place, in every number format, and the profile tables that declare them."""

from __future__ import annotations

import base64
import gzip
import json
import math
import struct

import pytest

from factories import exchange
from phonehome.audit import Auditor
from phonehome.detect.location import LocationFinder, haversine_m, precision_m
from phonehome.errors import InputError
from phonehome.model import WHERE_BODY, WHERE_QUERY
from phonehome.profile import Place, parse_profile

HOME = Place("home", 52.520008, 13.404954, 150.0)
FINDER = LocationFinder([HOME, Place("work", -33.856784, 151.215297, 50.0)])


def _offset(lat: float, lon: float, north_m: float) -> tuple[float, float]:
    return lat + north_m / 111_194.93, lon  # metres along a meridian on the mean-radius sphere


def _pb_double(field: int, value: float) -> bytes:
    return bytes([field << 3 | 1]) + struct.pack("<d", value)


def _pb_float(field: int, value: float) -> bytes:
    return bytes([field << 3 | 5]) + struct.pack("<f", value)


def _pb_varint(field: int, value: int) -> bytes:
    out = bytearray([field << 3])
    value &= (1 << 64) - 1
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _pb_sfixed32(field: int, value: int) -> bytes:
    return bytes([field << 3 | 5]) + struct.pack("<i", value)


def _pb_len(field: int, payload: bytes) -> bytes:
    return bytes([field << 3 | 2, len(payload)]) + payload


# (bytes as sent, expected encoding, expected precision_m rounded)
FORMATS = [
    (b"lat=52.5200&lng=13.4050", "decimal(4dp)", 11.1),
    (b'{"latitude": 52.520008, "longitude": 13.404954}', "decimal(6dp)", 0.111),
    (b'{"loc": {"lat": "52.52", "lon": "13.40"}}', "decimal(2dp)", 1110.0),
    (b"ll=52.520,13.405&z=14", "decimal(3dp)", 111.0),
    (b"geo=52.5201%2C13.4049", "url(decimal(4dp))", 11.1),
    (b'{"type":"Point","coordinates":[13.404954,52.520008]}', "decimal(6dp)", 0.111),
    (b"<lat>52.52001</lat><lon>13.40496</lon>", "decimal(5dp)", 1.11),
    (b'<param name="la" value="52.5200"/><param name="lo" value="13.4050"/>', "decimal(4dp)", 11.1),
    (b"latE7=525200080&lngE7=134049540", "e7", 0.111),
    (b"latitudeE7=525200000&longitudeE7=134050000", "e7", 1110.0),
    (b'{"la": 52520008, "lo": 13404954}', "microdegrees", 0.111),
    (b"pos=52520008,13404954", "microdegrees", 0.111),
    (_pb_double(1, 52.520008) + _pb_double(2, 13.404954), "protobuf double", 0.111),
    (_pb_float(3, 52.52) + _pb_float(4, 13.405), "protobuf float", 1110.0),
    (_pb_varint(1, 525200080) + _pb_varint(2, 134049540), "protobuf varint e7", 0.111),
    (_pb_sfixed32(1, 525200080) + _pb_sfixed32(2, 134049540), "protobuf sfixed32 e7", 0.111),
    (
        _pb_varint(5, 7) + _pb_len(6, _pb_double(1, 52.520008) + _pb_double(2, 13.404954)),
        "protobuf double",
        0.111,
    ),
    (base64.b64encode(_pb_double(1, 52.520008) + _pb_double(2, 13.404954)), "base64(protobuf double)", 0.111),
    (
        gzip.compress(json.dumps({"lat": 52.5200, "lng": 13.4050}).encode(), mtime=0),
        "gzip(decimal(2dp))",
        1110.0,
    ),
]


@pytest.mark.parametrize(("data", "encoding", "precision"), FORMATS)
def test_every_number_format_is_found(data: bytes, encoding: str, precision: float) -> None:
    hits = [h for h in FINDER.scan(data) if h.place == "home"]
    assert [h.encoding for h in hits] == [encoding]
    assert hits[0].precision_m == pytest.approx(precision, rel=0.01)
    assert hits[0].distance_m <= HOME.radius_m + math.sqrt(2) * hits[0].precision_m


def test_negative_coordinates_in_the_southern_and_eastern_hemispheres() -> None:
    hits = FINDER.scan(b"lat=-33.856784&lon=151.215297")
    assert [(h.place, h.encoding, h.form) for h in hits] == [("work", "decimal(6dp)", "keyed")]
    neg = _pb_varint(1, -338567840) + _pb_varint(2, 1512152970)
    assert [h.encoding for h in FINDER.scan(neg)] == ["protobuf varint e7"]


@pytest.mark.parametrize(("north_m", "found"), [(0.0, True), (149.0, True), (151.0, False), (-151.0, False)])
def test_radius_edge_at_full_precision(north_m: float, found: bool) -> None:
    lat, lon = _offset(HOME.latitude, HOME.longitude, north_m)
    text = f"lat={lat:.7f}&lng={lon:.7f}".encode()  # 1.1 cm steps: the radius alone decides
    assert bool(FINDER.scan(text)) is found
    assert abs(haversine_m(lat, lon, HOME.latitude, HOME.longitude) - abs(north_m)) < 0.5


def test_radius_edge_widens_by_the_precision_sent() -> None:
    # 52.52, 13.40 is 338 m from home: outside 150 m at full precision, but a two-decimal value is a
    # 1.1 km cell that reaches the place, so it is a leak, reported with its coarse precision.
    assert FINDER.scan(b"lat=52.5172&lng=13.4000") == []
    (hit,) = FINDER.scan(b"lat=52.52&lng=13.40")
    assert hit.distance_m == pytest.approx(338, abs=5) and hit.precision_m == pytest.approx(1113.2)


@pytest.mark.parametrize(
    "data",
    [
        b"lat=48.137154&lng=11.576124",  # Munich, not home
        b'{"latitude": 13.404954, "longitude": 52.520008}',  # keys swapped: a point in the Indian Ocean
        b"v=52.52.1&w=13.40.2",  # versions
        b"ip=52.52.13.40",
        b"lat=52&lng=13",  # no decimals: nothing to go on
        b"x=52.5,13.4",  # bare pair with one decimal: too coarse to tell from other numbers
        b"price=52.52&qty=13.40&build=525200080",
        _pb_double(1, 48.137154) + _pb_double(2, 11.576124),
        b"",
    ],
)
def test_coordinates_that_are_not_the_device_s_are_not_findings(data: bytes) -> None:
    assert FINDER.scan(data) == []


def test_hostile_binary_is_bounded_and_quiet() -> None:
    for data in (b"\xff" * 64, b"\x0a\xff\xff\xff\xff\x0f", bytes(range(256)) * 8, b"\x09" + b"\x00" * 3):
        assert FINDER.scan(data) == []


PROFILE = """\
[device]
name = "t"
[identifiers]
imei = "865123456789019"
[network]
bssid = "02:1a:11:f0:aa:b4"
ssid = "Sharma Home"
cell_id = 26975210
lac = "0x1F4A"
[location.home]
latitude = 52.520008
longitude = 13.404954
radius_m = 150
[location.work]
latitude = -33.856784
longitude = 151.215297
"""


def test_profile_declares_places_and_network_identifiers() -> None:
    profile = parse_profile(PROFILE, "p.toml")
    assert profile.places == (
        Place("home", 52.520008, 13.404954, 150.0),
        Place("work", -33.856784, 151.215297, 100.0),
    )
    kinds = {i.label: (i.kind, i.category, i.value) for i in profile.identifiers}
    assert kinds["bssid"] == ("mac", "network", "02:1a:11:f0:aa:b4")
    assert kinds["ssid"] == ("text", "network", "Sharma Home")
    assert kinds["cell_id"] == ("cell", "location", "26975210")
    assert kinds["lac"] == ("cell", "location", "8010")
    single = parse_profile("[location]\nlatitude = 1.5\nlongitude = 2.5\n", "p.toml")
    assert single.places == (Place("location", 1.5, 2.5, 100.0),)
    listed = parse_profile("[[location]]\nlatitude = 1.5\nlongitude = 2.5\nname = 'gym'\n", "p.toml")
    assert listed.places == (Place("gym", 1.5, 2.5, 100.0),)


@pytest.mark.parametrize(
    ("text", "key", "message"),
    [
        ("[location]\nlatitude = 91\nlongitude = 0\n", "location.latitude", "outside -90 to 90"),
        ("[location]\nlatitude = 1\n", "location", "missing longitude"),
        ("[location.home]\nlatitude = '52'\nlongitude = 0\n", "location.home.latitude", "not a string"),
        ("[[location]]\nlatitude = 1\nlongitude = 1\nradius_m = 0\n", "location[0].radius_m", "above 0"),
        ("[location]\nlatitude = 1\nlongitude = 1\nalt = 3\n", "location.alt", "unknown key"),
        ("[network]\nimei = '865123456789019'\n", "network.imei", "unknown key"),
        ("[network]\ncell_id = 'abc'\n", "network.cell_id", "must be"),
    ],
)
def test_bad_places_and_network_values_are_refused_with_their_key(text: str, key: str, message: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_profile(text, "p.toml")
    assert caught.value.key == key
    assert message.replace("not a string", "must be a number, not a string") in str(caught.value)


def test_audit_reports_location_and_network_findings() -> None:
    profile = parse_profile(PROFILE, "p.toml")
    ex = exchange(
        (WHERE_QUERY, b"lat=52.5201&lng=13.4049&bssid=021A11F0AAB4&cid=26975210"),
        (WHERE_BODY, _pb_double(1, -33.8568) + _pb_double(2, 151.2153)),
        host="geo.example.com",
    )
    found = Auditor(profile, "aho-corasick").findings(ex, [])
    by_id = {f.identifier: f for f in found}
    home = by_id["location.home"]
    assert (home.category, home.encoding, home.where) == ("location", "decimal(4dp)", "query")
    assert home.extra["precision_m"] == "11.1" and float(home.extra["distance_m"]) < 20
    assert by_id["location.work"].encoding == "protobuf double"
    assert by_id["bssid"].category == "network" and by_id["cell_id"].category == "location"


def test_precision_table() -> None:
    assert precision_m(2) == pytest.approx(1113.2) and precision_m(7) == pytest.approx(0.011132)
