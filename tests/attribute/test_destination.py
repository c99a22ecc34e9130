"""Destinations end to end: name, domain, owner, role and country on findings, from the audit and the CLI."""

from __future__ import annotations

import io
import json
from dataclasses import fields
from pathlib import Path

import pytest

from factories import SAMPLES, exchange
from phonehome.attribute import Destinations
from phonehome.audit import Auditor
from phonehome.cli import Env, ExitStatus, main
from phonehome.demo import factory_capture
from phonehome.errors import InputError
from phonehome.profile import Profile

TEST_DB = str(Path(__file__).parent / "data" / "maxmind" / "GeoLite2-Country-Test.mmdb")

PROFILE = """\
[device]
name = "test phone"
region = "IN"
[identifiers]
imei = "865123456789019"
phone = "+919876543210"
carrier = "airtel"
"""


@pytest.fixture(scope="module")
def destinations() -> Destinations:
    return Destinations(discover=False)


def test_the_redmi_destination(destinations: Destinations) -> None:
    d = destinations.describe("api.account.xiaomi.com", "42.62.48.171")
    assert (d.name, d.domain, d.owner, d.role, d.country) == (
        "api.account.xiaomi.com",
        "xiaomi.com",
        "Xiaomi",
        "vendor",
        "CN",
    )
    assert d.country_source is not None and d.country_source.startswith("geolite2 20")
    assert d.owner_source == "phonehome owners.toml"


def test_a_host_on_aws_mumbai_is_placed_by_the_region_ranges(destinations: Destinations) -> None:
    d = destinations.describe("d1234.cloudfront.net:443", "13.232.0.1")
    assert (d.name, d.domain, d.owner, d.role, d.country) == (
        "d1234.cloudfront.net",
        "d1234.cloudfront.net",
        "Amazon CloudFront",
        "cdn",
        "IN",
    )
    assert d.country_source is not None and d.country_source.startswith("aws ip-ranges 20")
    assert d.country_source.endswith(" ap-south-1")


def test_a_bare_cloud_address_is_owned_by_its_platform(destinations: Destinations) -> None:
    d = destinations.describe(None, "13.232.0.1")
    assert (d.name, d.domain, d.owner, d.role, d.country) == (
        None,
        None,
        "Amazon Web Services",
        "cloud",
        "IN",
    )


def test_an_unknown_name_keeps_its_domain_and_an_unknown_role(destinations: Destinations) -> None:
    d = destinations.describe("api.example.co.uk", "42.62.48.171")
    assert (d.domain, d.owner, d.role, d.country) == ("example.co.uk", None, "unknown", "CN")


def test_a_private_address_has_no_country(destinations: Destinations) -> None:
    d = destinations.describe("router.lan", "192.168.1.1")
    assert d.country is None and d.country_source == "not a public address"
    assert d.owner is None and d.role == "unknown"


def test_descriptions_are_memoised(destinations: Destinations) -> None:
    a = destinations.describe("graph.facebook.com", "157.240.1.35")
    assert destinations.describe("graph.facebook.com", "157.240.1.35") is a


def test_findings_carry_domain_owner_role_and_country() -> None:
    profile = Profile("p", "test", "IN", (SAMPLES["imei"],))
    auditor = Auditor(profile, "aho-corasick")
    ex = exchange(("query", b"imei=865123456789019"), host="api.account.xiaomi.com", ip="42.62.48.171")
    [finding] = [f for f in auditor.findings(ex, []) if f.identifier == "imei"]
    assert (finding.domain, finding.owner, finding.role, finding.country) == (
        "xiaomi.com",
        "Xiaomi",
        "vendor",
        "CN",
    )
    # "mmdb ..." where the machine has a MaxMind DB in the usual places, the bundled GeoLite2 otherwise.
    assert finding.country_source is not None and finding.country_source.startswith(("geolite2", "mmdb"))


def test_the_auditor_refuses_a_bad_trackers_file_at_construction(tmp_path: Path) -> None:
    bad = tmp_path / "services.json"
    bad.write_text('{"categories": [', encoding="utf-8")
    profile = Profile("p", "test", "IN", (SAMPLES["imei"],))
    with pytest.raises(InputError) as err:
        Auditor(profile, "aho-corasick", trackers=[str(bad)])
    assert err.value.source == str(bad) and err.value.line == 1


def run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = main(list(args), Env(stdout=out, stderr=err, progress=False))
    return status, out.getvalue(), err.getvalue()


@pytest.fixture
def capture(tmp_path: Path) -> tuple[str, str]:
    pcap, profile = tmp_path / "factory.pcap", tmp_path / "phone.toml"
    pcap.write_bytes(factory_capture())
    profile.write_text(PROFILE, encoding="utf-8")
    return str(pcap), str(profile)


def test_the_cli_reports_owner_and_role(capture: tuple[str, str], tmp_path: Path) -> None:
    pcap, profile = capture
    status, out, _ = run("audit", pcap, "--device", profile, "--format", "json", "--geoip", TEST_DB)
    assert status == ExitStatus.LEAKS
    findings = json.loads(out)["findings"]
    xiaomi = [f for f in findings if f["host"] == "api.account.xiaomi.com"]
    assert xiaomi
    for f in xiaomi:
        assert (f["domain"], f["owner"], f["role"], f["country"]) == ("xiaomi.com", "Xiaomi", "vendor", "CN")
        # The test database does not cover 42.62.48.0/24, so the bundled GeoLite2 answered.
        assert f["country_source"].startswith("geolite2")
    status, out, _ = run("audit", pcap, "--device", profile)
    assert status == ExitStatus.LEAKS
    assert "api.account.xiaomi.com" in out and "Xiaomi, vendor" in out


@pytest.mark.parametrize("option", ["--trackers", "--geoip"])
def test_the_cli_refuses_bad_data_files_before_reading_captures(
    capture: tuple[str, str], tmp_path: Path, option: str
) -> None:
    _pcap, profile = capture
    bad = tmp_path / "bad-list.json"
    bad.write_bytes(b"\x00\x01 not a list")
    # The capture does not exist: had it been opened first, the error would name it instead.
    status, out, err = run("audit", str(tmp_path / "absent.pcap"), "--device", profile, option, str(bad))
    assert status == ExitStatus.BAD_INPUT
    assert "bad-list.json" in err and "absent.pcap" not in err
    assert out == ""


def test_a_finding_takes_each_field_from_its_exchange_destination_and_match() -> None:
    from dataclasses import replace

    from phonehome.attribute.destination import Destination

    sent = replace(
        exchange(("query", b"imei=865123456789019")),
        url="https://api.example.com/q",
        encrypted=True,
        tls_version="TLS 1.3",
        tls_cipher="TLS_AES_128_GCM_SHA256",
        name_source="sni",
        time=12.5,
    )
    where = Destination("api.example.com", "example.com", "Example", "analytics", "US", "geolite2 x", "table")
    found = where.finding(
        sent,
        identifier="imei",
        category="device",
        encoding="base64",
        where="query",
        evidence="«x»",
        form="plain",
        extra={"k": "v"},
        verdict=("allowed", "rule 1"),
    )
    expected = {
        **{"identifier": "imei", "category": "device", "encoding": "base64", "where": "query"},
        **{"evidence": "«x»", "form": "plain", "extra": {"k": "v"}, "verdict": "allowed", "rule": "rule 1"},
        **{"host": sent.host, "ip": sent.server_ip, "port": sent.server_port, "url": sent.url},
        **{"transport": sent.transport, "protocol": sent.protocol, "encrypted": True, "time": 12.5},
        **{"flow": sent.flow, "source": sent.source, "tls_version": "TLS 1.3", "name_source": "sni"},
        **{"tls_cipher": "TLS_AES_128_GCM_SHA256", "country": "US", "country_source": "geolite2 x"},
        **{"domain": "example.com", "owner": "Example", "role": "analytics"},
    }
    assert {f.name: getattr(found, f.name) for f in fields(found)} == expected
