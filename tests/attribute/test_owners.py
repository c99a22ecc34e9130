"""Owners and roles: the bundled table, Disconnect and Exodus lists in their published formats, bad files."""

from __future__ import annotations

import json
import time
import tomllib
from importlib.resources import files
from pathlib import Path

import pytest

from phonehome.attribute.owners import ROLES, Owners, load_trackers, parse_owner_table, parse_trackers
from phonehome.errors import InputError

# A hand-made excerpt in the format of Disconnect's services.json
# (https://github.com/disconnectme/disconnect-tracking-protection/blob/master/services.json).
DISCONNECT = {
    "license": "Copyright 2010-2020 Disconnect, Inc. ... GNU General Public License v3",
    "categories": {
        "Advertising": [
            {"AppLovin": {"https://www.applovin.com/": ["applovin.com", "applvn.com"]}},
            {"Xiaomi": {"https://www.mi.com/": ["ad.mi.com"]}},
            {"Google": {"http://www.google.com/": ["2mdn.net", "admob.com"], "performance": "true"}},
        ],
        "Analytics": [
            {"Mixpanel": {"https://mixpanel.com/": ["mixpanel.com", "mxpnl.com"]}},
            {"Google": {"http://www.google.com/": ["google-analytics.com", "2mdn.net"]}},
        ],
        "Social": [{"Facebook": {"https://www.facebook.com/": ["facebook.com", "facebook.net"]}}],
        "FingerprintingInvasive": [{"Sift Science": {"https://siftscience.com/": ["siftscience.com"]}}],
        "Cryptomining": [{"Coinhive": {"https://coinhive.com/": ["coinhive.com"]}}],
    },
}

# A hand-made excerpt in the format of Exodus Privacy's tracker list
# (https://reports.exodus-privacy.eu.org/api/trackers).
EXODUS = {
    "trackers": {
        "27": {
            "id": 27,
            "name": "Google Firebase Analytics",
            "description": "",
            "creation_date": "2017-09-25",
            "code_signature": "com.google.firebase.analytics.|com.google.android.gms.measurement.",
            "network_signature": "firebase\\.com|app-measurement\\.com",
            "website": "https://firebase.google.com/",
            "categories": ["Analytics"],
            "documentation": [],
        },
        "52": {
            "id": 52,
            "name": "Teemo",
            "description": "",
            "creation_date": "2017-09-24",
            "code_signature": "com.databerries.|com.geolocstation.",
            "network_signature": "databerries\\.com|geolocstation\\.com",
            "website": "https://www.teemo.co",
            "categories": ["Location", "Advertisement"],
            "documentation": [],
        },
        "70": {
            "id": 70,
            "name": "Bugsnag",
            "code_signature": "com.bugsnag.",
            "network_signature": "",
            "categories": ["Crash reporting"],
        },
        "105": {
            "id": 105,
            "name": "Appodeal",
            "code_signature": "com.appodeal.",
            "network_signature": "appodeal\\.com|appodealx\\.com",
            "categories": ["Advertisement"],
        },
    }
}


def write(tmp_path: Path, name: str, doc: object) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def owners() -> Owners:
    return Owners()


@pytest.mark.parametrize(
    ("host", "owner", "role"),
    [
        ("api.account.xiaomi.com", "Xiaomi", "vendor"),
        ("resolver.msg.xiaomi.net", "Xiaomi", "vendor"),
        ("tracking.intl.miui.com", "Xiaomi", "analytics"),  # more specific than miui.com
        ("api.ad.xiaomi.com", "Xiaomi", "advertising"),
        ("googleads.g.doubleclick.net", "Google", "advertising"),
        ("app-measurement.com", "Google", "analytics"),
        ("firebasecrashlytics.googleapis.com", "Google", "crash-reporting"),
        ("mtalk.google.com", "Google", "push"),
        ("www.googleapis.com", "Google", "vendor"),
        ("graph.facebook.com", "Meta", "social"),
        ("t.appsflyer.com", "AppsFlyer", "attribution"),
        ("o123.ingest.sentry.io", "Sentry", "crash-reporting"),
        ("sb.scorecardresearch.com", "comScore", "analytics"),
        ("d1234.cloudfront.net", "Amazon CloudFront", "cdn"),
        ("bucket.s3.ap-south-1.amazonaws.com", "Amazon Web Services", "cloud"),
        ("heytapmobi.com", "OPPO", "vendor"),
        ("API.Account.Xiaomi.com.", "Xiaomi", "vendor"),  # normalised first
    ],
)
def test_bundled_table(owners: Owners, host: str, owner: str, role: str) -> None:
    found = owners.lookup(host)
    assert found is not None, host
    assert (found.name, found.role, found.source) == (owner, role, "phonehome owners.toml")


@pytest.mark.parametrize("host", ["example.org", "xiaomi.com.evil.example", "42.62.48.171", "", None, "com"])
def test_unknown_hosts_and_addresses_have_no_owner(owners: Owners, host: str | None) -> None:
    assert owners.lookup(host) is None


def test_every_bundled_role_is_in_the_vocabulary_and_required_owners_are_there() -> None:
    doc = tomllib.loads(files("phonehome").joinpath("data", "owners.toml").read_text("utf-8"))
    table = parse_owner_table(doc, "owners.toml")
    assert {o.role for o in table.values()} <= set(ROLES)
    for domain in (
        "xiaomi.com",
        "xiaomi.net",
        "mi.com",
        "miui.com",
        "mi-img.com",
        "crashlytics.com",
        "appsflyer.com",
        "adjust.com",
        "branch.io",
        "ioam.de",
        "qcloud.com",
        "aliyuncs.com",
    ):
        assert domain in table, domain


@pytest.mark.parametrize(
    ("doc", "key"),
    [
        ({"owner": [{"name": "X", "role": "spying", "domains": ["x.com"]}]}, "owner[0]"),
        ({"owner": [{"name": "X", "role": "cloud", "domains": ["X.com"]}]}, "owner[0]"),
        ({"owner": [{"name": "X", "role": "cloud", "domains": []}]}, "owner[0].domains"),
        ({"owner": [{"name": "X", "role": "cloud", "domains": ["x.com", "x.com"]}]}, "owner[0]"),
        ({"owner": [{"role": "cloud", "domains": ["x.com"]}]}, "owner[0].name"),
    ],
)
def test_owner_table_entries_are_checked(doc: dict[str, object], key: str) -> None:
    with pytest.raises(InputError) as err:
        parse_owner_table(doc, "mine.toml")
    assert err.value.source == "mine.toml" and err.value.key == key


def test_disconnect_services_json(tmp_path: Path) -> None:
    owners = Owners([write(tmp_path, "services.json", DISCONNECT)])
    sift = owners.lookup("cdn.siftscience.com")
    assert sift is not None and (sift.name, sift.role) == ("Sift Science", "analytics")
    assert sift.source == "disconnect services.json"
    coin = owners.lookup("coinhive.com")
    assert coin is not None and coin.role == "unknown"
    # Listed under Advertising and Analytics: the earlier category in the role table wins.
    both = owners.lookup("static.2mdn.net")
    assert both is not None and both.role == "advertising"
    # More specific than the bundled mi.com entry, so the loaded list answers.
    ad = owners.lookup("ad.mi.com")
    assert ad is not None and (ad.name, ad.role, ad.source) == (
        "Xiaomi",
        "advertising",
        "disconnect services.json",
    )
    # Same depth as a bundled entry: the bundled table wins the tie.
    mixpanel = owners.lookup("mixpanel.com")
    assert mixpanel is not None and mixpanel.source == "phonehome owners.toml"


def test_exodus_tracker_list(tmp_path: Path) -> None:
    owners = Owners([write(tmp_path, "trackers.json", EXODUS)])
    appodeal = owners.lookup("a.appodealx.com")
    assert appodeal is not None and (appodeal.name, appodeal.role) == ("Appodeal", "advertising")
    assert appodeal.source == "exodus trackers.json"
    teemo = owners.lookup("sdk.databerries.com")
    assert teemo is not None and teemo.role == "advertising"  # Advertisement outranks Location
    # The bundled table knows app-measurement.com; signatures answer only for unknown hosts.
    measurement = owners.lookup("app-measurement.com")
    assert measurement is not None and measurement.source == "phonehome owners.toml"
    assert owners.lookup("bugsnag.example") is None  # a tracker with no network signature


def test_both_kinds_load_together_and_are_told_apart_by_content(tmp_path: Path) -> None:
    # Names say nothing: an Exodus list called services.json is still read as Exodus.
    a = load_trackers(write(tmp_path, "services.json", EXODUS))
    b = load_trackers(write(tmp_path, "list.txt", DISCONNECT))
    assert (a.kind, b.kind) == ("exodus", "disconnect")
    owners = Owners([a, b])
    assert owners.lookup("appodeal.com") is not None and owners.lookup("siftscience.com") is not None


def test_a_backtracking_signature_is_bounded(tmp_path: Path) -> None:
    doc = {"trackers": {"1": {"name": "Slow", "network_signature": "^(a|aa)+$", "categories": []}}}
    owners = Owners([write(tmp_path, "slow.json", doc)])
    start = time.monotonic()
    assert owners.lookup("a" * 60 + "b.example") is None
    assert time.monotonic() - start < 2


@pytest.mark.parametrize(
    ("content", "line", "key"),
    [
        (b'{"categories": {\n  "Advertising": [\n    {"X": }\n  ]}}', 3, None),  # JSON syntax error
        (
            b'{"trackers": {"1": {"name": "Bad", "network_signature": "(unclosed", "categories": []}}}',
            None,
            "trackers.1",
        ),
        (
            b'{"trackers": {"1": {"name": "Big", "network_signature": "'
            + b"a" * 5000
            + b'", "categories": []}}}',
            None,
            "trackers.1.network_signature",
        ),
        (b'{"categories": {"Advertising": {"not": "a list"}}}', None, "categories.Advertising"),
        (
            b'{"categories": {"Advertising": [{"X": {"https://x/": ["bad..name"]}}]}}',
            None,
            "categories.Advertising[0].X.https://x/",
        ),
        (b'{"something": "else"}', None, None),
        (b"[1, 2, 3]", None, None),
        (b"\xff\xfe\x00not utf-8", None, None),
    ],
)
def test_bad_tracker_files_name_the_file(
    tmp_path: Path, content: bytes, line: int | None, key: str | None
) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(InputError) as err:
        Owners([str(path)])
    assert err.value.source == str(path)
    assert err.value.line == line and err.value.key == key
    assert str(path) in str(err.value)


def test_json_errors_carry_line_and_byte_offset() -> None:
    with pytest.raises(InputError) as err:
        parse_trackers(b'{\n "trackers": {\n  "1": [,]\n }\n}', "t.json")
    assert err.value.line == 3 and err.value.offset == 25
    # Offsets count bytes: two two-byte characters before the error move it by two.
    with pytest.raises(InputError) as err:
        parse_trackers('\ufeff{"é": "ü", ,}'.encode(), "t.json")
    assert err.value.line == 1 and err.value.offset == 3 + 13


def test_a_missing_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError) as err:
        load_trackers(str(tmp_path / "absent.json"))
    assert "absent.json" in str(err.value)
