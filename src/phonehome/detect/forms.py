"""Normal forms of an identifier: the ways apps and SDKs really write the same value.

A table maps each identifier kind to a function that lists ``(form name, text)`` pairs. The
encodings (URL, base64, hex) and digests are applied on top of these in :mod:`needles`.
"""

from __future__ import annotations

from collections.abc import Callable

Forms = list[tuple[str, str]]


def _casings(value: str) -> Forms:
    out = [("as-given", value), ("lower", value.lower()), ("upper", value.upper())]
    title = " ".join(w[:1].upper() + w[1:].lower() for w in value.split(" "))
    out.append(("title", title))
    return out


def _imei(value: str) -> Forms:
    # Many SDKs drop the Luhn check digit (3GPP TS 23.003 §6.2.1: the check digit is not transmitted).
    return [("plain", value), ("no-check-digit", value[:14])]


def _digits(value: str) -> Forms:
    return [("plain", value)]


def _phone(value: str, region: str | None = None) -> Forms:
    # Imported here: forms are made when a profile is compiled, which most audits find cached.
    import phonenumbers

    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return [("as-given", value)]
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    national = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
    international = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    significant = phonenumbers.national_significant_number(number)
    national_digits = "".join(c for c in national if c.isdigit())
    out = [
        ("e164", e164),
        ("e164-digits", e164[1:]),
        ("international-idd", "00" + e164[1:]),
        ("international", international),
        ("national", national),
        ("national-digits", national_digits),
        ("significant", significant),
    ]
    return out


def _mac(value: str) -> Forms:
    octets = value.lower().replace("-", ":").split(":")
    out: Forms = []
    for name, sep in (("colon", ":"), ("dash", "-"), ("bare", "")):
        text = sep.join(octets)
        out.append((f"{name}-lower", text))
        out.append((f"{name}-upper", text.upper()))
    bare = "".join(octets)
    out.append(("dotted", f"{bare[0:4]}.{bare[4:8]}.{bare[8:12]}"))
    return out


def _uuid(value: str) -> Forms:
    v = value.lower()
    bare = v.replace("-", "")
    return [("lower", v), ("upper", v.upper()), ("bare-lower", bare), ("bare-upper", bare.upper())]


def _hex(value: str) -> Forms:
    return [("lower", value.lower()), ("upper", value.upper())]


def _email(value: str) -> Forms:
    return [("as-given", value), ("lower", value.lower())]


def _serial(value: str) -> Forms:
    return [("as-given", value), ("upper", value.upper()), ("lower", value.lower())]


def _opaque(value: str) -> Forms:
    return [("as-given", value)]


def _cell(value: str) -> Forms:
    # Cell identities travel in decimal (Android's CellIdentity getters) or hex (modem logs, some SDKs).
    number = int(value)
    return [("decimal", value), ("hex-lower", f"{number:x}"), ("hex-upper", f"{number:X}")]


FORMS: dict[str, Callable[[str], Forms]] = {
    "imei": _imei,
    "imsi": _digits,
    "iccid": _digits,
    "phone": _phone,
    "mac": _mac,
    "uuid": _uuid,
    "hex": _hex,
    "email": _email,
    "serial": _serial,
    "text": _casings,
    "name": _casings,
    "opaque": _opaque,
    "cell": _cell,
}


def forms_of(kind: str, value: str, region: str | None = None) -> Forms:
    """Distinct normal forms of ``value``, first occurrence of each text kept."""
    raw = _phone(value, region) if kind == "phone" else FORMS.get(kind, _opaque)(value)
    seen: set[str] = set()
    out: Forms = []
    for name, text in raw:
        if text and text not in seen:
            seen.add(text)
            out.append((name, text))
    return out
