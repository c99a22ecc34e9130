"""Country lookups come from installed data, say their source, and never guess for private space."""

from __future__ import annotations

import pytest

from phonehome.attribute.geo import Geo


@pytest.fixture(scope="module")
def geo() -> Geo:
    return Geo()


@pytest.mark.parametrize(
    ("ip", "country"),
    [("42.62.48.171", "CN"), ("8.8.8.8", "US"), ("2001:4860:4860::8888", "US")],
)
def test_public_addresses_have_a_country_and_a_source(geo: Geo, ip: str, country: str) -> None:
    code, source = geo.country(ip)
    assert code == country
    assert source is not None and source.startswith("geolite2")


@pytest.mark.parametrize("ip", ["10.0.0.1", "192.168.1.1", "fe80::1", "127.0.0.1", "not-an-ip", ""])
def test_private_or_invalid_addresses_have_none(geo: Geo, ip: str) -> None:
    code, _source = geo.country(ip)
    assert code is None
