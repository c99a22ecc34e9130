"""The run's verdict in one plain sentence a non-specialist understands.

"Sent your IMEI and your phone number in clear text to Xiaomi (api.account.xiaomi.com) in China
without consent." Violations are described when there are any; otherwise what was allowed. Words for
identifiers, destinations and countries are tables; the sentence does not depend on finding order.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping

from phonehome.model import Finding
from phonehome.policy.countries import country_name
from phonehome.policy.model import Policy
from phonehome.policy.rules import VIOLATION

NOTHING = "Nothing you declared left the phone."

# Identifier label -> words, in the order a sentence lists them (who the user is first).
WORDS: dict[str, str] = {
    "imei": "your IMEI",
    "imei2": "your second IMEI",
    "meid": "your MEID",
    "imsi": "your IMSI (SIM subscriber identity)",
    "iccid": "your SIM card number (ICCID)",
    "phone": "your phone number",
    "msisdn": "your phone number",
    "carrier": "your carrier's name",
    "carrier_code": "your carrier's code",
    "mcc_mnc": "your carrier's code",
    "email": "your e-mail address",
    "account": "your account name",
    "serial": "your serial number",
    "android_id": "your Android ID",
    "gsf_id": "your Google services ID",
    "advertising_id": "your advertising ID",
    "gaid": "your advertising ID",
    "idfa": "your advertising ID",
    "idfv": "your app vendor ID",
    "udid": "your device ID",
    "device_id": "your device ID",
    "wifi_mac": "your Wi-Fi MAC address",
    "bt_mac": "your Bluetooth MAC address",
    "mac": "your MAC address",
    "hostname": "your device's name",
    "ssid": "your Wi-Fi network's name",
    "bssid": "your Wi-Fi router's address",
    "contact.phone": "a contact's phone number",
    "contact.email": "a contact's e-mail address",
    "contact.name": "a contact's name",
    "message.peer": "the number of someone who texted you",
    "message.text": "the text of a message",
}
_RANK = {label: i for i, label in enumerate(WORDS)}
MAX_DESTINATIONS = 3  # more are counted, not named, to keep one sentence readable
MAX_HOSTS = 2


def words(label: str) -> str:
    return WORDS.get(label, f"your {label.replace('_', ' ')}")


def _join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


# What the sentence takes of one finding: identifier, encrypted, host (or IP), owner, country and
# whether it is a violation. A run's findings counted by these (:func:`facets`) word the same
# sentence as the findings themselves: worker processes send back these counts, not their findings.
Facet = tuple[str, bool, str, str | None, str | None, bool]


def facet(f: Finding) -> Facet:
    return (f.identifier, f.encrypted, f.host or f.ip, f.owner, f.country, f.verdict == VIOLATION)


def facets(findings: Iterable[Finding]) -> Counter[Facet]:
    """How many findings have each facet, in the order each facet first occurs."""
    return Counter(map(facet, findings))


def _destination(group: list[Facet]) -> str:
    labels, encrypted, names, owners, countries, _violations = zip(*group, strict=True)
    idents = sorted(set(labels), key=lambda x: (_RANK.get(x, len(_RANK)), x))
    phrases = list(dict.fromkeys(words(i) for i in idents))
    enc = set(encrypted)
    transport = (
        "encrypted" if enc == {True} else "in clear text" if enc == {False} else "partly in clear text"
    )
    hosts = sorted(set(names))
    shown = ", ".join(hosts[:MAX_HOSTS]) + (
        f" and {len(hosts) - MAX_HOSTS} more" if len(hosts) > MAX_HOSTS else ""
    )
    owner = owners[0]
    who = f"{owner} ({shown})" if owner else shown
    text = f"{_join(phrases)} {transport} to {who}"
    country = _in_country(countries[0])
    return f"{text} in {country}" if country else text


# Countries whose English name takes "the" in running text ("in the United States").
_WITH_THE = frozenset(
    "AE AX BS CC CD CF CK CZ DO FK FO GB GM GS HM KM KY MH MP MV NL PH SB SC TC UM US VA VG VI".split()  # noqa: SIM905
)


def _in_country(code: str | None) -> str | None:
    name = country_name(code)
    if name is None or code is None:
        return None
    if name.startswith("The "):  # "The Democratic Republic Of Congo"
        return "the " + name[4:]
    return f"the {name}" if code.upper() in _WITH_THE else name


def _described(counts: Iterable[tuple[Facet, int]]) -> str:
    groups: dict[tuple[str, str], list[Facet]] = defaultdict(list)
    sizes: Counter[tuple[str, str]] = Counter()
    for f, n in counts:
        _label, _encrypted, host, owner, country, _violation = f
        key = (owner or host, country or "")
        groups[key].append(f)
        sizes[key] += n
    ordered = sorted(groups.items(), key=lambda kv: (-sizes[kv[0]], kv[0]))
    parts = [_destination(group) for _key, group in ordered[:MAX_DESTINATIONS]]
    rest = len(ordered) - MAX_DESTINATIONS
    if rest > 0:
        parts.append(f"data to {rest} more destination{'s' if rest > 1 else ''}")
    return _join(parts)


def sentence(findings: Iterable[Finding], policy: Policy | None) -> str:
    """The verdict of a run whose findings are already judged."""
    return sentence_of(facets(findings), policy)


def sentence_of(counts: Mapping[Facet, int], policy: Policy | None) -> str:
    """The verdict of a run from its findings' :func:`facets`."""
    found = [(f, n) for f, n in counts.items() if n > 0]
    if not found:
        return NOTHING
    violations = [(f, n) for f, n in found if f[-1]]  # the facet's last: a violation
    if not violations:
        return f"Sent {_described(found)}, as your policy allows."
    how = "without consent" if policy is None or not policy.consent else "against your policy"
    return f"Sent {_described(violations)} {how}."
