"""Country lookups: layered sources in order, each answer naming its source; none for private space."""

from __future__ import annotations

import ipaddress
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phonehome.attribute.geo import Geo, _prefix, cloud_ranges, cloud_regions, find_mmdb, regional_ranges
from phonehome.errors import InputError

MAXMIND = Path(__file__).parent / "data" / "maxmind"
TEST_DB = str(MAXMIND / "GeoLite2-Country-Test.mmdb")


@pytest.fixture(scope="module")
def geo() -> Geo:
    return Geo(discover=False)


@pytest.mark.parametrize(
    ("ip", "country"),
    [("42.62.48.171", "CN"), ("8.8.8.8", "US"), ("2001:4860:4860::8888", "US")],
)
def test_public_addresses_have_a_country_and_a_source(geo: Geo, ip: str, country: str) -> None:
    code, source = geo.country(ip)
    assert code == country
    assert source is not None and source.startswith("geolite2 20")


@pytest.mark.parametrize(
    "ip", ["10.0.0.1", "192.168.1.1", "fe80::1", "127.0.0.1", "100.64.0.1", "not-an-ip", ""]
)
def test_private_or_invalid_addresses_have_none(geo: Geo, ip: str) -> None:
    code, _source = geo.country(ip)
    assert code is None


@pytest.mark.parametrize(
    ("ip", "country", "source"),
    [
        ("13.232.0.1", "IN", "aws ip-ranges"),  # AWS Mumbai (ap-south-1), registered in the US
        ("2406:da1a::1", "IN", "aws ip-ranges"),  # AWS Mumbai over IPv6
        ("34.93.0.1", "IN", "gcp cloud.json"),  # Google Cloud asia-south1
        ("20.192.0.1", "IN", "azure service tags"),  # Azure centralindia
    ],
)
def test_cloud_region_ranges_place_cloud_addresses(geo: Geo, ip: str, country: str, source: str) -> None:
    code, said = geo.country(ip)
    assert code == country
    assert said is not None and said.startswith(source + " 20")


def test_cloud_range_names_provider_region_and_snapshot(geo: Geo) -> None:
    hit = geo.cloud("13.232.0.1")
    assert hit is not None
    assert (hit.provider, hit.owner, hit.region, hit.country) == (
        "aws",
        "Amazon Web Services",
        "ap-south-1",
        "IN",
    )
    assert hit.source == f"aws ip-ranges {cloud_ranges().date} ap-south-1"
    assert geo.cloud("10.0.0.1") is None and geo.cloud("42.62.48.171") is None


def test_anycast_ranges_fall_through_to_geolocation(geo: Geo) -> None:
    hit = geo.cloud("13.32.0.1")  # CloudFront, published under AWS's GLOBAL pseudo-region
    assert hit is not None and hit.region == "GLOBAL" and hit.country is None
    code, source = geo.country("13.32.0.1")
    assert code is not None and source is not None and source.startswith("geolite2")


def test_every_region_in_the_bundled_ranges_is_placed_or_listed_unplaced() -> None:
    providers = cloud_regions()
    ranges = cloud_ranges()
    missing = sorted(
        (p, r) for p, r in ranges.regions if r not in providers[p].regions and r not in providers[p].unplaced
    )
    assert missing == []
    for p in providers.values():
        assert all(len(c) == 2 and c.isupper() for c in p.regions.values())


def test_registry_is_the_last_resort(geo: Geo) -> None:
    # Allocated after the bundled GeoLite2 snapshot, so only the registry data knows it.
    assert geo.geolite2.country(ipaddress.ip_address("165.99.42.21")) is None
    code, source = geo.country("165.99.42.21")
    assert code == "CN"
    assert source is not None and source.startswith("rir iptocc ")


def test_a_user_mmdb_answers_before_the_bundled_database() -> None:
    geo = Geo(TEST_DB)
    assert geo.country("67.43.156.1") == ("BT", "mmdb GeoLite2-Country 2026-02-04")
    assert geo.country("2a02:d280::1")[0] == "CZ"
    # Cloud region ranges still come first: the provider says where it deployed the prefix.
    code, source = geo.country("13.232.0.1")
    assert code == "IN" and source is not None and source.startswith("aws ip-ranges")
    # Addresses the user's database lacks fall through to the bundled one.
    assert geo.country("42.62.48.171") == ("CN", geo.geolite2.source)


@pytest.mark.parametrize("name", ["invalid-bytes-length.mmdb", "README.md", "absent.mmdb"])
def test_a_bad_mmdb_named_by_the_user_fails_at_once(name: str) -> None:
    path = str(MAXMIND / name)
    with pytest.raises(InputError) as err:
        Geo(path)
    assert err.value.source == path


def test_a_damaged_data_section_falls_through_rather_than_failing() -> None:
    geo = Geo(str(MAXMIND / "libmaxminddb-oversized-map.mmdb"))
    code, source = geo.country("42.62.48.171")
    assert code == "CN" and source is not None and source.startswith("geolite2")


def test_an_impossible_build_time_is_reported_as_undated() -> None:
    geo = Geo(str(MAXMIND / "libmaxminddb-uint64-max-epoch.mmdb"))
    assert geo.mmdb is not None and geo.mmdb.source.endswith(" undated")


def test_mmdb_files_are_found_in_the_usual_places(tmp_path: Path) -> None:
    share, local = tmp_path / "share", tmp_path / "local"
    share.mkdir()
    local.mkdir()
    assert find_mmdb([str(share), str(local)]) is None
    shutil.copy(TEST_DB, local / "dbip-country-lite-2024-05.mmdb")
    shutil.copy(TEST_DB, local / "dbip-country-lite-2024-06.mmdb")
    assert find_mmdb([str(share), str(local)]) == str(local / "dbip-country-lite-2024-06.mmdb")
    shutil.copy(TEST_DB, share / "GeoLite2-City.mmdb")
    shutil.copy(TEST_DB, share / "GeoLite2-Country.mmdb")
    assert find_mmdb([str(share), str(local)]) == str(share / "GeoLite2-Country.mmdb")


@pytest.mark.parametrize(
    "cidr",
    [
        "1.178.1.0/24",
        "0.0.0.0/0",
        "203.0.113.7/32",
        "203.0.113.77/26",
        "2600:1f18::/36",
        "::/0",
        "2001:db8::1/128",
    ],
)
def test_cloud_prefix_parsing_agrees_with_ipaddress(cidr: str) -> None:
    net = ipaddress.ip_network(cidr, strict=False)
    bits = int(net.network_address) >> (net.max_prefixlen - net.prefixlen)
    assert _prefix(cidr) == (net.version, net.prefixlen, bits)


@pytest.mark.parametrize("cidr", ["1.2.3.0/33", "2001:db8::/129", "1.2.3/24", "1.2.3.4/-1"])
def test_cloud_prefix_parsing_rejects_what_is_not_a_prefix(cidr: str) -> None:
    with pytest.raises((ValueError, OSError)):
        _prefix(cidr)


def test_cloud_ranges_from_the_cache_answer_as_the_built_ones(tmp_path: Path) -> None:
    from phonehome.attribute.geo import CloudRanges

    built = CloudRanges(cache_dir=tmp_path)
    (entry,) = tmp_path.glob("cloud-*.bin")
    cached = CloudRanges(cache_dir=tmp_path)
    assert (cached.date, cached.regions) == (built.date, built.regions)
    sample = [net for i, (net, _p, _r) in enumerate(regional_ranges()) if i % 997 == 0]
    assert len(sample) > 20
    for net in sample:
        for addr in (net.network_address, net.broadcast_address):
            assert cached.lookup(addr) == built.lookup(addr)
    # A broken entry is built again, and gives the same answers.
    whole = entry.read_bytes()
    header = CloudRanges.MAGIC + b'{"date": "x", "values": [], "segments": [["regional", 4, 1]]}\n'
    for garbage in (b"", whole[:-3], header + bytes(20)):
        entry.write_bytes(garbage)
        again = CloudRanges(cache_dir=tmp_path)
        assert again.lookup(sample[0].network_address) == built.lookup(sample[0].network_address)


def test_the_flat_geolite2_table_answers_as_geoip2fast_does(tmp_path: Path) -> None:
    import random

    from geoip2fast import GeoIP2Fast

    from phonehome.attribute.geo import _geo_table

    reference = GeoIP2Fast(geoip2fast_data_file="geoip2fast-ipv6.dat.gz", verbose=False)

    def expected(value: int) -> str | None:
        code = reference.lookup(str(ipaddress.ip_address(value))).country_code
        return code if code and code != "--" else None

    built = _geo_table(tmp_path)  # built from geoip2fast, and saved
    assert list(tmp_path.glob("geolite2-*.bin"))
    mapped = _geo_table(tmp_path)  # read back from the cache
    assert mapped.source == built.source and mapped.source.startswith("geolite2 20")
    rng = random.Random(5)
    values = [rng.getrandbits(32) for _ in range(3000)] + [rng.getrandbits(128) for _ in range(3000)]
    for i in range(0, len(mapped.starts), 61):  # network edges, and the addresses either side
        first = int.from_bytes(mapped.starts[i], "big")
        values += [first, max(first - 1, 0), first + 1]
    values += [0, 0xFFFFFFFF, 0x1_0000_0000, (1 << 128) - 1]
    assert len(values) > 30_000
    for value in values:
        assert mapped.country(value) == expected(value), ipaddress.ip_address(value)
    assert sum(built.country(v) is not None for v in values) > len(values) // 4  # not all None


def test_a_broken_geolite2_table_in_the_cache_is_built_again(tmp_path: Path) -> None:
    from phonehome.attribute.geo import _geo_table

    _geo_table(tmp_path)
    (entry,) = tmp_path.glob("geolite2-*.bin")
    whole = entry.read_bytes()
    for broken in (whole[:-7], b"phonehome-geolite2 1\n{}\n", b"not a table"):
        entry.write_bytes(broken)
        assert _geo_table(tmp_path).country(int(ipaddress.ip_address("8.8.8.8"))) == "US"
        assert entry.read_bytes() == whole  # and saved whole again


@settings(max_examples=300)
@given(st.lists(st.tuples(st.integers(0, 8), st.integers(0, 255), st.integers(0, 5)), max_size=30))
def test_ranges_laid_flat_answer_as_the_longest_prefix_does(prefixes: list[tuple[int, int, int]]) -> None:
    from bisect import bisect_right
    from itertools import pairwise

    from phonehome.attribute.geo import _flatten

    # Prefixes of an 8-bit address space: (length, leading bits, value); the first of a prefix wins.
    spans: dict[tuple[int, int], int] = {}
    for length, bits, value in prefixes:
        first = (bits >> (8 - length)) << (8 - length)
        spans.setdefault((first, first + (1 << (8 - length)) - 1), value)
    segments = _flatten(spans)
    assert all(a[1] < b[0] for a, b in pairwise(segments))
    for addr in range(256):
        holding = [(last - first, value) for (first, last), value in spans.items() if first <= addr <= last]
        expected = min(holding)[1] if holding else None
        i = bisect_right([first for first, _last, _value in segments], addr) - 1
        found = segments[i][2] if i >= 0 and addr <= segments[i][1] else None
        assert found == expected
