"""Differential runs: identifiers found by changing the device's values and watching what changes.

The idea of Agrigento (Continella et al., NDSS 2017) made practical: two captures of the same
actions, on two devices or on one device before and after its IDs were reset, each with its
profile. A value an app derives from a device identifier (hashed, encrypted, XOR-ed, in any
encoding nobody listed) changes exactly where the device's values change, and stays the same
while they do not; a nonce or a timestamp changes all the time.

:func:`compare` aligns the two runs by endpoint (method, host and path) and, within an endpoint,
by field (the key path a value travels under: query and form parameters, JSON paths, headers,
cookies, path segments; see :func:`phonehome.detect.discover.fields`). For each field it sees in
both runs:

- the same single value in A and in B: a **constant** (nothing about the device);
- more than one value within a run: **noise** (per-request values);
- one value in A, another in B: **derived** from the identifiers whose declared values differ
  between the profiles. When the field was seen at least twice in each run, its stability within
  a run is confirmed; seen once per run, it is reported only if the relation is explained.

The relation is explained where it can be (:data:`RELATIONS`): the value contains the identifier,
is a digest of it, or is it XOR-ed with one constant key (decode both values with the same
decoder, XOR each with its own device's identifier, and the two keys agree). Pure function; the
only I/O is :func:`read_run`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from phonehome.detect.discover import fields
from phonehome.detect.forms import forms_of
from phonehome.errors import InputError
from phonehome.model import Exchange, Notice
from phonehome.profile import Profile
from phonehome.sources import read_input

__all__ = ["RELATIONS", "Derived", "DifferentialResult", "Run", "compare", "differing", "explain", "read_run"]


@dataclass(slots=True)
class Run:
    """One side: its captures read into exchanges, and its device profile."""

    label: str
    profile: Profile
    exchanges: list[Exchange] = field(default_factory=list)
    warnings: list[Notice] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Derived:
    """A field whose value is derived from a device identifier."""

    identifiers: tuple[str, ...]  # profile labels it is derived from; several when it cannot be told
    method: str | None
    host: str | None
    path: str  # the endpoint's path, without the query
    where: str
    key: str | None
    field: str  # the full key path, e.g. "query:t" or "body:device.token"
    value_a: str
    value_b: str
    samples_a: int
    samples_b: int
    relation: str | None  # "xor constant 0x5a17..., base64", "sha256, hex", ...; None: not explained

    @property
    def description(self) -> str:
        names = self.identifiers[0] if len(self.identifiers) == 1 else "one of " + ", ".join(self.identifiers)
        text = f"an identifier derived from {names}"
        return f"{text} ({self.relation})" if self.relation else text


@dataclass(slots=True)
class DifferentialResult:
    a: Run
    b: Run
    differing: tuple[str, ...]  # profile labels whose values differ between A and B
    derived: list[Derived] = field(default_factory=list)
    noise: list[tuple[str, str]] = field(default_factory=list)  # (endpoint, field) that change within a run
    constant: int = 0  # fields with one value in both runs
    unpaired: int = 0  # endpoints seen in one run only


def read_run(label: str, paths: Sequence[str], profile: Profile) -> Run:
    """Read every capture of one run; an unreadable input is recorded, not raised."""
    run = Run(label, profile)
    for path in paths:
        try:
            _format, events = read_input(path)
            for event in events:
                if isinstance(event, Notice):
                    run.warnings.append(event)
                    if event.damage:
                        run.errors.append(str(event))
                else:
                    run.exchanges.append(event)
        except InputError as exc:
            run.errors.append(str(exc.located(path)))
    return run


def differing(a: Profile, b: Profile) -> dict[str, tuple[str, str, str, str | None]]:
    """Labels declared once in each profile with different values: label -> (kind, A, B, region)."""

    def single(profile: Profile) -> dict[str, tuple[str, str, str | None]]:
        seen: dict[str, list[tuple[str, str, str | None]]] = defaultdict(list)
        for ident in profile.identifiers:
            seen[ident.label].append((ident.kind, ident.value, ident.region))
        return {label: values[0] for label, values in seen.items() if len(values) == 1}

    one, two = single(a), single(b)
    return {
        label: (one[label][0], one[label][1], two[label][1], one[label][2])
        for label in one
        if label in two and one[label][1] != two[label][1] and one[label][0] == two[label][0]
    }


# --- relations ------------------------------------------------------------------------------------------


def _b64(text: str) -> bytes | None:
    # A "+" sent unescaped in a query string reads back as a space (HTML form encoding).
    stripped = text.strip().replace(" ", "+").rstrip("=")
    if len(stripped) < 4:
        return None
    try:
        return base64.b64decode(
            stripped.replace("-", "+").replace("_", "/") + "=" * (-len(stripped) % 4), validate=True
        )
    except (binascii.Error, ValueError):
        return None


def _hex(text: str) -> bytes | None:
    try:
        return bytes.fromhex(text) if len(text) % 2 == 0 and len(text) >= 2 else None
    except ValueError:
        return None


# How a value may be written on the wire: each decoder turns the text back into bytes.
DECODINGS: tuple[tuple[str, Callable[[str], bytes | None]], ...] = (
    ("plain", lambda text: text.encode("utf-8", "surrogateescape")),
    ("hex", _hex),
    ("base64", _b64),
)
_DIGESTS = ("md5", "sha1", "sha256", "sha512")


def _xor(data: bytes, key: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(data, key, strict=True))


def _period(key: bytes) -> bytes:
    """The shortest repeating unit of a key stream: a one-byte XOR key shows as 0x5a."""
    for size in range(1, len(key) + 1):
        if all(key[i] == key[i % size] for i in range(len(key))):
            return key[:size]
    return key


def _contains(da: bytes, db: bytes, fa: bytes, fb: bytes, _decoding: str) -> str | None:
    return "contains it" if fa in da and fb in db else None


def _digest(da: bytes, db: bytes, fa: bytes, fb: bytes, _decoding: str) -> str | None:
    for name in _DIGESTS:
        if hashlib.new(name, fa).digest() == da and hashlib.new(name, fb).digest() == db:
            return name
        if hashlib.new(name, fa).hexdigest().encode() in (da, da.lower()) and (
            hashlib.new(name, fb).hexdigest().encode() in (db, db.lower())
        ):
            return f"{name}, hex"
    return None


def _xor_constant(da: bytes, db: bytes, fa: bytes, fb: bytes, _decoding: str) -> str | None:
    if not (len(da) == len(fa) and len(db) == len(fb) and len(fa) == len(fb)) or len(fa) < 4:
        return None
    ka, kb = _xor(da, fa), _xor(db, fb)
    if ka != kb or not any(ka):
        return None
    unit = _period(ka)
    shown = unit.hex() if len(unit) <= 16 else unit[:16].hex() + "…"
    return f"xor constant 0x{shown}"


# Relations tried, in order, between the decoded values and the identifier's forms on each side.
RELATIONS: tuple[Callable[[bytes, bytes, bytes, bytes, str], str | None], ...] = (
    _contains,
    _digest,
    _xor_constant,
)


def explain(
    value_a: str, value_b: str, kind: str, ident_a: str, ident_b: str, region: str | None
) -> str | None:
    """How the two values follow from the identifier's two values, or None when no relation fits."""
    forms_a = dict(forms_of(kind, ident_a, region))
    forms_b = dict(forms_of(kind, ident_b, region))
    for decoding, decode in DECODINGS:
        da, db = decode(value_a), decode(value_b)
        if da is None or db is None:
            continue
        for form, fa_text in forms_a.items():
            fb_text = forms_b.get(form)
            if fb_text is None:
                continue
            fa, fb = fa_text.encode(), fb_text.encode()
            for relation in RELATIONS:
                found = relation(da, db, fa, fb, decoding)
                if found is not None:
                    parts = [found] + ([] if decoding == "plain" else [decoding])
                    if form not in ("plain", "as-given", "lower"):
                        parts.append(f"{form} form")
                    return ", ".join(parts)
    return None


# --- alignment ------------------------------------------------------------------------------------------

_Endpoint = tuple[str | None, str | None, str]


def _by_field(exchanges: Iterable[Exchange]) -> dict[_Endpoint, dict[str, list[tuple[str | None, str, str]]]]:
    """endpoint -> field path -> [(key, where, value)] in capture order."""
    out: dict[_Endpoint, dict[str, list[tuple[str | None, str, str]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for exchange in exchanges:
        if exchange.protocol not in ("http", "http2", "http3", "websocket"):
            continue
        path = (exchange.url or "").split("?", 1)[0]
        if "://" in path:
            path = "/" + path.split("://", 1)[1].partition("/")[2]
        endpoint = (exchange.method, exchange.host, path)
        for item in fields(exchange):
            out[endpoint][item.path].append((item.key, item.where, item.value))
    return out


def compare(a: Run, b: Run) -> DifferentialResult:
    """Align the two runs and classify every field seen in both."""
    changed = differing(a.profile, b.profile)
    result = DifferentialResult(a, b, tuple(changed))
    fields_a, fields_b = _by_field(a.exchanges), _by_field(b.exchanges)
    result.unpaired = len(set(fields_a) ^ set(fields_b))
    for endpoint in sorted(set(fields_a) & set(fields_b), key=lambda e: tuple(str(p) for p in e)):
        method, host, path = endpoint
        slots_a, slots_b = fields_a[endpoint], fields_b[endpoint]
        for slot in sorted(set(slots_a) & set(slots_b)):
            seen_a, seen_b = slots_a[slot], slots_b[slot]
            values_a = {value for _k, _w, value in seen_a}
            values_b = {value for _k, _w, value in seen_b}
            if len(values_a) > 1 or len(values_b) > 1:
                result.noise.append((f"{method or ''} {host or ''}{path}".strip(), slot))
                continue
            (value_a,), (value_b,) = values_a, values_b
            if value_a == value_b:
                result.constant += 1
                continue
            if not changed:
                continue
            explained = [
                (label, relation)
                for label, (kind, ident_a, ident_b, region) in changed.items()
                if (relation := explain(value_a, value_b, kind, ident_a, ident_b, region)) is not None
            ]
            stable = len(seen_a) >= 2 and len(seen_b) >= 2
            if not explained and not stable:
                continue  # seen once per run and unexplained: a nonce would look the same
            key, where, _value = seen_a[0]
            labels = (explained[0][0],) if explained else tuple(changed)
            result.derived.append(
                Derived(
                    identifiers=labels,
                    method=method,
                    host=host,
                    path=path,
                    where=where,
                    key=key,
                    field=slot,
                    value_a=value_a,
                    value_b=value_b,
                    samples_a=len(seen_a),
                    samples_b=len(seen_b),
                    relation=explained[0][1] if explained else None,
                )
            )
    return result
