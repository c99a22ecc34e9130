"""Who runs a destination, and in what role.

Three kinds of table answer, all offline:

* the project's own table, ``data/owners.toml``, bundled with the package: domain → organisation,
  role and home country;
* Disconnect's ``services.json`` (the tracker list behind Firefox's Enhanced Tracking Protection),
  when the user loads one with ``--trackers``: categories of organisations, each with its domains;
* Exodus Privacy's tracker list (``/api/trackers``), likewise: trackers with a ``network_signature``
  regular expression over host names.

Domain tables are matched by suffix, walking from the full host up to its registrable domain
(ICANN section of the Public Suffix List); the most specific entry wins, the bundled table on a tie.
Exodus signatures have no specificity to compare, so they answer only for hosts no domain table
knows. Files are recognised by content, not by name; a file that is neither raises
:class:`~phonehome.errors.InputError` naming it, with the line and offset of a JSON syntax error.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib.resources import files
from typing import TYPE_CHECKING, Any

from phonehome.attribute.domains import normalise
from phonehome.errors import InputError

if TYPE_CHECKING:  # imported only where an Exodus list is loaded (about 20 ms)
    import regex

# The fixed role vocabulary. Every table entry, bundled or loaded, ends up with one of these.
ROLES: dict[str, str] = {
    "vendor": "the phone's or its operating system's maker, talking to its own services",
    "first-party": "the backend of the app that made the request",
    "cloud": "a cloud platform hosting someone else's service (the tenant is not known)",
    "cdn": "a content delivery network or static-content host",
    "advertising": "an advertising network, exchange or ad SDK",
    "analytics": "usage analytics, measurement or profiling",
    "crash-reporting": "crash and error reporting",
    "social": "a social network or messaging service, or its SDK",
    "push": "push notifications and in-app messaging",
    "attribution": "install attribution and deep linking for marketing",
    "unknown": "an organisation is known but not its role, or nothing is known",
}

# Disconnect services.json categories → roles. Categories not listed map to "unknown" but still
# name the organisation. Order matters: a domain listed under several categories takes the first.
DISCONNECT_ROLES: dict[str, str] = {
    "Advertising": "advertising",
    "Social": "social",
    "Analytics": "analytics",
    "FingerprintingInvasive": "analytics",
    "FingerprintingGeneral": "analytics",
    "EmailAggressive": "analytics",
    "Email": "analytics",
    "Content": "cdn",
    "Cryptomining": "unknown",
    "ConsentManagers": "unknown",
    "Anti-fraud": "unknown",
    "Disconnect": "unknown",
}

# Exodus tracker categories → roles; a tracker in several categories takes the first listed here.
EXODUS_ROLES: dict[str, str] = {
    "Crash reporting": "crash-reporting",
    "Advertisement": "advertising",
    "Analytics": "analytics",
    "Profiling": "analytics",
    "Identification": "analytics",
    "Location": "analytics",
}

# Bounds on what a loaded list may ask of the matcher: a signature's length, and the time one
# search of one host name may take (the ``regex`` module enforces it; catastrophic backtracking in
# a hostile pattern then costs at most this much per distinct host).
MAX_SIGNATURE = 4096
MATCH_TIMEOUT = 0.05

BUNDLED = "phonehome owners.toml"


@dataclass(frozen=True, slots=True)
class Owner:
    """An organisation running a destination, its role, and which table said so."""

    name: str
    role: str
    source: str  # "phonehome owners.toml", "disconnect services.json", "exodus trackers", ...
    country: str | None = None  # the organisation's home country, not its servers'


@dataclass(frozen=True, slots=True)
class _Signature:
    pattern: regex.Pattern[str]
    owner: Owner


# ---------------------------------------------------------------- the bundled table


def parse_owner_table(data: Mapping[str, Any], source: str) -> dict[str, Owner]:
    """Domain → Owner from a table in the bundled format; bad entries raise InputError."""
    out: dict[str, Owner] = {}
    entries = data.get("owner", [])
    if not isinstance(entries, list):
        raise InputError("'owner' must be an array of tables", source=source, key="owner")
    for i, entry in enumerate(entries):
        key = f"owner[{i}]"
        if not isinstance(entry, dict):
            raise InputError("must be a table", source=source, key=key)
        name, role, country = entry.get("name"), entry.get("role"), entry.get("country")
        domains = entry.get("domains")
        if not isinstance(name, str) or not name:
            raise InputError("needs a name", source=source, key=key + ".name")
        if role not in ROLES:
            raise InputError(f"role {role!r} is not one of {', '.join(ROLES)}", source=source, key=key)
        if country is not None and not (isinstance(country, str) and len(country) == 2):
            raise InputError("country must be an ISO 3166 alpha-2 code", source=source, key=key)
        if not isinstance(domains, list) or not domains:
            raise InputError("needs a list of domains", source=source, key=key + ".domains")
        owner = Owner(name, role, source, country)
        for domain in domains:
            n = normalise(domain) if isinstance(domain, str) else None
            if n is None or n.host != domain:
                raise InputError(f"{domain!r} is not a lower-case A-label name", source=source, key=key)
            if domain in out:
                raise InputError(f"{domain} is listed twice", source=source, key=key)
            out[domain] = owner
    return out


def bundled_owners() -> dict[str, Owner]:
    text = files("phonehome").joinpath("data", "owners.toml").read_text(encoding="utf-8")
    return parse_owner_table(tomllib.loads(text), BUNDLED)


# ---------------------------------------------------------------- user-loaded tracker lists


@dataclass(frozen=True, slots=True)
class TrackerList:
    """One loaded list: suffix entries (Disconnect) and/or regular-expression signatures (Exodus)."""

    source: str
    kind: str  # "disconnect" | "exodus"
    domains: dict[str, Owner]
    signatures: tuple[_Signature, ...] = ()


def _json(data: bytes, source: str) -> Any:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError("not UTF-8 text", source=source, offset=exc.start) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        # The byte offset in the file, as every other InputError gives, not the character index.
        offset = len(text[: exc.pos].encode("utf-8")) + (3 if data.startswith(b"\xef\xbb\xbf") else 0)
        raise InputError(f"not JSON: {exc.msg}", source=source, line=exc.lineno, offset=offset) from None
    except RecursionError:
        raise InputError("JSON nested too deeply", source=source) from None


def _disconnect(doc: Mapping[str, Any], source: str) -> TrackerList:
    categories = doc["categories"]
    label = f"disconnect {source.rsplit('/', 1)[-1]}"
    out: dict[str, Owner] = {}
    order = [c for c in DISCONNECT_ROLES if c in categories] + [
        c for c in categories if c not in DISCONNECT_ROLES
    ]
    for category in order:
        role = DISCONNECT_ROLES.get(category, "unknown")
        entries = categories[category]
        if not isinstance(entries, list):
            raise InputError("a category must be a list", source=source, key=f"categories.{category}")
        for i, entry in enumerate(entries):
            key = f"categories.{category}[{i}]"
            if not isinstance(entry, dict):
                raise InputError("an entry must be an object", source=source, key=key)
            for org, sites in entry.items():
                if not isinstance(sites, dict):
                    raise InputError("an organisation must map to an object", source=source, key=key)
                owner = Owner(str(org), role, label)
                # {"https://homepage/": ["domain", ...], "performance": "true", ...}: lists are domains.
                for homepage, domains in sites.items():
                    if not isinstance(domains, list):
                        continue
                    for domain in domains:
                        n = normalise(domain) if isinstance(domain, str) else None
                        if n is None:
                            raise InputError(
                                f"{domain!r} is not a host name", source=source, key=f"{key}.{org}.{homepage}"
                            )
                        out.setdefault(n.host, owner)
    return TrackerList(source, "disconnect", out)


def _exodus(doc: Mapping[str, Any], source: str) -> TrackerList:
    import regex

    trackers = doc["trackers"]
    label = f"exodus {source.rsplit('/', 1)[-1]}"
    signatures: list[_Signature] = []
    for tid, tracker in trackers.items():
        key = f"trackers.{tid}"
        if not isinstance(tracker, dict):
            raise InputError("a tracker must be an object", source=source, key=key)
        name, signature = tracker.get("name"), tracker.get("network_signature")
        categories = tracker.get("categories") or []
        if not isinstance(name, str) or not isinstance(categories, list):
            raise InputError("a tracker needs a name and a list of categories", source=source, key=key)
        if not signature:  # many trackers are known by code signature only
            continue
        if not isinstance(signature, str) or len(signature) > MAX_SIGNATURE:
            raise InputError(
                f"network_signature must be a string of at most {MAX_SIGNATURE} characters",
                source=source,
                key=key + ".network_signature",
            )
        try:
            pattern = regex.compile(signature, regex.IGNORECASE)
        except (regex.error, ValueError, OverflowError, RecursionError) as exc:
            raise InputError(
                f"network_signature is not a regular expression: {exc}", source=source, key=key
            ) from None
        role = next((EXODUS_ROLES[c] for c in EXODUS_ROLES if c in categories), "unknown")
        signatures.append(_Signature(pattern, Owner(name, role, label)))
    return TrackerList(source, "exodus", {}, tuple(signatures))


def parse_trackers(data: bytes, source: str) -> TrackerList:
    """A Disconnect ``services.json`` or an Exodus tracker list, recognised by its content."""
    doc = _json(data, source)
    if isinstance(doc, dict) and isinstance(doc.get("categories"), dict):
        return _disconnect(doc, source)
    if isinstance(doc, dict) and isinstance(doc.get("trackers"), dict):
        return _exodus(doc, source)
    raise InputError(
        "neither a Disconnect services.json (an object with 'categories') nor an Exodus tracker list "
        "(an object with 'trackers')",
        source=source,
    )


def load_trackers(path: str) -> TrackerList:
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", source=path) from None
    return parse_trackers(data, path)


# ---------------------------------------------------------------- lookups


class Owners:
    """Owner lookups over the bundled table and any loaded tracker lists, memoised per host."""

    def __init__(self, trackers: Iterable[str | TrackerList] = ()) -> None:
        lists = [t if isinstance(t, TrackerList) else load_trackers(t) for t in trackers]
        # Tables in priority order for a tie at the same label depth: the bundled table first.
        self.tables: list[dict[str, Owner]] = [bundled_owners(), *(t.domains for t in lists if t.domains)]
        self.signatures: Sequence[_Signature] = tuple(s for t in lists for s in t.signatures)
        self.lists = lists
        self._memo: dict[str, Owner | None] = {}

    def lookup(self, host: str | None) -> Owner | None:
        name = normalise(host)
        if name is None or name.address:
            return None
        if name.host in self._memo:
            return self._memo[name.host]
        found = self._lookup(name.host, name.candidates())
        if len(self._memo) < 1 << 16:
            self._memo[name.host] = found
        return found

    def _lookup(self, host: str, candidates: tuple[str, ...]) -> Owner | None:
        for candidate in candidates:
            for table in self.tables:
                owner = table.get(candidate)
                if owner is not None:
                    return owner
        for sig in self.signatures:
            try:
                if sig.pattern.search(host, timeout=MATCH_TIMEOUT):
                    return sig.owner
            except TimeoutError:
                continue
        return None
