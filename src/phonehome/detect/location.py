"""Find the phone's position in what it sent: coordinates near a declared place, in any number format.

A position is never sent as an exact string: it is a pair of numbers in some precision and some
encoding. :class:`LocationFinder` is sans-I/O (bytes in, hits out). It reads numbers from one part
in three ways, each a table entry:

- **text**: decimal degrees in any precision (``52.5200``), integer micro-degrees (``52520000``)
  and E7 (``525200000``), as JSON values, query or form parameters, XML, or bare ``lat,lon`` pairs;
- **protobuf**: a bounded walk over protobuf wire format (varint, fixed32, fixed64 and nested
  messages), reading doubles, floats and integer E7/micro-degrees;
- and the same on every layer :func:`~phonehome.detect.decoders.peel` takes off (URL-encoding,
  base64, gzip, ...), so a base64 protobuf position is found too.

Numbers are paired by their keys (``lat``/``lng``, ``latitude``/``longitude``, ``latE7``, ...) or,
without keys, as neighbours in the order sent, tried both ways round (GeoJSON writes ``[lon, lat]``).

**When a pair is a leak.** A pair leaks a place when its great-circle (haversine) distance to the
place is at most ``radius_m`` plus the uncertainty of the sent value itself: √2 × one step of its
precision (a full step on both axes), since apps round *or truncate*. A value sent with two
decimals is a cell about 1.1 km across, and it says the phone is in that cell; it leaks the place
when the cell reaches within the radius. The precision of what was sent is reported in metres
(``precision_m``: one step of the last digit sent, along a meridian; 2 decimals ≈ 1.1 km, E7 ≈
1.1 cm) so a reader sees how much the value pins down. Bare pairs without keys need at least two
decimals (or an integer encoding) to count, as coarser neighbours are too often something else.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from phonehome.attribute.destination import Destination
from phonehome.detect.decoders import Budget, peel
from phonehome.detect.scan import escape_bytes, wrap_chain
from phonehome.model import Exchange, Finding
from phonehome.profile import Place

__all__ = ["LocationFinder", "LocationHit", "haversine_m", "precision_m"]

EARTH_RADIUS_M = 6_371_008.8  # IUGG mean Earth radius
METRES_PER_DEGREE = 111_320.0  # one degree of latitude, about; the unit precision is stated in
MAX_PAIR_GAP = 24  # bytes between two unkeyed neighbours ("52.52, 13.40", "52.52%2C13.40", "],[")
MAX_KEYED_GAP = 400  # bytes between a keyed latitude and its longitude
MAX_PROTOBUF = 1 << 20  # bytes of one view walked as protobuf
MAX_PROTOBUF_DEPTH = 8
EVIDENCE_CONTEXT = 24

# Key names (lower case, letters and digits only) that say a number is a latitude or a longitude;
# E7/E6 suffixes are removed before looking up.
_LAT_KEYS = frozenset({"lat", "latitude", "la", "lt", "glat", "gpslat", "userlat", "devicelat", "mylat"})
_LON_KEYS = frozenset(
    {"lon", "lng", "long", "longitude", "lo", "ln", "glon", "glng", "gpslon", "gpslng", "userlng", "userlon"}
)
_SCALE_SUFFIXES = ("e7", "e6", "micro", "microdegrees")

# A number in text; the look-behind and look-ahead keep it from being the middle of a longer token
# (a version "1.2.3", a hex string, an IP address).
_NUMBER = re.compile(rb"(?<![\w.\-])-?(?:\d{1,3}\.\d{1,17}|\d{6,10})(?![\w.]|-\d)")
# The key a number travels under, right before it: "lat": 52.1, lat=52.1, lat: 52.1, <lat>52.1,
# name="lat" value="52.1".
_KEY_BEFORE = re.compile(
    rb"(?:([A-Za-z_][\w.\-]{0,40})[\"']?\s*[:=]\s*[\"']?"
    rb"|<([A-Za-z_][\w.\-]{0,40})[^<>]{0,80}>\s*"
    rb"|name=[\"']([\w.\-]{1,40})[\"']\s+value=[\"'])\Z"
)


@dataclass(frozen=True, slots=True)
class LocationHit:
    """A pair of numbers that places the phone near a declared place."""

    place: str  # Place.name
    latitude: float
    longitude: float
    distance_m: float  # from the sent point to the place
    precision_m: float  # one step of the sent value's last digit, in metres of latitude
    encoding: str  # "decimal(4dp)", "e7", "microdegrees", "protobuf double", "base64(protobuf float)"
    form: str  # "keyed", "lat,lon" or "lon,lat"
    evidence: str


@dataclass(frozen=True, slots=True)
class _Number:
    value: float  # in degrees, after the scale
    decimals: int  # decimal places that carry information
    start: int
    end: int
    key: str | None  # "lat", "lon" or None
    encoding: str
    named: bool = False  # travels under a key of its own (any key), so it is no bare neighbour


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres on a sphere of the mean Earth radius."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def precision_m(decimals: int) -> float:
    """Metres one step of the last decimal of a value in degrees pins down (along a meridian)."""
    return METRES_PER_DEGREE * 10.0 ** -max(decimals, 0)


def _key_kind(raw: bytes | None) -> str | None:
    if not raw:
        return None
    key = re.sub(rb"[^a-z0-9]", b"", raw.lower().rsplit(b".", 1)[-1]).decode("ascii")
    for suffix in _SCALE_SUFFIXES:
        if key.endswith(suffix) and len(key) > len(suffix):
            key = key[: -len(suffix)]
            break
    if key in _LAT_KEYS or key.endswith("latitude"):
        return "lat"
    if key in _LON_KEYS or key.endswith("longitude"):
        return "lon"
    return None


def _integer_decimals(value: int, scale_digits: int) -> int:
    """Decimals carried by an integer of 10^-scale_digits degrees: its trailing zeros are rounding."""
    text = str(abs(value))
    zeros = len(text) - len(text.rstrip("0"))
    return max(scale_digits - zeros, 0)


# Integer encodings of degrees: (name, digits of scale).
_INTEGER_SCALES = (("e7", 7), ("microdegrees", 6))


def _text_numbers(data: bytes) -> list[list[_Number]]:
    """Numbers in text, one list per reading: decimal degrees, then each integer scale."""
    decimal: list[_Number] = []
    scaled: dict[str, list[_Number]] = {name: [] for name, _ in _INTEGER_SCALES}
    for m in _NUMBER.finditer(data):
        token = m.group()
        key_match = _KEY_BEFORE.search(data, max(0, m.start() - 140), m.start())
        key, named = None, key_match is not None
        if key_match is not None:
            key = _key_kind(key_match.group(1) or key_match.group(2) or key_match.group(3))
        if b"." in token:
            decimals = len(token) - token.index(b".") - 1
            decimal.append(
                _Number(float(token), decimals, m.start(), m.end(), key, f"decimal({decimals}dp)", named)
            )
            continue
        number = int(token)
        for name, digits in _INTEGER_SCALES:
            scaled[name].append(
                _Number(
                    number / 10**digits,
                    _integer_decimals(number, digits),
                    m.start(),
                    m.end(),
                    key,
                    name,
                    named,
                )
            )
    return [decimal, *scaled.values()]


def _pairs(numbers: Sequence[_Number], max_gap: int) -> Iterator[tuple[_Number, _Number, str]]:
    """(latitude, longitude, form) candidates: keyed pairs, and unkeyed neighbours both ways round."""
    for i, lat in enumerate(numbers):
        if lat.key == "lat":
            keyed = [n for n in numbers if n.key == "lon" and abs(n.start - lat.start) <= MAX_KEYED_GAP]
            best = min(keyed, key=lambda n: abs(n.start - lat.start), default=None)
            if best is not None:
                yield lat, best, "keyed"
        if i + 1 < len(numbers):
            nxt = numbers[i + 1]
            # "ll=52.52,13.40" and "[13.40, 52.52]" are pairs; "price=52.52&qty=13.40" is not.
            if lat.key is None and nxt.key is None and not nxt.named and nxt.start - lat.end <= max_gap:
                yield lat, nxt, "lat,lon"
                yield nxt, lat, "lon,lat"


# --- protobuf wire format (protobuf.dev/programming-guides/encoding) -------------------------------------

_WIRE_VARINT, _WIRE_I64, _WIRE_LEN, _WIRE_I32 = 0, 1, 2, 5


class _NotProtobuf(Exception):
    pass


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise _NotProtobuf
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _float_decimals(value: float, packed: bytes, fmt: str) -> int:
    """Decimals of the shortest decimal that encodes to the same float (what the app had)."""
    for decimals in range(0, 18):
        if struct.pack(fmt, round(value, decimals)) == packed:
            return decimals
    return 17


def _message(data: bytes, depth: int, out: list[list[_Number]]) -> None:
    """Walk one message; append its numeric fields (one list per reading) to ``out``; raise if not one."""
    readings: dict[str, list[_Number]] = {}
    nested: list[bytes] = []
    pos = 0
    while pos < len(data):
        start = pos
        tag, pos = _varint(data, pos)
        field, wire = tag >> 3, tag & 7
        if field == 0:
            raise _NotProtobuf
        if wire == _WIRE_VARINT:
            raw, pos = _varint(data, pos)
            signed = raw - (1 << 64) if raw >> 63 else raw  # int32/int64 (negative: ten bytes)
            zigzag = (raw >> 1) ^ -(raw & 1)  # sint32/sint64
            for reading, number in (("varint", signed), ("zigzag varint", zigzag)):
                for name, digits in _INTEGER_SCALES:
                    readings.setdefault(f"protobuf {reading} {name}", []).append(
                        _Number(
                            number / 10**digits,
                            _integer_decimals(number, digits),
                            start,
                            pos,
                            None,
                            f"protobuf {reading} {name}",
                        )
                    )
        elif wire in (_WIRE_I64, _WIRE_I32):
            size, fmt, int_fmt = (8, "<d", "<q") if wire == _WIRE_I64 else (4, "<f", "<i")
            if pos + size > len(data):
                raise _NotProtobuf
            packed = data[pos : pos + size]
            pos += size
            value = struct.unpack(fmt, packed)[0]
            name = "protobuf double" if wire == _WIRE_I64 else "protobuf float"
            if math.isfinite(value):
                readings.setdefault(name, []).append(
                    _Number(value, _float_decimals(value, packed, fmt), start, pos, None, name)
                )
            number = struct.unpack(int_fmt, packed)[0]
            for scale, digits in _INTEGER_SCALES:
                fixed = f"protobuf sfixed{size * 8} {scale}"
                readings.setdefault(fixed, []).append(
                    _Number(number / 10**digits, _integer_decimals(number, digits), start, pos, None, fixed)
                )
        elif wire == _WIRE_LEN:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise _NotProtobuf
            nested.append(data[pos : pos + length])
            pos += length
        else:  # groups (3, 4) are long deprecated; 6 and 7 do not exist
            raise _NotProtobuf
    out.extend(readings.values())
    if depth < MAX_PROTOBUF_DEPTH:
        for inner in nested:
            if len(inner) >= 2:
                sub: list[list[_Number]] = []
                try:
                    _message(inner, depth + 1, sub)
                except _NotProtobuf:
                    continue
                out.extend(sub)


def _protobuf_numbers(data: bytes) -> list[list[_Number]]:
    if len(data) > MAX_PROTOBUF or not data:
        return []
    out: list[list[_Number]] = []
    try:
        _message(data, 0, out)
    except _NotProtobuf:
        return []
    return out


def _is_binary(data: bytes) -> bool:
    return any(b < 0x09 or 0x0D < b < 0x20 for b in data[:4096])


class LocationFinder:
    """The declared places, and the scan of one part's bytes for coordinates near them."""

    def __init__(self, places: Sequence[Place]) -> None:
        self.places = tuple(places)

    def scan(self, data: bytes) -> list[LocationHit]:
        """Hits in ``data`` and in every layer peeled from it; the finest per place and encoding."""
        if not self.places or not data:
            return []
        best: dict[tuple[str, str], LocationHit] = {}
        # A point is reported in the shallowest view that shows it: URL-decoding a query that
        # already showed "52.52,13.40" adds nothing.
        points: set[tuple[str, float, float]] = set()
        views: list[tuple[tuple[str, ...], bytes]] = [((), data)]
        views.extend(peel(data, Budget()))
        for chain, view in views:
            for hit in self._scan_view(view, chain):
                point = (hit.place, hit.latitude, hit.longitude)
                if point in points and chain:
                    continue
                points.add(point)
                key = (hit.place, hit.encoding)
                if key not in best or hit.precision_m < best[key].precision_m:
                    best[key] = hit
        return list(best.values())

    def _scan_view(self, data: bytes, chain: tuple[str, ...]) -> Iterator[LocationHit]:
        readings: list[tuple[list[_Number], int]] = [
            (numbers, MAX_PAIR_GAP) for numbers in _text_numbers(data)
        ]
        if _is_binary(data):
            # Adjacent fields of one message: a gap of a tag byte or two at most.
            readings.extend((numbers, 2) for numbers in _protobuf_numbers(data))
        for numbers, gap in readings:
            for lat, lon, form in _pairs(numbers, gap):
                if form != "keyed" and min(lat.decimals, lon.decimals) < 2:
                    continue
                yield from self._match(data, chain, lat, lon, form)

    def _match(
        self, data: bytes, chain: tuple[str, ...], lat: _Number, lon: _Number, form: str
    ) -> Iterator[LocationHit]:
        if not (-90.0 <= lat.value <= 90.0 and -180.0 <= lon.value <= 180.0):
            return
        step = precision_m(min(lat.decimals, lon.decimals))
        for place in self.places:
            distance = haversine_m(lat.value, lon.value, place.latitude, place.longitude)
            if distance <= place.radius_m + math.sqrt(2) * step:
                start, end = min(lat.start, lon.start), max(lat.end, lon.end)
                lo, hi = max(0, start - EVIDENCE_CONTEXT), min(len(data), end + EVIDENCE_CONTEXT)
                evidence = (
                    ("…" if lo else "")
                    + escape_bytes(data[lo:start])
                    + "«"
                    + escape_bytes(data[start:end])
                    + "»"
                    + escape_bytes(data[end:hi])
                    + ("…" if hi < len(data) else "")
                )
                yield LocationHit(
                    place.name,
                    lat.value,
                    lon.value,
                    distance,
                    step,
                    wrap_chain(chain, lat.encoding),
                    form,
                    evidence,
                )

    def findings(
        self, exchange: Exchange, describe: Callable[[str | None, str], Destination]
    ) -> list[Finding]:
        """One finding per place, part and encoding in what the exchange sent; ``describe`` names the
        destination (:meth:`phonehome.attribute.destination.Destinations.describe`)."""
        out: list[Finding] = []
        if not self.places:
            return out
        for part in exchange.parts:
            for hit in self.scan(part.data):
                dest = describe(exchange.host, exchange.server_ip)
                label = hit.place if hit.place.startswith("location") else f"location.{hit.place}"
                out.append(
                    dest.finding(
                        exchange,
                        identifier=label,
                        category="location",
                        encoding=hit.encoding,
                        where=part.where,
                        evidence=hit.evidence,
                        form=hit.form,
                        extra={
                            "precision_m": f"{hit.precision_m:.3g}",
                            "distance_m": f"{hit.distance_m:.0f}",
                            "latitude": repr(hit.latitude),
                            "longitude": repr(hit.longitude),
                        },
                    )
                )
        return out
