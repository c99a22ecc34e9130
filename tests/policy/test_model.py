"""Policy files: presets load, every mistake is refused at start naming file, line and key."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from phonehome.cli import Env, ExitStatus, main
from phonehome.demo import PROFILE, factory_capture
from phonehome.errors import InputError
from phonehome.policy import CATEGORIES, PRESETS, load_policy, parse_policy

GOOD = """\
[policy]
name = "only IN, encrypted, no contacts"
cleartext = false
countries = ["IN"]

[[allow]]
categories = ["device", "subscriber"]
owners = ["Xiaomi"]
countries = ["IN", "sg"]
encrypted = true

[[deny]]
categories = ["contacts", "messages"]
"""


def test_a_policy_file_is_read_with_its_lines() -> None:
    policy = parse_policy(GOOD, "p.toml")
    assert policy.name == "only IN, encrypted, no contacts"
    assert policy.cleartext is False and policy.countries == {"IN"}
    assert (policy.cleartext_line, policy.countries_line) == (3, 4)
    (allow,) = policy.allows
    assert allow.match.countries == {"IN", "SG"} and allow.match.owners == {"xiaomi"}
    assert allow.line == 6 and allow.match.encrypted is True
    (deny,) = policy.denies
    assert deny.label == "deny #1 (p.toml line 12): contacts, messages may not leave"
    assert (
        allow.label == "allow #1 (p.toml line 6): device, subscriber may leave to Xiaomi in IN, SG encrypted"
    )


@pytest.mark.parametrize("name", sorted(set(PRESETS) - {"residency"}))
def test_every_preset_loads(name: str) -> None:
    policy = load_policy(name)
    assert policy.source == f"preset {name}"


def test_presets_say_what_they_promise() -> None:
    assert load_policy("strict").allows == () and load_policy("strict").consent is False
    cloud = load_policy("consented-cloud")
    assert cloud.cleartext is False
    assert all(rule.match.roles == {"vendor"} and rule.match.encrypted for rule in cloud.allows)
    residency = load_policy("residency:in,SG")
    assert residency.countries == {"IN", "SG"} and "IN, SG" in residency.name


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("residency", "needs countries"),
        ("residency:XX", "unknown country code 'XX'"),
        ("strict:IN", "takes no arguments"),
        ("no-such-preset-or-file", "not a preset"),
    ],
)
def test_bad_preset_arguments(spec: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        load_policy(spec)


@pytest.mark.parametrize(
    ("text", "line", "key", "message"),
    [
        ('[policy]\nname = "x"\n[rules]\na = 1\n', 3, "rules", "unknown table [rules]"),
        ("[policy]\ncleartext = 0\n", 2, "policy.cleartext", "true or false"),
        ("[policy]\nresidency = ['IN']\n", 2, "policy.residency", "unknown key 'residency'"),
        ("[policy]\ncountries = ['IN', 'China']\n", 2, "policy.countries[1]", "unknown country code 'China'"),
        (
            "[[allow]]\ncategories = ['device']\n[[allow]]\ncategories = ['gps']\n",
            4,
            "allow[1].categories[0]",
            "unknown category 'gps'",
        ),
        ("[[allow]]\nroles = ['spyware']\n", 2, "allow[0].roles[0]", "unknown role 'spyware'"),
        ("[[deny]]\ncategories = []\n", 2, "deny[0].categories", "empty list"),
        ("[[deny]]\nencrypted = 'yes'\n", 2, "deny[0].encrypted", "true or false"),
        ("[[deny]]\nhosts = ['a.com']\n", 2, "deny[0].hosts", "unknown key 'hosts'"),
        ("[allow]\ncategories = ['device']\n", 1, "allow", "array of tables"),
        ("[policy]\nname = \n", 2, None, "TOML syntax error"),
    ],
)
def test_bad_policy_names_file_line_and_key(text: str, line: int, key: str | None, message: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_policy(text, "bad.toml")
    error = caught.value
    assert message in error.message
    assert (error.source, error.line, error.key) == ("bad.toml", line, key)


def test_every_profile_category_can_be_named() -> None:
    assert {
        "device",
        "subscriber",
        "network",
        "account",
        "contacts",
        "messages",
        "location",
        "custom",
    } == set(CATEGORIES)


def test_a_bad_policy_stops_the_audit_before_any_capture_is_read(tmp_path: Path) -> None:
    profile = tmp_path / "phone.toml"
    profile.write_text(PROFILE, encoding="utf-8")
    policy = tmp_path / "policy.toml"
    policy.write_text("[policy]\ncleartext = false\n\n[[deny]]\ncategories = ['contacts', 'sms']\n", "utf-8")
    missing = tmp_path / "never-read.pcap"  # would be an input error if the audit got that far
    out, err = io.StringIO(), io.StringIO()
    status = main(
        ["audit", str(missing), "--device", str(profile), "--policy", str(policy)],
        Env(out, err, progress=False),
    )
    assert status == ExitStatus.BAD_INPUT and out.getvalue() == ""
    assert err.getvalue() == (
        f"phonehome: {policy}, line 5, key 'deny[0].categories[1]': unknown category 'sms'; "
        f"known: {', '.join(CATEGORIES)}\n"
    )
    capture = tmp_path / "c.pcap"
    capture.write_bytes(factory_capture())
    status = main(
        ["audit", str(capture), "--device", str(profile), "--policy", "strict"], Env(out, err, progress=False)
    )
    assert status == ExitStatus.LEAKS
