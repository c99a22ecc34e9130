"""Verdicts: rule precedence as properties over random policies and findings, and a policy on real bytes."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from factories import finding
from phonehome.audit import audit
from phonehome.demo import PROFILE, factory_capture
from phonehome.model import Finding
from phonehome.policy import (
    ALLOWED,
    CATEGORIES,
    ROLES,
    VIOLATION,
    Match,
    Policy,
    Rule,
    decide,
    fixed_verdict,
    judge,
    judge_all,
    load_policy,
    matches,
    parse_policy,
    sentence,
)
from phonehome.profile import load_profile

COUNTRIES = ["IN", "SG", "CN", "US", None]
OWNERS = ["Xiaomi", "Google", None]
HOSTS = ["api.account.xiaomi.com", "sgp.xiaomi.com", "ads.google.com", "example.in"]


findings = st.builds(
    finding,
    identifier=st.sampled_from(["imei", "imsi", "phone", "contact.phone", "message.peer", "udid"]),
    category=st.sampled_from(CATEGORIES),
    host=st.sampled_from(HOSTS),
    owner=st.sampled_from(OWNERS),
    role=st.sampled_from([*ROLES, None]),
    country=st.sampled_from(COUNTRIES),
    encrypted=st.booleans(),
)


def _maybe(values: list[str]) -> st.SearchStrategy[frozenset[str] | None]:
    return st.none() | st.frozensets(st.sampled_from(values), min_size=1)


matchers = st.builds(
    Match,
    categories=_maybe(list(CATEGORIES)),
    identifiers=_maybe(["imei", "phone", "contact.phone"]),
    owners=_maybe(["xiaomi", "google"]),
    roles=_maybe(list(ROLES)),
    domains=st.none() | st.lists(st.sampled_from(["xiaomi.com", "google.com"]), min_size=1).map(tuple),
    countries=_maybe(["IN", "SG", "CN", "US"]),
    encrypted=st.none() | st.booleans(),
)


def rules(kind: str) -> st.SearchStrategy[tuple[Rule, ...]]:
    return st.lists(matchers, max_size=4).map(
        lambda ms: tuple(Rule(kind, i + 1, "p.toml", i + 1, m, "words") for i, m in enumerate(ms))
    )


policies = st.builds(
    Policy,
    name=st.just("p"),
    source=st.just("p.toml"),
    cleartext=st.booleans(),
    countries=_maybe(["IN", "SG", "CN", "US"]),
    allows=rules("allow"),
    denies=rules("deny"),
)


@given(policies, findings, matchers)
def test_adding_a_deny_never_allows_more(policy: Policy, f: Finding, extra: Match) -> None:
    deny = Rule("deny", len(policy.denies) + 1, "p.toml", 99, extra, "words")
    before = decide(policy, f)[0]
    after = decide(replace(policy, denies=(*policy.denies, deny)), f)[0]
    assert not (before == VIOLATION and after == ALLOWED)
    if matches(extra, f):
        assert after == VIOLATION


@given(policies, findings, matchers)
def test_adding_an_allow_never_forbids_more(policy: Policy, f: Finding, extra: Match) -> None:
    allow = Rule("allow", len(policy.allows) + 1, "p.toml", 99, extra, "words")
    before = decide(policy, f)[0]
    after = decide(replace(policy, allows=(*policy.allows, allow)), f)[0]
    assert not (before == ALLOWED and after == VIOLATION)


@given(policies, findings)
def test_without_allows_everything_is_a_violation(policy: Policy, f: Finding) -> None:
    assert decide(replace(policy, allows=()), f)[0] == VIOLATION


@given(findings)
def test_strict_and_no_policy_make_every_finding_a_violation(f: Finding) -> None:
    assert decide(load_policy("strict"), f)[0] == VIOLATION
    assert decide(None, f)[0] == VIOLATION


@given(policies, findings)
def test_the_verdict_is_exactly_the_documented_precedence(policy: Policy, f: Finding) -> None:
    verdict, rule = decide(policy, f)
    global_ok = (policy.cleartext or f.encrypted) and (
        policy.countries is None or f.country in policy.countries
    )
    denied = any(matches(r.match, f) for r in policy.denies)
    allowed = any(matches(r.match, f) for r in policy.allows)
    assert (verdict == ALLOWED) == (global_ok and not denied and allowed)
    if not (policy.cleartext or f.encrypted):
        assert rule.startswith("cleartext = false")  # global rules are reported before any deny
    elif global_ok and denied:
        assert rule.startswith("deny #")
    elif verdict == ALLOWED:
        first = next(r for r in policy.allows if matches(r.match, f))
        assert rule == first.label  # the first allow in file order decides


@given(policies, findings)
def test_a_verdict_fixed_before_judging_is_the_one_judging_gives(policy: Policy, f: Finding) -> None:
    # Without a policy every finding can be made with its verdict; judging then keeps it as is.
    fixed = fixed_verdict(None)
    assert fixed == decide(None, f)
    made = replace(f, verdict=fixed[0], rule=fixed[1])
    assert judge(None, made) is made
    assert judge(None, f) == made
    # Under a policy the verdict depends on the finding: nothing is fixed, and judging decides.
    assert fixed_verdict(policy) is None
    judged = judge(policy, made)
    assert (judged.verdict, judged.rule) == decide(policy, f)


@given(policies, st.lists(findings, max_size=8), st.randoms())
def test_verdicts_and_sentence_do_not_depend_on_finding_order(
    policy: Policy, found: list[Finding], rnd: random.Random
) -> None:
    shuffled = found[:]
    rnd.shuffle(shuffled)
    judged, judged_shuffled = judge_all(policy, found), judge_all(policy, shuffled)
    assert sorted(map(repr, judged)) == sorted(map(repr, judged_shuffled))
    assert sentence(judged, policy) == sentence(judged_shuffled, policy)


ONLY_IN = """\
[policy]
name = "only IN, encrypted, no contacts"
cleartext = false
countries = ["IN"]

[[allow]]

[[deny]]
categories = ["contacts"]
"""

# HTTPS and HTTP requests to addresses in India (an Airtel and an AWS Mumbai address) and Singapore.
_IN, _IN_AWS, _SG = "182.64.0.1", "13.232.0.10", "54.169.43.109"
_REQUESTS = [
    ("https", _IN, "/a?imei=865123456789019"),
    ("http", _IN, "/b?imei=865123456789019"),
    ("https", _SG, "/c?phone=%2B919876543210"),
    ("https", _IN_AWS, "/d?contact=%2B919811122233"),
    ("https", _IN_AWS, "/e?carrier=airtel"),
]


def _har(path: Path) -> None:
    entries = [
        {
            "startedDateTime": "2024-01-01T00:00:00.000Z",
            "serverIPAddress": ip,
            "request": {"method": "GET", "url": f"{scheme}://h{i}.example.in{target}", "headers": []},
        }
        for i, (scheme, ip, target) in enumerate(_REQUESTS)
    ]
    path.write_text(json.dumps({"log": {"version": "1.2", "entries": entries}}), encoding="utf-8")


def test_only_in_encrypted_no_contacts_flags_what_a_reader_expects(tmp_path: Path) -> None:
    profile_path = tmp_path / "phone.toml"
    profile_path.write_text(PROFILE, encoding="utf-8")
    har, pcap = tmp_path / "mixed.har", tmp_path / "factory.pcap"
    _har(har)
    pcap.write_bytes(factory_capture())
    policy = parse_policy(ONLY_IN, "only-in.toml")
    result = audit([str(har), str(pcap)], load_profile(profile_path), policy=policy)
    assert result.findings and not result.errors
    for f in result.findings:
        expected = f.encrypted and f.country == "IN" and f.category != "contacts"
        assert (f.verdict == ALLOWED) == expected, f
        if not f.encrypted:
            assert f.rule == "cleartext = false (only-in.toml line 3): nothing may leave in clear text"
        elif f.country != "IN":
            assert f.rule == f"countries (only-in.toml line 4): data may only go to IN, not {f.country}"
        elif f.category == "contacts":
            assert f.rule == "deny #1 (only-in.toml line 8): contacts may not leave"
        else:
            assert f.rule == "allow #1 (only-in.toml line 6): anything may leave"
    by_url = {(f.url or "").split("?")[0][-1]: f.verdict for f in result.findings if f.source == str(har)}
    assert by_url == {"a": ALLOWED, "b": VIOLATION, "c": VIOLATION, "d": VIOLATION, "e": ALLOWED}
    assert all(f.verdict == VIOLATION for f in result.findings if f.source == str(pcap))
    assert result.verdict.startswith("Sent ") and result.verdict.endswith(" against your policy.")
