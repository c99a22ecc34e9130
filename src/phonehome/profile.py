"""The device profile: which identifiers the user declares, each checked and brought to one canonical form.

A profile is a TOML file (read with :mod:`tomllib`) with four tables: ``[device]`` (name, phone-number
region, an optional contacts export), ``[identifiers]`` (IMEI, IMSI, MAC addresses, ...), ``[[contacts]]``
and ``[[messages]]``. It is parsed once, before any capture is read; anything wrong raises
:class:`~phonehome.errors.InputError` naming the file, the line and the dotted key (``contacts[2].phone``,
indices counted from 0), or for a contacts export the export file, its line and the vCard property or
CSV column.

How each key is treated is data: :data:`KINDS` maps a known key to its kind (how it is checked and
expanded into needles later) and its category (what it says about the user); any other key is an opaque
string. :func:`parse_profile` is the sans-I/O core; :func:`load_profile` reads the file.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import quopri
import re
import sys
import uuid
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

from phonehome.cache import cache_folder, map_entry, package_version, save_entry
from phonehome.errors import InputError
from phonehome.tomldoc import key_line, key_lines, parse_toml

__all__ = [
    "KINDS",
    "MCCS",
    "Identifier",
    "IdentifierTable",
    "Place",
    "Profile",
    "load_profile",
    "luhn_check_digit",
    "luhn_valid",
    "parse_profile",
]


@dataclass(frozen=True, slots=True)
class Identifier:
    """One declared value to look for in the traffic, already in its canonical form."""

    label: str  # profile key ("imei", "udid") or "contact.phone", "contact.email", "contact.name", ...
    kind: str  # how to expand it into needles: see KINDS
    category: str  # device, subscriber, network, account, contacts, messages, custom
    value: str  # phone: E.164; mac: lower-case colon form; uuid: lower-case dashed; imei: 15 digits
    owner: str | None = None  # for contacts, the contact's name; for messages, the peer
    region: str | None = None  # for phones: the ISO region the number belongs to


@dataclass(frozen=True, slots=True)
class Place:
    """A declared place (``[location]``): traffic carrying coordinates within its radius leaks it."""

    name: str  # "location" for a single [location] table, else the table name or location[i]
    latitude: float  # WGS 84 decimal degrees
    longitude: float
    radius_m: float


# A row of an IdentifierTable: its ASCII JSON array, read without json.loads' checks of the
# text's encoding and surrounding whitespace (a third of the cost of making an identifier).
_row = json.JSONDecoder().raw_decode


class IdentifierTable(Sequence[Identifier]):
    """Identifiers kept as rows of JSON text, each made into an :class:`Identifier` when first used.

    A cached 50,000-contact profile has 150,000 identifiers, and an audit looks at the few that
    matched: making every one of them would be most of its start-up. ``digest`` (SHA-256 of the
    rows) names the table, so the needles compiled from it are found in the cache without reading
    it. Equal to any sequence of the same identifiers in the same order.
    """

    __slots__ = ("_made", "_offsets", "_rows", "digest")

    def __init__(self, rows: bytes | memoryview, offsets: Sequence[int], digest: str) -> None:
        self._rows = rows  # row i is rows[offsets[i]:offsets[i + 1]]: a JSON array of the six fields
        self._offsets = offsets
        self._made: dict[int, Identifier] = {}
        self.digest = digest

    @classmethod
    def of(cls, identifiers: Iterable[Identifier]) -> IdentifierTable:
        offsets = array("Q", [0])
        rows = []
        for i in identifiers:
            row = json.dumps([i.label, i.kind, i.category, i.value, i.owner, i.region], ensure_ascii=True)
            rows.append(row)
            offsets.append(offsets[-1] + len(row) + 1)
        data = ("\n".join(rows) + "\n").encode("ascii") if rows else b""
        return cls(data, offsets, hashlib.sha256(data).hexdigest())

    def __len__(self) -> int:
        return len(self._offsets) - 1

    @overload
    def __getitem__(self, index: int) -> Identifier: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[Identifier, ...]: ...
    def __getitem__(self, index: int | slice) -> Identifier | tuple[Identifier, ...]:
        if isinstance(index, slice):
            return tuple(self[i] for i in range(*index.indices(len(self))))
        made = self._made.get(index)
        if made is None:
            size = len(self)
            if not -size <= index < size:
                raise IndexError("identifier index out of range")
            index %= size
            made = self._made.get(index)
            if made is None:
                row = self._rows[self._offsets[index] : self._offsets[index + 1]]
                made = self._made[index] = Identifier(*_row(bytes(row).decode("ascii"))[0])
        return made

    def __iter__(self) -> Iterator[Identifier]:
        return (self[i] for i in range(len(self)))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, IdentifierTable):
            return self.digest == other.digest
        if isinstance(other, Sequence):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return f"IdentifierTable({len(self)} identifiers)"

    def dump(self) -> bytes:
        """The row offsets (native "Q" array) and the rows, end to end."""
        return array("Q", self._offsets).tobytes() + bytes(self._rows)

    def __reduce__(self) -> tuple[Any, ...]:
        # Sent to a worker as its rows, still unmade.
        return (IdentifierTable, (bytes(self._rows), array("Q", self._offsets), self.digest))


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    source: str
    region: str | None  # ISO region for phone numbers written without +
    identifiers: Sequence[Identifier]  # a tuple, or for a large profile an IdentifierTable
    places: tuple[Place, ...] = ()


# Known identifier keys: key -> (kind, category). Keys are matched case-insensitively, with "-" read as
# "_"; any other key is ("opaque", "custom").
KINDS: dict[str, tuple[str, str]] = {
    "imei": ("imei", "device"),
    "imei2": ("imei", "device"),
    "meid": ("hex", "device"),  # 3GPP2 TS S.R0048: 14 hex digits
    "android_id": ("hex", "device"),
    "gsf_id": ("hex", "device"),
    "advertising_id": ("uuid", "device"),
    "gaid": ("uuid", "device"),
    "idfa": ("uuid", "device"),
    "idfv": ("uuid", "device"),
    "wifi_mac": ("mac", "device"),
    "bt_mac": ("mac", "device"),
    "mac": ("mac", "device"),
    "serial": ("serial", "device"),
    "udid": ("opaque", "device"),
    "device_id": ("opaque", "device"),
    "imsi": ("imsi", "subscriber"),
    "iccid": ("iccid", "subscriber"),
    "phone": ("phone", "subscriber"),
    "msisdn": ("phone", "subscriber"),
    "carrier": ("text", "subscriber"),
    "carrier_code": ("opaque", "subscriber"),
    "mcc_mnc": ("opaque", "subscriber"),
    "email": ("email", "account"),
    "account": ("email", "account"),
    "hostname": ("opaque", "network"),
    "ssid": ("text", "network"),
    "bssid": ("mac", "network"),
    # Serving-cell identity (3GPP TS 23.003 §4): locates a phone to a cell, so category "location".
    "cell_id": ("cell", "location"),
    "lac": ("cell", "location"),
    "tac": ("cell", "location"),
    "ecgi": ("opaque", "location"),
}
_CUSTOM = ("opaque", "custom")

# Allowed length range of each "hex" key, in hex digits.
_HEX_LENGTHS: dict[str, tuple[int, int]] = {
    "android_id": (16, 16),  # Settings.Secure.ANDROID_ID: a 64-bit value as 16 hex digits
    "meid": (14, 14),
    "gsf_id": (1, 16),  # a 64-bit value; some tools drop leading zeros
}

# Mobile country codes assigned by ITU-T E.212 (plus 001 for test networks and 999 for internal use);
# the first three digits of every IMSI.
MCCS: frozenset[int] = frozenset(
    (
        *(1, 999, 901, 902, 991, 995),
        # Europe
        *(202, 204, 206, 208, 212, 213, 214, 216, 218, 219, 220, 221, 222, 225, 226, 228, 230, 231, 232),
        *(234, 235, 238, 240, 242, 244, 246, 247, 248, 250, 255, 257, 259, 260, 262, 266, 268, 270, 272),
        *(274, 276, 278, 280, 282, 283, 284, 286, 288, 289, 290, 292, 293, 294, 295, 297),
        # North America and the Caribbean
        *(302, 308, 310, 311, 312, 313, 314, 315, 316, 330, 332, 334, 338, 340, 342, 344, 346, 348, 350),
        *(352, 354, 356, 358, 360, 362, 363, 364, 365, 366, 368, 370, 372, 374, 376),
        # Asia and the Middle East
        *(400, 401, 402, 404, 405, 406, 410, 412, 413, 414, 415, 416, 417, 418, 419, 420, 421, 422, 424),
        *(425, 426, 427, 428, 429, 430, 431, 432, 434, 436, 437, 438, 440, 441, 450, 452, 454, 455, 456),
        *(457, 460, 461, 466, 467, 470, 472),
        # Oceania
        *(502, 505, 510, 514, 515, 520, 525, 528, 530, 534, 535, 536, 537, 539, 540, 541, 542, 543, 544),
        *(545, 546, 547, 548, 549, 550, 551, 552, 553, 554, 555),
        # Africa: every code from 602 to 659 but 644 and 656
        *(code for code in range(602, 660) if code not in (644, 656)),
        # South and Central America
        *(702, 704, 706, 708, 710, 712, 714, 716, 722, 724, 730, 732, 734, 736, 738, 740, 742, 744, 746),
        *(748, 750),
    )
)

_TABLES: dict[str, type | tuple[type, ...]] = {
    "device": dict,
    "identifiers": dict,
    "network": dict,
    "location": (dict, list),
    "contacts": list,
    "messages": list,
}
_TABLES_TEXT = "[device], [identifiers], [network], [location], [[contacts]], [[messages]]"
# [network]: what locates a phone as well as GPS does (Wi-Fi access points, serving cells).
_NETWORK_KEYS = ("bssid", "ssid", "cell_id", "lac", "tac", "ecgi")
_PLACE_KEYS = ("name", "latitude", "longitude", "radius_m")
DEFAULT_RADIUS_M = 100.0
_DEVICE_KEYS = ("name", "region", "contacts_file")
_CONTACT_KEYS = ("name", "phone", "phones", "email", "emails")
_MESSAGE_KEYS = ("peer", "text")


class _Refused(Exception):
    """A value that cannot be accepted; the caller adds where it stood."""


# --- Luhn (ISO/IEC 7812-1 annex B), used by IMEI (3GPP TS 23.003 §6.2.1) and ICCID (ITU-T E.118) ----------


def _luhn_sum(digits: str, double_last: bool) -> int:
    total = 0
    double = double_last
    for char in reversed(digits):
        digit = ord(char) - 48
        if double:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
        double = not double
    return total


def luhn_check_digit(digits: str) -> str:
    """The Luhn check digit to append to ``digits``."""
    return str(-_luhn_sum(digits, True) % 10)


def luhn_valid(digits: str) -> bool:
    """Whether ``digits`` (check digit last) passes the Luhn check."""
    return len(digits) > 1 and _luhn_sum(digits, False) % 10 == 0


# --- normalisers: raw string -> (canonical value, phone region) -------------------------------------------

_SEPARATORS = re.compile(r"[\s./-]+")


def _digits(raw: str, what: str) -> str:
    digits = _SEPARATORS.sub("", raw)
    if not (digits.isascii() and digits.isdigit()):
        raise _Refused(
            f"{what} {raw!r} must be digits (spaces, dashes, slashes or dots between them are fine)"
        )
    return digits


def _norm_imei(raw: str, key: str, region: str | None) -> tuple[str, str | None]:
    digits = _digits(raw, "IMEI")
    if len(digits) == 14:
        digits += luhn_check_digit(digits)
    elif len(digits) == 15:
        if not luhn_valid(digits):
            expected = luhn_check_digit(digits[:14])
            raise _Refused(
                f"IMEI {raw!r} fails its Luhn check (with these first 14 digits the last would be {expected})"
            )
    elif len(digits) == 16:
        raise _Refused(f"{raw!r} has 16 digits, an IMEISV; give the 15-digit IMEI (dial *#06#)")
    else:
        raise _Refused(
            f"IMEI {raw!r} has {len(digits)} digits; an IMEI has 15 (or 14 without the check digit)"
        )
    if digits.count("0") == 15:
        raise _Refused("the all-zero IMEI is an emulator's placeholder and identifies no phone")
    return digits, None


def _norm_imsi(raw: str, key: str, region: str | None) -> tuple[str, str | None]:
    digits = _digits(raw, "IMSI")
    if not 14 <= len(digits) <= 15:
        raise _Refused(f"IMSI {raw!r} has {len(digits)} digits; an IMSI has 14 or 15 (3GPP TS 23.003 §2.2)")
    if int(digits[:3]) not in MCCS:
        raise _Refused(
            f"IMSI {raw!r} starts with {digits[:3]}, which is not a mobile country code (ITU-T E.212)"
        )
    return digits, None


def _norm_iccid(raw: str, key: str, region: str | None) -> tuple[str, str | None]:
    digits = _digits(raw, "ICCID")
    if not 18 <= len(digits) <= 20:
        raise _Refused(f"ICCID {raw!r} has {len(digits)} digits; an ICCID has 18 to 20")
    if not digits.startswith("89"):
        raise _Refused(f"ICCID {raw!r} must start with 89, the telecommunications prefix (ITU-T E.118)")
    if len(digits) >= 19 and not luhn_valid(digits):
        raise _Refused(f"ICCID {raw!r} fails its Luhn check")
    return digits, None


# Why phonenumbers refuses a number, by the names of its reasons (NumberParseException's error
# types, then ValidationResult's).
_PARSE_ERRORS = {
    "INVALID_COUNTRY_CODE": "has no valid country code",
    "NOT_A_NUMBER": "is not a phone number",
    "TOO_SHORT_AFTER_IDD": "is too short",
    "TOO_SHORT_NSN": "is too short",
    "TOO_LONG": "is too long",
}
_POSSIBLE_ERRORS = {
    "INVALID_COUNTRY_CODE": "has no valid country code",
    "TOO_SHORT": "is too short",
    "TOO_LONG": "is too long",
    "INVALID_LENGTH": "has a length no number there has",
}


def _reason(table: dict[str, str], kind: type, code: int, otherwise: str) -> str:
    return next((text for name, text in table.items() if getattr(kind, name) == code), otherwise)


def _norm_phone(raw: str, key: str, region: str | None) -> tuple[str, str | None]:
    # Imported here: a profile read from the cache, as most audits' are, needs no phone-number data.
    import phonenumbers

    text = raw.strip()
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        if region is None and exc.error_type == phonenumbers.NumberParseException.INVALID_COUNTRY_CODE:
            raise _Refused(
                f"phone number {raw!r} has no country code: write it as +<country code> <number>,"
                " or set region in [device]"
            ) from None
        raise _Refused(
            f"phone number {raw!r} "
            + _reason(_PARSE_ERRORS, phonenumbers.NumberParseException, exc.error_type, "cannot be read")
        ) from None
    reason = phonenumbers.is_possible_number_with_reason(number)
    if reason not in (
        phonenumbers.ValidationResult.IS_POSSIBLE,
        phonenumbers.ValidationResult.IS_POSSIBLE_LOCAL_ONLY,
    ):
        where = f" (read with region {region})" if region and not text.startswith("+") else ""
        why = _reason(_POSSIBLE_ERRORS, phonenumbers.ValidationResult, reason, "is not possible")
        raise _Refused(f"phone number {raw!r} {why}{where}")
    if reason == phonenumbers.ValidationResult.IS_POSSIBLE_LOCAL_ONLY:
        raise _Refused(f"phone number {raw!r} lacks its area code")
    number_region = phonenumbers.region_code_for_number(number) or phonenumbers.region_code_for_country_code(
        number.country_code or 0
    )
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    # "ZZ": unknown; "001": a non-geographic number (+800, +882, ...)
    return e164, None if number_region in ("ZZ", "001") else number_region


_MAC_SEPARATED = re.compile(r"[0-9a-f]{1,2}([:-])[0-9a-f]{1,2}(?:\1[0-9a-f]{1,2}){4}")
_MAC_DOTTED = re.compile(r"[0-9a-f]{4}\.[0-9a-f]{4}\.[0-9a-f]{4}")
_MAC_BARE = re.compile(r"[0-9a-f]{12}")
_MAC_PLACEHOLDERS = {
    "00:00:00:00:00:00": "the all-zero MAC address identifies no device",
    "ff:ff:ff:ff:ff:ff": "ff:ff:ff:ff:ff:ff is the broadcast address, not a device's",
    "02:00:00:00:00:00": "02:00:00:00:00:00 is the placeholder Android gives apps instead of the real MAC",
}


def _norm_mac(raw: str, key: str, region: str | None) -> tuple[str, str | None]:
    text = raw.strip().lower()
    if match := _MAC_SEPARATED.fullmatch(text):
        octets = [octet.zfill(2) for octet in text.split(match.group(1))]
    elif _MAC_DOTTED.fullmatch(text) or _MAC_BARE.fullmatch(text):
        bare = text.replace(".", "")
        octets = [bare[i : i + 2] for i in range(0, 12, 2)]
    else:
        raise _Refused(f"MAC address {raw!r} must be 6 octets, like 02:1a:11:f0:aa:b3 (or with - . or none)")
    value = ":".join(octets)
    if value in _MAC_PLACEHOLDERS:
        raise _Refused(_MAC_PLACEHOLDERS[value])
    return value, None


def _norm_uuid(raw: str, key: str, region: str | None) -> tuple[str, str | None]:
    try:
        value = uuid.UUID(raw.strip())
    except ValueError:
        raise _Refused(f"{raw!r} is not a UUID (like 5ac6a0ff-8d18-47bc-a902-2812cf0c251e)") from None
    if value.int == 0:
        raise _Refused(
            "the all-zero UUID is what the phone sends when ad tracking is limited; it identifies nobody"
        )
    return str(value), None


_HEX = re.compile(r"[0-9a-f]+")


def _norm_hex(raw: str, key: str, region: str | None) -> tuple[str, str | None]:
    text = raw.strip().lower()
    low, high = _HEX_LENGTHS.get(key, (1, 64))
    if not _HEX.fullmatch(text):
        raise _Refused(f"{raw!r} must be hex digits (0-9, a-f)")
    if not low <= len(text) <= high:
        size = str(low) if low == high else f"{low} to {high}"
        raise _Refused(f"{raw!r} has {len(text)} hex digits; {key} has {size}")
    return text, None


_WHITESPACE = re.compile(r"\s")


def _norm_serial(raw: str, key: str, region: str | None) -> tuple[str, str | None]:
    text = raw.strip()
    if _WHITESPACE.search(text):
        raise _Refused(f"serial number {raw!r} must not contain spaces")
    if text.lower() == "unknown":
        raise _Refused("'unknown' is what Android gives apps instead of the serial number; give the real one")
    return text, None


def _norm_email(raw: str, key: str, region: str | None) -> tuple[str, str | None]:
    text = raw.strip()
    if text[:7].lower() == "mailto:":
        text = text[7:]
    local, at, domain = text.rpartition("@")
    labels = domain.split(".")
    if not at or not local or len(labels) < 2 or not all(labels) or _WHITESPACE.search(text):
        raise _Refused(f"e-mail address {raw!r} needs a local part, @ and a domain with a dot")
    return text, None


def _norm_name(raw: str, key: str, region: str | None) -> tuple[str, str | None]:
    return " ".join(raw.split()), None


def _norm_plain(raw: str, key: str, region: str | None) -> tuple[str, str | None]:
    return raw.strip(), None


def _norm_cell(raw: str, key: str, region: str | None) -> tuple[str, str | None]:
    # A cell ID, LAC or TAC is a number (3GPP TS 23.003 §4.1, §19.4.2.3); tools print it in decimal or
    # as 0x-prefixed hex. The canonical form is decimal.
    text = raw.strip().lower()
    try:
        number = int(text, 16) if text.startswith("0x") else int(_digits(text, key))
    except ValueError:
        raise _Refused(f"{key} {raw!r} must be a number (decimal, or hex written 0x...)") from None
    if number <= 0:
        raise _Refused(f"{key} {raw!r} must be above 0")
    return str(number), None


_NORMALISERS: dict[str, Callable[[str, str, str | None], tuple[str, str | None]]] = {
    "imei": _norm_imei,
    "imsi": _norm_imsi,
    "iccid": _norm_iccid,
    "phone": _norm_phone,
    "mac": _norm_mac,
    "uuid": _norm_uuid,
    "hex": _norm_hex,
    "serial": _norm_serial,
    "email": _norm_email,
    "name": _norm_name,
    "text": _norm_plain,
    "opaque": _norm_plain,
    "cell": _norm_cell,
}


def _kind_of(key: str) -> tuple[str, str, str]:
    """(label, kind, category) for an identifier key."""
    known = key.lower().replace("-", "_")
    if known in KINDS:
        return (known, *KINDS[known])
    return (key, *_CUSTOM)


# --- contacts exports -------------------------------------------------------------------------------------


@dataclass(slots=True)
class _FileContact:
    name: str | None = None
    line: int = 0
    # (raw value, line, vCard property or CSV column)
    phones: list[tuple[str, int, str]] = field(default_factory=list)
    emails: list[tuple[str, int, str]] = field(default_factory=list)


def _decode_export(data: bytes, source: str) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:  # a UTF-16 byte-order mark, then bytes that are not UTF-16
            message = f"contacts file marked as UTF-16 is not UTF-16 text ({exc.reason})"
            raise InputError(message, source=source, offset=exc.start) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252")  # what Outlook on Windows writes
    except UnicodeDecodeError:
        return data.decode("latin-1")


_NEWLINE = re.compile(r"\r\n|\r|\n")


def _is_vcard(text: str) -> bool:
    for line in _NEWLINE.split(text, 50):
        if line.strip():
            return line.strip().upper().startswith("BEGIN:VCARD")
    return False


def _is_quoted_printable(line: str) -> bool:
    colon = line.find(":")
    return colon > 0 and "QUOTED-PRINTABLE" in line[:colon].upper()


def _vcard_logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """Unfolded content lines with the number of the physical line each starts on."""
    current: str | None = None
    start = 0
    quoted_printable = False
    for number, line in enumerate(_NEWLINE.split(text), 1):
        if current is not None:
            if quoted_printable and current.endswith("="):  # RFC 2045 §6.7 soft line break (vCard 2.1)
                current = current[:-1] + line
                continue
            if line[:1] in (" ", "\t"):  # RFC 6350 §3.2 folding
                current += line[1:]
                continue
            yield start, current
        current, start = line, number
        quoted_printable = _is_quoted_printable(line)
    if current is not None:
        yield start, current


def _split_unquoted(text: str, separator: str) -> list[str]:
    if '"' not in text:
        return text.split(separator)
    pieces, quoted, begin = [], False, 0
    for index, char in enumerate(text):
        if char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            pieces.append(text[begin:index])
            begin = index + 1
    pieces.append(text[begin:])
    return pieces


def _vcard_property(line: str) -> tuple[str, dict[str, list[str]], str] | None:
    """(NAME, {PARAM: [values]}, raw value) of a content line, or None if it is not one."""
    colon = line.find(":")
    if colon <= 0:
        return None
    if '"' in line[:colon]:  # a quoted parameter value may hold a colon (RFC 6350 §3.3)
        quoted = False
        for index, char in enumerate(line):
            if char == '"':
                quoted = not quoted
            elif char == ":" and not quoted:
                colon = index
                break
    head = _split_unquoted(line[:colon], ";")
    name = head[0].rpartition(".")[2].strip().upper()  # drop a group prefix: item1.TEL
    params: dict[str, list[str]] = {}
    for param in head[1:]:
        pname, eq, pvalue = param.partition("=")
        if not eq:  # vCard 2.1 bare parameter: TEL;CELL;QUOTED-PRINTABLE
            bare = pname.strip().upper()
            pname = "ENCODING" if bare in ("QUOTED-PRINTABLE", "BASE64", "8BIT", "7BIT", "B") else "TYPE"
            pvalue = bare
        values = [v.strip().strip('"') for v in _split_unquoted(pvalue, ",")]
        params.setdefault(pname.strip().upper(), []).extend(values)
    return name, params, line[colon + 1 :]


_VCARD_ESCAPE = re.compile(r"\\(.)")


def _vcard_unescape(text: str) -> str:
    # RFC 6350 §3.4: \n, \, \; \\ (vCard 3.0 also writes \N)
    return _VCARD_ESCAPE.sub(lambda m: "\n" if m.group(1) in "nN" else m.group(1), text)


def _vcard_value(params: dict[str, list[str]], value: str) -> str:
    encodings = [e.upper() for e in params.get("ENCODING", ())]
    if "QUOTED-PRINTABLE" in encodings:
        data = quopri.decodestring(value.encode("utf-8"))
        charset = (params.get("CHARSET") or ["utf-8"])[0]
        try:
            return data.decode(charset)
        except (LookupError, UnicodeDecodeError):
            return data.decode("latin-1")
    return value


def _vcard_components(value: str) -> list[str]:
    return [_vcard_unescape(part) for part in re.split(r"(?<!\\);", value)]


_VCARD_NAME = re.compile(r"[ \t]*(?:[A-Za-z0-9-]+\.)?([A-Za-z0-9-]+)[;:]")
_VCARD_WANTED = frozenset(("BEGIN", "END", "FN", "N", "TEL", "EMAIL"))


def _vcard_contacts(text: str) -> list[_FileContact]:
    contacts: list[_FileContact] = []
    contact: _FileContact | None = None
    structured_name: str | None = None
    depth = 0
    for number, line in _vcard_logical_lines(text):
        wanted = _VCARD_NAME.match(line)
        if wanted is None or wanted.group(1).upper() not in _VCARD_WANTED:  # PHOTO, ADR, ... cost nothing
            continue
        parsed = _vcard_property(line)
        if parsed is None:
            continue
        name, params, raw = parsed
        if name == "BEGIN" and raw.strip().upper() == "VCARD":
            depth += 1
            if depth == 1:
                contact, structured_name = _FileContact(line=number), None
            continue
        if name == "END" and raw.strip().upper() == "VCARD":
            depth = max(depth - 1, 0)
            if depth == 0 and contact is not None:
                if contact.name is None:
                    contact.name = structured_name
                contacts.append(contact)
                contact = None
            continue
        if contact is None or depth != 1:  # outside a card, or inside an embedded one (2.1 AGENT)
            continue
        if name == "FN":
            full = " ".join(_vcard_unescape(_vcard_value(params, raw)).split())
            contact.name = full or contact.name
        elif name == "N":
            family, given, additional, prefix, suffix = (
                _vcard_components(_vcard_value(params, raw)) + [""] * 5
            )[:5]
            joined = " ".join(" ".join((prefix, given, additional, family, suffix)).split())
            structured_name = joined or structured_name
        elif name == "TEL":
            value = _vcard_value(params, raw).strip()
            if value[:4].lower() == "tel:":  # vCard 4.0 VALUE=uri (RFC 3966): drop ;ext= and other params
                value = value[4:].partition(";")[0]
            if value:
                contact.phones.append((value, number, "TEL"))
        elif name == "EMAIL":
            value = _vcard_value(params, raw).strip()
            if value:
                contact.emails.append((value, number, "EMAIL"))
    return contacts


def _csv_role(header: str) -> str | None:
    text = " ".join(header.strip().lower().replace("_", " ").split())
    words = set(re.split(r"[^a-z0-9]+", text))
    if text in ("name", "full name", "display name", "fn", "contact name", "contact"):
        return "name"
    if text in ("given name", "first name", "given", "first"):
        return "given"
    if text in ("additional name", "middle name", "middle"):
        return "middle"
    if text in ("family name", "last name", "surname", "family", "last"):
        return "family"
    if words & {"label", "type", "display", "fax"}:  # "Phone 1 - Label", "E-mail Display Name"
        return None
    if "e-mail" in text or "email" in words or text == "mail":
        return "email"
    if words & {"phone", "mobile", "tel", "telephone", "cell", "msisdn"}:  # not "Phonetic First Name"
        return "phone"
    return None


def _sniff_delimiter(header: str) -> str:
    counts = {delimiter: header.count(delimiter) for delimiter in (",", ";", "\t")}
    return max(counts, key=lambda d: counts[d]) if any(counts.values()) else ","


def _csv_contacts(text: str, source: str) -> list[_FileContact]:
    first_line = _NEWLINE.split(text, 1)[0]
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_sniff_delimiter(first_line))
    try:
        header: list[str] = []
        for header in reader:  # the first row with anything in it
            if any(cell.strip() for cell in header):
                break
        else:
            return []
        roles = [_csv_role(column) for column in header]
        if not {"name", "given", "family", "phone", "email"} & set(roles):
            raise InputError(
                "contacts CSV needs a header row with a name, phone or e-mail column"
                f" (found: {', '.join(header)})",
                source=source,
                line=reader.line_num,
            )
        contacts = []
        previous = reader.line_num
        for row in reader:
            number, previous = previous + 1, reader.line_num
            contact = _FileContact(line=number)
            name_parts: dict[str, str] = {}
            for role, column, cell in zip(roles, header, row, strict=False):
                cell = cell.strip()
                if role is None or not cell:
                    continue
                if role == "phone" or role == "email":
                    # Google packs several values of one field into a cell: "a ::: b".
                    target = contact.phones if role == "phone" else contact.emails
                    target.extend(
                        (value.strip(), number, column) for value in cell.split(":::") if value.strip()
                    )
                else:
                    name_parts.setdefault(role, cell)
            contact.name = name_parts.get("name") or (
                " ".join(name_parts[part] for part in ("given", "middle", "family") if part in name_parts)
                or None
            )
            if contact.name or contact.phones or contact.emails:
                contacts.append(contact)
    except csv.Error as exc:
        raise InputError(f"contacts CSV cannot be read: {exc}", source=source, line=reader.line_num) from None
    return contacts


# --- the profile ------------------------------------------------------------------------------------------

_LETTER = re.compile(r"[^\W\d_]")

# Where a value stood: (file, or None for the profile itself; line, or None to look it up; key).
_Place = tuple[str | None, int | None, str]


class _Builder:
    """Collects identifiers in profile order, dropping exact repeats, and locates errors."""

    def __init__(self, text: str, source: str) -> None:
        self.text = text
        self.source = source
        self.region: str | None = None
        self.identifiers: dict[Identifier, None] = {}
        self._lines: dict[str, int] | None = None
        self._phones: dict[tuple[str, str | None], tuple[str, str | None] | str] = {}
        # Files the profile read besides itself (a contacts file): path and SHA-256 of the bytes.
        self.files: list[tuple[str, str]] = []

    def error(self, message: str, place: _Place) -> InputError:
        source, line, key = place
        if source is None:
            if self._lines is None:
                self._lines = key_lines(self.text)
            return InputError(message, source=self.source, line=key_line(self._lines, key), key=key)
        return InputError(message, source=source, line=line, key=key)

    def normalise(self, kind: str, key: str, raw: str, place: _Place) -> tuple[str, str | None]:
        if not raw.strip():
            raise self.error("empty value", place)
        if kind == "phone":  # the costly one; contacts and messages repeat numbers
            cache_key = (raw, self.region)
            cached = self._phones.get(cache_key)
            if cached is None:
                try:
                    cached = _norm_phone(raw, key, self.region)
                except _Refused as exc:
                    cached = str(exc)
                self._phones[cache_key] = cached
            if isinstance(cached, str):
                raise self.error(cached, place)
            return cached
        try:
            return _NORMALISERS[kind](raw, key, self.region)
        except _Refused as exc:
            raise self.error(str(exc), place) from None

    def add(
        self, label: str, kind: str, category: str, raw: str, place: _Place, owner: str | None = None
    ) -> None:
        value, region = self.normalise(kind, label, raw, place)
        self.put(Identifier(label, kind, category, value, owner, region))

    def put(self, identifier: Identifier) -> None:
        self.identifiers.setdefault(identifier, None)

    def name(self, raw: str, place: _Place) -> str:
        """Add a contact's name, which is also the owner of the contact's other identifiers."""
        value = self.normalise("name", "contact.name", raw, place)[0]
        self.put(Identifier("contact.name", "name", "contacts", value, value))
        return value


def _strings(builder: _Builder, value: object, key: str, *, allow_list: bool = True) -> list[tuple[str, str]]:
    """The strings of a value that may be a string or a list of strings, each with its dotted key."""
    if isinstance(value, str):
        if not value.strip():
            raise builder.error("empty value", (None, None, key))
        return [(value, key)]
    if allow_list and isinstance(value, list):
        if not value:
            raise builder.error("empty list", (None, None, key))
        out = []
        for index, item in enumerate(value):
            item_key = f"{key}[{index}]"
            if not isinstance(item, str):
                raise builder.error(f"must be a string, not {_type_name(item)}", (None, None, item_key))
            if not item.strip():
                raise builder.error("empty value", (None, None, item_key))
            out.append((item, item_key))
        return out
    wanted = "a string or a list of strings" if allow_list else "a string"
    hint = (
        " (quote it, so leading zeros survive)"
        if isinstance(value, int) and not isinstance(value, bool)
        else ""
    )
    raise builder.error(f"must be {wanted}, not {_type_name(value)}{hint}", (None, None, key))


def _type_name(value: object) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", dict: "a table", list: "a list"}
    return next((name for kind, name in names.items() if isinstance(value, kind)), "a date or time")


def _refuse_unknown(builder: _Builder, table: dict[str, Any], allowed: tuple[str, ...], prefix: str) -> None:
    for key in table:
        if key not in allowed:
            raise builder.error(
                f"unknown key {key!r}; allowed: {', '.join(allowed)}", (None, None, f"{prefix}.{key}")
            )


def parse_profile(text: str, source: str, base_dir: Path | None = None) -> Profile:
    """Parse a profile's TOML ``text``; ``source`` names it in errors.

    A ``contacts_file`` is read relative to ``base_dir`` (the current directory when None).
    """
    return _parse_profile(text, source, base_dir)[0]


def _parse_profile(text: str, source: str, base_dir: Path | None) -> tuple[Profile, list[tuple[str, str]]]:
    """The profile, and the other files it read (path, SHA-256)."""
    data = parse_toml(text, source)
    builder = _Builder(text, source)
    for key, value in data.items():
        if key not in _TABLES:
            raise builder.error(f"unknown table [{key}]; allowed: {_TABLES_TEXT}", (None, None, key))
        if not isinstance(value, _TABLES[key]):
            shape = (
                f"an array of tables: write [[{key}]]" if _TABLES[key] is list else f"a table: write [{key}]"
            )
            raise builder.error(f"{key} must be {shape}", (None, None, key))

    device: dict[str, Any] = data.get("device", {})
    _refuse_unknown(builder, device, _DEVICE_KEYS, "device")
    strings = {key: _strings(builder, device[key], f"device.{key}", allow_list=False)[0][0] for key in device}
    name = " ".join(strings.get("name", Path(source).stem).split())
    if "region" in strings:
        region = strings["region"].strip().upper()
        import phonenumbers

        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise builder.error(
                f"region {strings['region']!r} is not a region code phone numbers use (IN, US, ...)",
                (None, None, "device.region"),
            )
        builder.region = region

    identifiers: dict[str, Any] = data.get("identifiers", {})
    entries: list[tuple[str, str, str, str, str]] = []
    for key, value in identifiers.items():
        label, kind, category = _kind_of(key)
        entries.extend(
            (label, kind, category, raw, item_key)
            for raw, item_key in _strings(builder, value, f"identifiers.{key}")
        )
    if builder.region is None:
        # Numbers written without + are read in the country of the phone's own number.
        own = next((entry for entry in entries if entry[1] == "phone"), None)
        if own is not None:
            builder.region = builder.normalise("phone", own[0], own[3], (None, None, own[4]))[1]
    network: dict[str, Any] = data.get("network", {})
    _refuse_unknown(builder, network, _NETWORK_KEYS, "network")
    for key, value in network.items():
        label, kind, category = _kind_of(key)
        if isinstance(value, int) and not isinstance(value, bool):  # cell numbers are fine unquoted
            value = str(value)
        entries.extend(
            (label, kind, category, raw, item_key)
            for raw, item_key in _strings(builder, value, f"network.{key}")
        )
    for label, kind, category, raw, item_key in entries:
        builder.add(label, kind, category, raw, (None, None, item_key))
    places = _places(builder, data.get("location"))

    for index, contact in enumerate(data.get("contacts", [])):
        _toml_contact(builder, contact, f"contacts[{index}]")
    for index, message in enumerate(data.get("messages", [])):
        _toml_message(builder, message, f"messages[{index}]")

    if "contacts_file" in strings:
        _contacts_file(builder, strings["contacts_file"], base_dir)

    profile = Profile(
        name=name,
        source=source,
        region=builder.region,
        identifiers=tuple(builder.identifiers),
        places=places,
    )
    return profile, builder.files


def _places(builder: _Builder, table: object) -> tuple[Place, ...]:
    """``[location]`` (one place), ``[location.NAME]`` (named places) or ``[[location]]`` (a list)."""
    if table is None:
        return ()
    if isinstance(table, list):
        items = [(f"location[{i}]", f"location[{i}]", item) for i, item in enumerate(table)]
    elif isinstance(table, dict) and table and all(isinstance(v, dict) for v in table.values()):
        items = [(name, f"location.{name}", item) for name, item in table.items()]
    else:
        items = [("location", "location", table)]
    places = []
    for default_name, key, item in items:
        if not isinstance(item, dict):
            raise builder.error(f"a place must be a table, not {_type_name(item)}", (None, None, key))
        _refuse_unknown(builder, item, _PLACE_KEYS, key)
        name = item.get("name", default_name)
        if not isinstance(name, str) or not name.strip():
            raise builder.error("name must be a non-empty string", (None, None, f"{key}.name"))
        lat = _number(builder, item, "latitude", f"{key}.latitude", -90.0, 90.0)
        lon = _number(builder, item, "longitude", f"{key}.longitude", -180.0, 180.0)
        radius = _number(builder, item, "radius_m", f"{key}.radius_m", 0.0, 20_000_000.0, DEFAULT_RADIUS_M)
        if radius <= 0:
            raise builder.error("radius_m must be above 0", (None, None, f"{key}.radius_m"))
        places.append(Place(" ".join(name.split()), lat, lon, radius))
    return tuple(places)


def _number(
    builder: _Builder,
    item: dict[str, Any],
    field_name: str,
    key: str,
    low: float,
    high: float,
    default: float | None = None,
) -> float:
    if field_name not in item:
        if default is None:
            raise builder.error(f"missing {field_name}", (None, None, key.rpartition(".")[0]))
        return default
    value = item[field_name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        shown = "a string" if isinstance(value, str) else _type_name(value)
        raise builder.error(f"must be a number, not {shown}", (None, None, key))
    if not low <= value <= high:
        raise builder.error(f"{value} is outside {low:g} to {high:g}", (None, None, key))
    return float(value)


def _toml_contact(builder: _Builder, contact: object, key: str) -> None:
    if not isinstance(contact, dict):
        raise builder.error(f"a contact must be a table, not {_type_name(contact)}", (None, None, key))
    _refuse_unknown(builder, contact, _CONTACT_KEYS, key)
    if not contact:
        raise builder.error("a contact needs a name, a phone or an email", (None, None, key))
    owner = None
    if "name" in contact:
        raw, name_key = _strings(builder, contact["name"], f"{key}.name", allow_list=False)[0]
        owner = builder.name(raw, (None, None, name_key))
    for field_name, label, kind in (
        ("phone", "contact.phone", "phone"),
        ("phones", "contact.phone", "phone"),
        ("email", "contact.email", "email"),
        ("emails", "contact.email", "email"),
    ):
        if field_name in contact:
            for raw, item_key in _strings(builder, contact[field_name], f"{key}.{field_name}"):
                builder.add(label, kind, "contacts", raw, (None, None, item_key), owner)


def _toml_message(builder: _Builder, message: object, key: str) -> None:
    if not isinstance(message, dict):
        raise builder.error(f"a message must be a table, not {_type_name(message)}", (None, None, key))
    _refuse_unknown(builder, message, _MESSAGE_KEYS, key)
    if not message:
        raise builder.error("a message needs a peer or a text", (None, None, key))
    peer = None
    if "peer" in message:
        raw, peer_key = _strings(builder, message["peer"], f"{key}.peer", allow_list=False)[0]
        # A sender with letters in it is an alphanumeric sender ID ("AX-HDFCBK"), not a number.
        kind = "text" if _LETTER.search(raw) else "phone"
        peer, region = builder.normalise(kind, "message.peer", raw, (None, None, peer_key))
        builder.put(Identifier("message.peer", kind, "messages", peer, peer, region))
    if "text" in message:
        raw, text_key = _strings(builder, message["text"], f"{key}.text", allow_list=False)[0]
        builder.add("message.text", "text", "messages", raw, (None, None, text_key), peer)


def _contacts_file(builder: _Builder, name: str, base_dir: Path | None) -> None:
    path = (base_dir if base_dir is not None else Path()) / name.strip()
    try:
        data = path.read_bytes()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise builder.error(
            f"cannot read contacts file {str(path)!r}: {reason}", (None, None, "device.contacts_file")
        ) from None
    source = str(path)
    builder.files.append((os.path.abspath(path), hashlib.sha256(data).hexdigest()))
    text = _decode_export(data, source)
    contacts = _vcard_contacts(text) if _is_vcard(text) else _csv_contacts(text, source)
    if not contacts:
        raise InputError(
            "no contacts found (expected a vCard file, or a CSV file with a header row)", source=source
        )
    for contact in contacts:
        owner = None
        if contact.name:
            owner = builder.name(contact.name, (source, contact.line, "name"))
        for raw, line, key in contact.phones:
            builder.add("contact.phone", "phone", "contacts", raw, (source, line, key), owner)
        for raw, line, key in contact.emails:
            builder.add("contact.email", "email", "contacts", raw, (source, line, key), owner)


def load_profile(path: str | Path, cache_dir: Path | None = None) -> Profile:
    """Read and parse the profile at ``path``; a contacts file is read relative to its folder.

    A large profile (tens of thousands of contacts) costs seconds to parse and normalise, so the
    result is kept in the user's cache folder, keyed by the profile's bytes, its path and the code
    that reads it, with the SHA-256 of every file it read besides; a cached profile whose files
    changed, or that cannot be read, is parsed again. A large profile's identifiers come as an
    :class:`IdentifierTable`, parsed or cached alike.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read profile: {exc.strerror or exc}", source=str(path)) from None
    cached = _cache_file(data, str(path), cache_dir) if len(data) >= _CACHE_MIN_BYTES else None
    if cached is not None:
        profile = _load_cached(cached)
        if profile is not None:
            return profile
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InputError("profile is not UTF-8 text", source=str(path), line=line, offset=exc.start) from None
    profile, files = _parse_profile(text, str(path), path.parent)
    if len(data) >= _CACHE_MIN_BYTES:
        table = IdentifierTable.of(profile.identifiers)
        profile = Profile(profile.name, profile.source, profile.region, table, profile.places)
        if cached is not None:
            _save_cached(cached, profile, table, files)
    return profile


# Below this size a profile parses in milliseconds: not worth a cache file.
_CACHE_MIN_BYTES = 64 << 10
_CACHE_FORMAT = 2
# A cache entry: this line, the length of a JSON header (8 bytes, little-endian), the header, then
# 8-aligned the row offsets of the identifier table (native "Q" array) and its rows.
_CACHE_MAGIC = b"phonehome-profile/2\n"


def _cache_file(data: bytes, source: str, cache_dir: Path | None) -> Path | None:
    directory = cache_folder(cache_dir)
    if directory is None:
        return None
    digest = hashlib.sha256(f"{_CACHE_FORMAT}\0{source}\0".encode())
    digest.update(Path(__file__).read_bytes())
    digest.update(package_version("phonenumbers").encode() + b"\0")
    digest.update(data)
    return directory / f"profile-{digest.hexdigest()[:32]}.bin"


def _load_cached(path: Path) -> Profile | None:
    """The profile saved at ``path``, or None when it is absent, damaged or written by other code."""
    blob = map_entry(path)
    if blob is None:
        return None
    try:
        view = memoryview(blob)
        if bytes(view[: len(_CACHE_MAGIC)]) != _CACHE_MAGIC:
            return None
        pos = len(_CACHE_MAGIC)
        size = int.from_bytes(view[pos : pos + 8], "little")
        pos += 8
        doc = json.loads(bytes(view[pos : pos + size]))
        pos += size
        pos += -pos % 8
        count = doc["count"]
        if doc["byteorder"] != sys.byteorder or not isinstance(count, int) or count < 0:
            return None
        # The rows are made into identifiers only when used: check now that they are the ones saved.
        if hashlib.sha256(view[pos:]).hexdigest() != doc["check"]:
            return None
        offsets = view[pos : pos + 8 * (count + 1)].cast("Q")
        rows = view[pos + 8 * (count + 1) :]
        if len(offsets) != count + 1 or offsets[0] != 0 or offsets[-1] != len(rows):
            return None
        for dep, sha in doc["files"]:
            if hashlib.sha256(Path(dep).read_bytes()).hexdigest() != sha:
                return None
        return Profile(
            name=doc["name"],
            source=doc["source"],
            region=doc["region"],
            identifiers=IdentifierTable(rows, offsets, doc["digest"]),
            places=tuple(Place(*row) for row in doc["places"]),
        )
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None  # absent, unreadable or from elsewhere: parse the profile again


def _save_cached(path: Path, profile: Profile, table: IdentifierTable, files: list[tuple[str, str]]) -> None:
    body = table.dump()
    doc = {
        "name": profile.name,
        "source": profile.source,
        "region": profile.region,
        "places": [[p.name, p.latitude, p.longitude, p.radius_m] for p in profile.places],
        "files": files,
        "byteorder": sys.byteorder,
        "count": len(table),
        "digest": table.digest,  # of the rows: names the table
        "check": hashlib.sha256(body).hexdigest(),  # of offsets and rows: the entry is whole
    }
    head = json.dumps(doc, ensure_ascii=True).encode("ascii")
    out = [_CACHE_MAGIC, len(head).to_bytes(8, "little"), head]
    out.append(b"\0" * (-sum(map(len, out)) % 8))
    save_entry(path, b"".join([*out, body]))
