"""Names reduce to one normal form and to their registrable domain under the bundled Public Suffix List."""

from __future__ import annotations

from pathlib import Path

import pytest

from phonehome.attribute.domains import normalise, psl_date, registrable


@pytest.mark.parametrize(
    ("raw", "domain"),
    [
        ("api.account.xiaomi.com", "xiaomi.com"),
        ("API.Account.Xiaomi.COM.", "xiaomi.com"),  # case and the root's trailing dot
        ("api.account.xiaomi.com:443", "xiaomi.com"),  # a Host header with its port
        ("www.bbc.co.uk", "bbc.co.uk"),  # a two-label public suffix
        ("myapp.appspot.com", "myapp.appspot.com"),  # the private section keeps tenants apart
        ("d1234.cloudfront.net", "d1234.cloudfront.net"),
        ("s3.amazonaws.com", "amazonaws.com"),  # itself a private suffix: the ICANN reading answers
        ("bücher.de", "xn--bcher-kva.de"),  # Unicode labels become A-labels
        ("例子.中国", "xn--fsqu00a.xn--fiqs8s"),
        ("xn--fsqu00a.xn--fiqs8s", "xn--fsqu00a.xn--fiqs8s"),
    ],
)
def test_registrable_domain(raw: str, domain: str) -> None:
    assert registrable(raw) == domain


@pytest.mark.parametrize(
    ("raw", "host"),
    [
        ("42.62.48.171", "42.62.48.171"),
        ("42.62.48.171:80", "42.62.48.171"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("2001:DB8::1", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
    ],
)
def test_address_literals_have_no_domain(raw: str, host: str) -> None:
    name = normalise(raw)
    assert name is not None and name.address and name.host == host
    assert name.domain is None and registrable(raw) is None


@pytest.mark.parametrize("raw", ["", None, ".", "a..b", "x" * 300 + ".com", ":443"])
def test_unusable_names_are_none(raw: str | None) -> None:
    assert normalise(raw) is None


def test_public_suffixes_alone_have_no_registrable_domain() -> None:
    for raw in ("com", "co.uk", "localhost"):
        name = normalise(raw)
        assert name is not None and name.domain is None


def test_candidates_walk_from_the_host_up_to_the_icann_registrable_domain() -> None:
    name = normalise("a.b.api.account.xiaomi.com")
    assert name is not None
    assert name.candidates() == (
        "a.b.api.account.xiaomi.com",
        "b.api.account.xiaomi.com",
        "api.account.xiaomi.com",
        "account.xiaomi.com",
        "xiaomi.com",
    )
    tenant = normalise("d1234.cloudfront.net")
    assert tenant is not None and tenant.candidates() == ("d1234.cloudfront.net", "cloudfront.net")


def test_the_bundled_list_is_dated() -> None:
    year, month, day = psl_date().split("-")
    assert len(year) == 4 and 1 <= int(month) <= 12 and 1 <= int(day) <= 31


def test_the_lists_built_from_pre_encoded_rules_read_every_rule_as_the_default_parse() -> None:
    from publicsuffixlist import PublicSuffixList

    from phonehome.attribute.domains import _lists, psl_lines

    ours = _lists()
    reference = (PublicSuffixList(), PublicSuffixList(only_icann=True))
    names = set()
    for line in psl_lines():
        rule = line.split(" ")[0].strip().lower()
        if not rule or rule.startswith("//"):
            continue
        base = rule.removeprefix("!").removeprefix("*.")
        names.update({base, "a." + base, "b.a." + base})
        if not base.isascii():  # and the A-label form a name takes on the wire
            names.add("a." + base.encode("idna").decode("ascii"))
    assert len(names) > 20_000
    for name in sorted(names):
        for mine, theirs in zip(ours, reference, strict=True):
            assert mine.privatesuffix(name) == theirs.privatesuffix(name), name
            assert mine.publicsuffix(name) == theirs.publicsuffix(name), name


def test_the_rules_from_the_cache_are_those_read_from_the_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from phonehome.attribute.domains import psl_rules

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("PHONEHOME_NO_CACHE", raising=False)
    built = psl_rules()
    (entry,) = (tmp_path / "phonehome").glob("psl-*.json")
    assert psl_rules() == built
    assert len(built[0]) > len(built[1]) > 5000  # the private section is in the first only
    for garbage in (b"", b"{}", b'{"all": [1], "icann": []}', entry.read_bytes()[:-5]):
        entry.write_bytes(garbage)
        assert psl_rules() == built  # a broken entry is read from the list again
