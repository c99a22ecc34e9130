"""A policy: what the phone's owner agreed to, parsed once at start from TOML.

A policy file has one ``[policy]`` table (name, whether cleartext is ever acceptable, the countries
data may go to) and any number of ``[[allow]]`` and ``[[deny]]`` rules. A rule matches a finding when
every condition it states holds (``categories``, ``identifiers``, ``owners``, ``roles``, ``domains``,
``countries``: any of the listed values; ``encrypted``: exactly that); a rule with no condition matches
everything. How the rules combine is :mod:`phonehome.policy.rules`.

Everything is checked here, before any capture is read: an unknown table, key, category, role or
country code raises :class:`~phonehome.errors.InputError` naming the file, the line and the key.
``--policy`` takes a file or a bundled preset (``strict``, ``consented-cloud``, ``residency:IN,SG``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

from phonehome.attribute.owners import ROLES as OWNER_ROLES
from phonehome.errors import InputError
from phonehome.policy.countries import COUNTRY_NAMES
from phonehome.profile import KINDS
from phonehome.tomldoc import key_line, key_lines, parse_toml

__all__ = [
    "CATEGORIES",
    "PRESETS",
    "ROLES",
    "Match",
    "Policy",
    "Rule",
    "load_policy",
    "parse_policy",
]

# The categories a profile gives its identifiers, and "location" for position data.
CATEGORIES: tuple[str, ...] = (
    *dict.fromkeys(category for _kind, category in KINDS.values()),
    "contacts",
    "messages",
    "location",
    "custom",
)

# What a destination does (see Finding.role): the attribution's own vocabulary, so a policy can name
# exactly the roles findings carry.
ROLES: tuple[str, ...] = tuple(OWNER_ROLES)

# Bundled presets: name -> file under policy/presets. A preset that takes arguments is written
# "name:ARG,ARG" (only "residency", whose arguments are the allowed country codes).
PRESETS: dict[str, str] = {
    "strict": "strict.toml",
    "consented-cloud": "consented-cloud.toml",
    "residency": "residency.toml",
}
_PRESET_ARGS = frozenset({"residency"})

_TABLES = ("policy", "allow", "deny")
_POLICY_KEYS = ("name", "cleartext", "countries")
_RULE_KEYS = ("categories", "identifiers", "owners", "roles", "domains", "countries", "encrypted", "reason")


@dataclass(frozen=True, slots=True)
class Match:
    """The conditions of a rule; None means "any"."""

    categories: frozenset[str] | None = None
    identifiers: frozenset[str] | None = None
    owners: frozenset[str] | None = None  # case-folded
    roles: frozenset[str] | None = None
    domains: tuple[str, ...] | None = None  # lower-case, no leading dot
    countries: frozenset[str] | None = None
    encrypted: bool | None = None


@dataclass(frozen=True, slots=True)
class Rule:
    kind: str  # "allow" | "deny"
    index: int  # 1-based, counted per kind in file order
    source: str
    line: int | None
    match: Match
    reason: str  # what the rule says, in words

    @property
    def label(self) -> str:
        """E.g. ``deny #1 (policy.toml line 9): contacts may not leave``."""
        return f"{self.kind} #{self.index} ({_where(self.source, self.line)}): {self.reason}"


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    source: str  # the file, or "preset NAME"
    cleartext: bool = True  # is cleartext ever acceptable
    countries: frozenset[str] | None = None  # residency: the only countries data may go to
    cleartext_line: int | None = None
    countries_line: int | None = None
    allows: tuple[Rule, ...] = ()
    denies: tuple[Rule, ...] = ()

    @property
    def consent(self) -> bool:
        """Whether the owner agreed to anything leaving at all."""
        return bool(self.allows)

    def where(self, line: int | None) -> str:
        return _where(self.source, line)


def _where(source: str, line: int | None) -> str:
    return f"{source} line {line}" if line is not None else source


class _Reader:
    def __init__(self, text: str, source: str) -> None:
        self.text = text
        self.source = source
        self._lines: dict[str, int] | None = None

    def line(self, key: str) -> int | None:
        if self._lines is None:
            self._lines = key_lines(self.text)
        return key_line(self._lines, key)

    def error(self, message: str, key: str) -> InputError:
        return InputError(message, source=self.source, line=self.line(key), key=key)

    def strings(self, value: object, key: str) -> list[str]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise self.error("must be a string or a list of strings", key)
        if not value:
            raise self.error("empty list (leave the key out to mean any)", key)
        out = []
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                raise self.error("must be a non-empty string", f"{key}[{i}]")
            out.append(item.strip())
        return out

    def known(
        self, value: object, key: str, allowed: tuple[str, ...] | frozenset[str], what: str
    ) -> list[str]:
        out = []
        for i, item in enumerate(self.strings(value, key)):
            norm = item.upper() if what == "country code" else item.lower()
            if norm not in allowed:
                hint = (
                    " (ISO 3166-1 alpha-2, e.g. IN)"
                    if what == "country code"
                    else f"; known: {', '.join(allowed)}"
                )
                raise self.error(f"unknown {what} {item!r}{hint}", f"{key}[{i}]")
            out.append(norm)
        return out

    def boolean(self, value: object, key: str) -> bool:
        if not isinstance(value, bool):
            raise self.error("must be true or false", key)
        return value

    def keys(self, table: dict[str, Any], allowed: tuple[str, ...], prefix: str) -> None:
        for key in table:
            if key not in allowed:
                raise self.error(f"unknown key {key!r}; allowed: {', '.join(allowed)}", f"{prefix}.{key}")


def _rule(reader: _Reader, kind: str, index: int, table: object) -> Rule:
    key = f"{kind}[{index}]"
    if not isinstance(table, dict):
        raise reader.error(f"each {kind} rule must be a table: write [[{kind}]]", key)
    reader.keys(table, _RULE_KEYS, key)
    # Each condition as written (for the rule's words) and as matched.
    written: dict[str, list[str]] = {}
    checks: dict[str, tuple[tuple[str, ...] | frozenset[str], str] | None] = {
        "categories": (CATEGORIES, "category"),
        "identifiers": None,
        "owners": None,
        "roles": (ROLES, "role"),
        "domains": None,
        "countries": (frozenset(COUNTRY_NAMES), "country code"),
    }
    for name, check in checks.items():
        if name in table:
            where = f"{key}.{name}"
            value = table[name]
            written[name] = (
                reader.strings(value, where) if check is None else reader.known(value, where, *check)
            )
    match = Match(
        categories=_set(written.get("categories")),
        identifiers=_set(written.get("identifiers"), str.lower),
        owners=_set(written.get("owners"), str.casefold),
        roles=_set(written.get("roles")),
        domains=tuple(d.lower().strip(".") for d in written["domains"]) if "domains" in written else None,
        countries=_set(written.get("countries")),
        encrypted=reader.boolean(table["encrypted"], f"{key}.encrypted") if "encrypted" in table else None,
    )
    if "reason" in table:
        if not isinstance(table["reason"], str) or not table["reason"].strip():
            raise reader.error("must be a non-empty string", f"{key}.reason")
        words = " ".join(table["reason"].split())
    else:
        words = _describe(kind, match, written)
    return Rule(kind, index + 1, reader.source, reader.line(key), match, words)


def _set(values: list[str] | None, norm: Callable[[str], str] | None = None) -> frozenset[str] | None:
    if values is None:
        return None
    return frozenset(norm(v) for v in values) if norm else frozenset(values)


def _describe(kind: str, match: Match, written: dict[str, list[str]]) -> str:
    """A rule in words, from its conditions as written: "contacts, messages may not leave"."""
    what = ", ".join([*written.get("categories", ()), *written.get("identifiers", ())]) or "anything"
    text = what + (" may leave" if kind == "allow" else " may not leave")
    to = [*written.get("owners", ()), *written.get("roles", ()), *written.get("domains", ())]
    if to:
        text += " to " + ", ".join(to)
    if "countries" in written:
        text += " in " + ", ".join(written["countries"])
    if match.encrypted is not None:
        text += " encrypted" if match.encrypted else " in clear text"
    return text


def parse_policy(text: str, source: str) -> Policy:
    """Parse a policy's TOML ``text``; ``source`` names it in errors and in each rule's label."""
    data = parse_toml(text, source)
    reader = _Reader(text, source)
    for key, value in data.items():
        if key not in _TABLES:
            raise reader.error(f"unknown table [{key}]; allowed: [policy], [[allow]], [[deny]]", key)
        if key == "policy" and not isinstance(value, dict):
            raise reader.error("policy must be a table: write [policy]", key)
        if key != "policy" and not isinstance(value, list):
            raise reader.error(f"{key} must be an array of tables: write [[{key}]]", key)
    head: dict[str, Any] = data.get("policy", {})
    reader.keys(head, _POLICY_KEYS, "policy")
    name = Path(source).stem
    if "name" in head:
        if not isinstance(head["name"], str) or not head["name"].strip():
            raise reader.error("must be a non-empty string", "policy.name")
        name = " ".join(head["name"].split())
    cleartext = reader.boolean(head["cleartext"], "policy.cleartext") if "cleartext" in head else True
    countries = (
        _set(reader.known(head["countries"], "policy.countries", frozenset(COUNTRY_NAMES), "country code"))
        if "countries" in head
        else None
    )
    return Policy(
        name=name,
        source=source,
        cleartext=cleartext,
        countries=countries,
        cleartext_line=reader.line("policy.cleartext") if "cleartext" in head else None,
        countries_line=reader.line("policy.countries") if "countries" in head else None,
        allows=tuple(_rule(reader, "allow", i, t) for i, t in enumerate(data.get("allow", []))),
        denies=tuple(_rule(reader, "deny", i, t) for i, t in enumerate(data.get("deny", []))),
    )


def _preset(spec: str) -> Policy:
    name, _, arg = spec.partition(":")
    text = resources.files("phonehome.policy").joinpath("presets", PRESETS[name]).read_text(encoding="utf-8")
    policy = parse_policy(text, f"preset {name}")
    if name not in _PRESET_ARGS:
        if arg:
            raise InputError(f"preset {name!r} takes no arguments", source=spec)
        return policy
    codes = [c.strip().upper() for c in arg.split(",") if c.strip()]
    if not codes:
        raise InputError(f"preset {name!r} needs countries, e.g. {name}:IN,SG", source=spec)
    for code in codes:
        if code not in COUNTRY_NAMES:
            raise InputError(f"unknown country code {code!r} (ISO 3166-1 alpha-2, e.g. IN)", source=spec)
    return replace(policy, name=f"{policy.name} ({', '.join(codes)})", countries=frozenset(codes))


def load_policy(spec: str) -> Policy:
    """The policy named by ``--policy``: a bundled preset (``strict``, ``residency:IN``) or a TOML file."""
    if spec.partition(":")[0] in PRESETS and not Path(spec).exists():
        return _preset(spec)
    path = Path(spec)
    try:
        data = path.read_bytes()
    except OSError as exc:
        known = ", ".join(f"{p}:CC,CC" if p in _PRESET_ARGS else p for p in PRESETS)
        raise InputError(
            f"cannot read policy: {exc.strerror or exc} (and it is not a preset: {known})", source=spec
        ) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InputError("policy is not UTF-8 text", source=spec, line=line, offset=exc.start) from None
    return parse_policy(text, spec)
