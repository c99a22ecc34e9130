"""Tests for phonehome.profile: loading, normalising and locating errors in device profiles."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from phonehome.errors import InputError
from phonehome.profile import (
    KINDS,
    MCCS,
    Identifier,
    IdentifierTable,
    Profile,
    load_profile,
    luhn_check_digit,
    luhn_valid,
    parse_profile,
)

IMEI = "865123456789019"  # Luhn-valid
IMEI_2 = "352099001761481"
ICCID = "8991101200003204514"  # Luhn-valid, 19 digits

FULL_PROFILE = """\
[device]
name = "Redmi 1S test unit"
region = "IN"
contacts_file = "contacts.vcf"

[identifiers]
imei = ["86-512345-678901-9", "35 209900 176148 1"]  # dual SIM
imsi = "404101234567890"
iccid = "8991 1012 0000 3204 514"
phone = "+919876543210"
carrier = "airtel"
android_id = "B9E28776354D259E"
advertising_id = "5AC6A0FF-8D18-47BC-A902-2812CF0C251E"
wifi_mac = "02-1A-11-F0-AA-B3"
bt_mac = "021a.11f0.aab4"
serial = "R58M12ABCDE"
email = " owner@example.org "
udid = "e6dbd30b-1f2e"
loyalty_card = "LC-0042"

[[contacts]]
name = "Asha Verma"
phone = "+91 98111 22233"
email = "asha@example.org"

[[contacts]]
name = "Ravi  Kumar"
phones = ["098111 44455", "+91-98111-44466"]
emails = ["ravi@example.org"]

[[messages]]
peer = "+919811122233"
text = "Meet at the gate at 6"

[[messages]]
peer = "AX-HDFCBK"
"""

FULL_VCARD = """\
BEGIN:VCARD
VERSION:3.0
FN:Meera Iyer
TEL;TYPE=CELL:+91 98111 55566
END:VCARD
"""


def write(tmp_path: Path, profile: str, files: dict[str, str | bytes] | None = None) -> Path:
    """Write a profile (and any files beside it) and return the profile's path."""
    for name, content in (files or {}).items():
        target = tmp_path / name
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content, encoding="utf-8", newline="")
    path = tmp_path / "profile.toml"
    path.write_text(profile, encoding="utf-8")
    return path


def load_error(tmp_path: Path, profile: str, files: dict[str, str | bytes] | None = None) -> InputError:
    with pytest.raises(InputError) as info:
        load_profile(write(tmp_path, profile, files))
    return info.value


def assert_located(error: InputError, source: Path | str, line: int | None, key: str | None) -> None:
    assert error.source == str(source)
    assert error.line == line
    assert error.key == key
    where = [str(source)] + ([f"line {line}"] if line is not None else []) + ([f"key {key!r}"] if key else [])
    assert str(error).startswith(", ".join(where) + ": ")


def values(profile: Profile, label: str) -> list[str]:
    return [identifier.value for identifier in profile.identifiers if identifier.label == label]


def one(profile: Profile, label: str) -> Identifier:
    (identifier,) = [identifier for identifier in profile.identifiers if identifier.label == label]
    return identifier


# --- a complete valid profile -----------------------------------------------------------------------------


def test_full_profile_loads_normalised(tmp_path: Path) -> None:
    path = write(tmp_path, FULL_PROFILE, {"contacts.vcf": FULL_VCARD})
    profile = load_profile(path)

    assert profile.name == "Redmi 1S test unit"
    assert profile.source == str(path)
    assert profile.region == "IN"
    assert values(profile, "imei") == [IMEI, IMEI_2]
    assert one(profile, "imsi") == Identifier("imsi", "imsi", "subscriber", "404101234567890")
    assert one(profile, "iccid") == Identifier("iccid", "iccid", "subscriber", ICCID)
    assert one(profile, "phone") == Identifier("phone", "phone", "subscriber", "+919876543210", region="IN")
    assert one(profile, "carrier") == Identifier("carrier", "text", "subscriber", "airtel")
    assert one(profile, "android_id") == Identifier("android_id", "hex", "device", "b9e28776354d259e")
    assert one(profile, "advertising_id") == Identifier(
        "advertising_id", "uuid", "device", "5ac6a0ff-8d18-47bc-a902-2812cf0c251e"
    )
    assert one(profile, "wifi_mac") == Identifier("wifi_mac", "mac", "device", "02:1a:11:f0:aa:b3")
    assert one(profile, "bt_mac").value == "02:1a:11:f0:aa:b4"
    assert one(profile, "serial") == Identifier("serial", "serial", "device", "R58M12ABCDE")
    assert one(profile, "email") == Identifier("email", "email", "account", "owner@example.org")
    assert one(profile, "udid") == Identifier("udid", "opaque", "device", "e6dbd30b-1f2e")
    assert one(profile, "loyalty_card") == Identifier("loyalty_card", "opaque", "custom", "LC-0042")

    contacts = [i for i in profile.identifiers if i.category == "contacts"]
    assert contacts == [
        Identifier("contact.name", "name", "contacts", "Asha Verma", "Asha Verma"),
        Identifier("contact.phone", "phone", "contacts", "+919811122233", "Asha Verma", "IN"),
        Identifier("contact.email", "email", "contacts", "asha@example.org", "Asha Verma"),
        Identifier("contact.name", "name", "contacts", "Ravi Kumar", "Ravi Kumar"),
        Identifier("contact.phone", "phone", "contacts", "+919811144455", "Ravi Kumar", "IN"),
        Identifier("contact.phone", "phone", "contacts", "+919811144466", "Ravi Kumar", "IN"),
        Identifier("contact.email", "email", "contacts", "ravi@example.org", "Ravi Kumar"),
        # from contacts.vcf, read after the profile's own contacts
        Identifier("contact.name", "name", "contacts", "Meera Iyer", "Meera Iyer"),
        Identifier("contact.phone", "phone", "contacts", "+919811155566", "Meera Iyer", "IN"),
    ]
    messages = [i for i in profile.identifiers if i.category == "messages"]
    assert messages == [
        Identifier("message.peer", "phone", "messages", "+919811122233", "+919811122233", "IN"),
        Identifier("message.text", "text", "messages", "Meet at the gate at 6", "+919811122233"),
        Identifier("message.peer", "text", "messages", "AX-HDFCBK", "AX-HDFCBK"),
    ]
    # Profile order: device and subscriber identifiers first, then contacts, then messages.
    labels = [i.label for i in profile.identifiers]
    assert labels.index("loyalty_card") < labels.index("contact.name") < labels.index("message.peer")


def test_kinds_table_covers_the_known_keys() -> None:
    assert KINDS["imei"] == ("imei", "device")
    assert KINDS["meid"] == ("hex", "device")
    assert KINDS["msisdn"] == ("phone", "subscriber")
    assert KINDS["carrier"] == ("text", "subscriber")
    assert KINDS["mcc_mnc"] == ("opaque", "subscriber")
    assert KINDS["idfa"] == ("uuid", "device")
    assert KINDS["account"] == ("email", "account")
    assert KINDS["device_id"] == ("opaque", "device")
    assert {kind for kind, _ in KINDS.values()} <= {
        "imei", "imsi", "iccid", "phone", "mac", "uuid", "hex", "email", "serial", "text", "name", "opaque",
        "cell",
    }  # fmt: skip


def test_keys_match_case_insensitively_and_unknown_keys_are_custom() -> None:
    profile = parse_profile(
        f'[identifiers]\nIMEI = "{IMEI}"\nWiFi-MAC = "021a11f0aab3"\nMyThing = " x "\n', "p"
    )
    assert profile.identifiers == (
        Identifier("imei", "imei", "device", IMEI),
        Identifier("wifi_mac", "mac", "device", "02:1a:11:f0:aa:b3"),
        Identifier("MyThing", "opaque", "custom", "x"),
    )


def test_region_comes_from_the_phone_identifier() -> None:
    text = '[identifiers]\nphone = "+91 98765 43210"\n[[contacts]]\nname = "A"\nphone = "098111 22233"\n'
    profile = parse_profile(text, "p.toml")
    assert profile.region == "IN"
    assert values(profile, "contact.phone") == ["+919811122233"]
    assert profile.name == "p"  # no [device] name: the file's stem


def test_us_number_region_and_msisdn_alias() -> None:
    profile = parse_profile('[identifiers]\nmsisdn = "+1 650-253-0000"\n', "p.toml")
    assert profile.identifiers == (Identifier("msisdn", "phone", "subscriber", "+16502530000", region="US"),)
    assert profile.region == "US"


def test_imei_without_check_digit_gets_one() -> None:
    profile = parse_profile('[identifiers]\nimei = "86512345678901"\n', "p")
    assert values(profile, "imei") == [IMEI]


def test_repeated_values_are_kept_once() -> None:
    text = (
        '[device]\nregion = "IN"\n'
        '[[contacts]]\nname = "A"\nphones = ["+919811122233", "098111 22233"]\n'
        '[[contacts]]\nname = "A"\nphone = "+919811122233"\n'
    )
    profile = parse_profile(text, "p")
    assert len(profile.identifiers) == 2


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("02:1a:11:f0:aa:b3", "02:1a:11:f0:aa:b3"),
        ("02-1A-11-F0-AA-B3", "02:1a:11:f0:aa:b3"),
        ("021a.11f0.aab3", "02:1a:11:f0:aa:b3"),
        ("021A11F0AAB3", "02:1a:11:f0:aa:b3"),
        ("2:1a:11:f0:aa:b3", "02:1a:11:f0:aa:b3"),
    ],
)
def test_mac_forms(raw: str, expected: str) -> None:
    assert values(parse_profile(f'[identifiers]\nmac = "{raw}"\n', "p"), "mac") == [expected]


@pytest.mark.parametrize(
    "raw",
    [
        "5ac6a0ff-8d18-47bc-a902-2812cf0c251e",
        "{5AC6A0FF-8D18-47BC-A902-2812CF0C251E}",
        "urn:uuid:5ac6a0ff-8d18-47bc-a902-2812cf0c251e",
        "5ac6a0ff8d1847bca9022812cf0c251e",
    ],
)
def test_uuid_forms(raw: str) -> None:
    profile = parse_profile(f'[identifiers]\nidfa = "{raw}"\n', "p")
    assert values(profile, "idfa") == ["5ac6a0ff-8d18-47bc-a902-2812cf0c251e"]


def test_luhn_helpers() -> None:
    assert luhn_check_digit("86512345678901") == "9"
    assert luhn_valid(IMEI)
    assert luhn_valid(ICCID)
    assert not luhn_valid("865123456789012")
    assert 404 in MCCS and 310 in MCCS and 1 in MCCS and 123 not in MCCS
    assert 230 <= len(MCCS) <= 260


# --- bad values: each names the file, the line and the dotted key -----------------------------------------

HEAD = '[device]\nname = "t"\nregion = "IN"\n\n[identifiers]\n'  # identifiers start on line 6


@pytest.mark.parametrize(
    ("body", "line", "key", "message"),
    [
        ('imei = "865123456789012"', 6, "identifiers.imei", "fails its Luhn check"),
        ('imei = "8651234567890"', 6, "identifiers.imei", "has 13 digits"),
        ('imei = "8651234567890190"', 6, "identifiers.imei", "IMEISV"),
        ('imei = "86512345678901X"', 6, "identifiers.imei", "must be digits"),
        ('imei = "000000000000000"', 6, "identifiers.imei", "all-zero"),
        (f'imei = "{IMEI}"\nimei2 = "352099001761482"', 7, "identifiers.imei2", "Luhn"),
        (f'imei = ["{IMEI}", "352099001761482"]', 6, "identifiers.imei[1]", "Luhn"),
        (f'imei = [\n  "{IMEI}",\n  "",\n]', 8, "identifiers.imei[1]", "empty value"),
        ('imsi = "123101234567890"', 6, "identifiers.imsi", "not a mobile country code"),
        ('imsi = "4041012345"', 6, "identifiers.imsi", "14 or 15"),
        ('iccid = "9991101200003204514"', 6, "identifiers.iccid", "must start with 89"),
        ('iccid = "8991101200003204515"', 6, "identifiers.iccid", "Luhn"),
        ('iccid = "89911012"', 6, "identifiers.iccid", "18 to 20"),
        ('phone = "call me maybe"', 6, "identifiers.phone", "is not a phone number"),
        ('phone = "+91 12"', 6, "identifiers.phone", "too short"),
        ('carrier = "airtel"\n\nphone = "+91 98765 43210 9999"', 8, "identifiers.phone", "too long"),
        ('imei = ""', 6, "identifiers.imei", "empty value"),
        ('udid = "   "', 6, "identifiers.udid", "empty value"),
        ("imei = []", 6, "identifiers.imei", "empty list"),
        (f"imei = {IMEI}", 6, "identifiers.imei", "quote it"),
        ('imei = ["865123456789019", 3]', 6, "identifiers.imei[1]", "must be a string, not an integer"),
        ('wifi_mac = "02:1a:11:f0:aa"', 6, "identifiers.wifi_mac", "6 octets"),
        ('wifi_mac = "02:1a:11:f0:aa:zz"', 6, "identifiers.wifi_mac", "6 octets"),
        ('bt_mac = "02:1a-11:f0:aa:b3"', 6, "identifiers.bt_mac", "6 octets"),
        ('wifi_mac = "02:00:00:00:00:00"', 6, "identifiers.wifi_mac", "placeholder"),
        ('advertising_id = "5ac6a0ff-8d18-47bc-a902"', 6, "identifiers.advertising_id", "not a UUID"),
        ('gaid = "00000000-0000-0000-0000-000000000000"', 6, "identifiers.gaid", "ad tracking"),
        ('android_id = "b9e28776354d259"', 6, "identifiers.android_id", "15 hex digits; android_id has 16"),
        ('android_id = "g9e28776354d259e"', 6, "identifiers.android_id", "hex digits"),
        ('meid = "A000001234567"', 6, "identifiers.meid", "has 14"),
        ('email = "owner@localhost"', 6, "identifiers.email", "domain with a dot"),
        ('email = "owner.example.org"', 6, "identifiers.email", "@"),
        ('account = "@example.org"', 6, "identifiers.account", "local part"),
        ('serial = "R58M 12"', 6, "identifiers.serial", "spaces"),
        ('serial = "unknown"', 6, "identifiers.serial", "give the real one"),
        ('sim2 = { imei = "x" }', 6, "identifiers.sim2", "not a table"),
        ("  # a comment\n\n[identifiers.sim2]\nimei = 1", 8, "identifiers.sim2", "not a table"),
    ],
)
def test_bad_identifier(tmp_path: Path, body: str, line: int, key: str, message: str) -> None:
    error = load_error(tmp_path, HEAD + body + "\n")
    assert_located(error, tmp_path / "profile.toml", line, key)
    assert message in error.message


@pytest.mark.parametrize(
    ("text", "line", "key", "message"),
    [
        (
            f'[identifiers]\nimei = "{IMEI}"\n\n[hardware]\nram = "2G"\n',
            4,
            "hardware",
            "unknown table [hardware]; allowed: [device], [identifiers], [network], [location], [[contacts]],"
            " [[messages]]",
        ),
        ('title = "x"\n[device]\n', 1, "title", "unknown table [title]"),
        ('[device]\nname = "t"\nregoin = "IN"\n', 3, "device.regoin", "allowed: name, region, contacts_file"),
        ('[device]\nregion = "XX"\n', 2, "device.region", "not a region code"),
        ('[device]\nname = ""\n', 2, "device.name", "empty value"),
        ('[device]\nname = ["a"]\n', 2, "device.name", "must be a string"),
        ("[contacts]\nname = 'x'\n", 1, "contacts", "write [[contacts]]"),
        ("identifiers = [1]\n", 1, "identifiers", "write [identifiers]"),
        (
            '[device]\nregion = "IN"\n\n[[contacts]]\nname = "A"\n\n[[contacts]]\nname = "B"\n'
            '\n[[contacts]]\nname = "C"\nemail = "c@example.org"\nphone = "12345"\n',
            13,
            "contacts[2].phone",
            "too short",
        ),
        (
            '[device]\nregion = "IN"\n[[contacts]]\nname = "A"\n'
            'phones = [\n  "+919811122233",\n  "nope",\n]\n',
            7,
            "contacts[0].phones[1]",
            "not a phone number",
        ),
        ('[[contacts]]\nname = "A"\naddress = "x"\n', 3, "contacts[0].address", "allowed: name, phone"),
        ('[[contacts]]\n\n[[contacts]]\nname = "B"\n', 1, "contacts[0]", "needs a name, a phone or an email"),
        ('[[contacts]]\nname = "A"\nemail = "a@b"\n', 3, "contacts[0].email", "domain with a dot"),
        (
            '[[contacts]]\nname = "A"\nphone = "98111 22233"\n',
            3,
            "contacts[0].phone",
            "set region in [device]",
        ),
        (
            'contacts = [\n  { name = "A" },\n  { name = "B", phone = "x" },\n]\n',
            3,
            "contacts[1].phone",
            "not a phone number",
        ),
        (
            '[device]\nregion = "IN"\n[[messages]]\npeer = "12"\ntext = "hi"\n',
            4,
            "messages[0].peer",
            "too short",
        ),
        ('[[messages]]\ntext = ""\n', 2, "messages[0].text", "empty value"),
        ('[[messages]]\nfrom = "x"\n', 2, "messages[0].from", "allowed: peer, text"),
        ("messages = [1]\n", 1, "messages[0]", "must be a table"),
    ],
)
def test_bad_structure(tmp_path: Path, text: str, line: int, key: str, message: str) -> None:
    error = load_error(tmp_path, text)
    assert_located(error, tmp_path / "profile.toml", line, key)
    assert message in error.message


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (f'[identifiers]\nimei = "{IMEI}"\nimsi =\n', 3, "TOML syntax error: Invalid value (column"),
        ('[device]\nname = "t"\nname = "u"\n', 3, "TOML syntax error"),
        ('[device]\nname = "unterminated\n', 2, "TOML syntax error"),
        ('[device]\nname = """open\nstill open', 3, "at the end of the file"),
    ],
)
def test_toml_syntax_error(tmp_path: Path, text: str, line: int, message: str) -> None:
    error = load_error(tmp_path, text)
    assert_located(error, tmp_path / "profile.toml", line, None)
    assert message in error.message


def test_unreadable_profiles(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(InputError) as info:
        load_profile(missing)
    assert_located(info.value, missing, None, None)
    assert "cannot read profile" in str(info.value)

    binary = tmp_path / "binary.toml"
    binary.write_bytes(b'[device]\nname = "\xff"\n')
    with pytest.raises(InputError) as info:
        load_profile(binary)
    assert info.value.line == 2 and "not UTF-8" in str(info.value)


def test_utf8_bom_profile_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_bytes(b'\xef\xbb\xbf[device]\nname = "x"\n')
    assert load_profile(path).name == "x"


# --- contacts files ---------------------------------------------------------------------------------------

CONTACTS_HEAD = '[device]\nregion = "IN"\ncontacts_file = "{name}"\n'

VCARD_21 = (
    "BEGIN:VCARD\r\n"
    "VERSION:2.1\r\n"
    "N;CHARSET=UTF-8;ENCODING=QUOTED-PRINTABLE:V=C3=A9rma;=C3=81sha;;;\r\n"
    "FN;CHARSET=UTF-8;ENCODING=QUOTED-PRINTABLE:=C3=81sha=20V=C3=A9rma=20and=20a=20name=20long=20enough=\r\n"
    "=20to=20fold\r\n"
    "TEL;CELL;PREF:+91 98111 22233\r\n"
    "TEL;HOME:011 2345 6789\r\n"
    "EMAIL;INTERNET:asha@example.org\r\n"
    "PHOTO;ENCODING=BASE64;JPEG:/9j/4AAQSkZJRgABAQAAAQABAAD\r\n"
    "  /2wBDAAgGBgcGBQgHBwcJCQgKDBQNDAsLDBkSEw8UHR8eHR\r\n"
    "\r\n"
    "END:VCARD\r\n"
    "BEGIN:VCARD\r\n"
    "VERSION:2.1\r\n"
    "N:Kumar;Ravi\r\n"
    "TEL;CELL:98111 44455\r\n"
    "END:VCARD\r\n"
)

VCARD_30 = """\
BEGIN:VCARD
VERSION:3.0
N:Verma;Asha;;Dr.;
TEL;TYPE=CELL,VOICE:+91-98111-22233
item1.EMAIL;TYPE=INTERNET,pref:asha@example.org
item1.X-ABLabel:work
NOTE:Met at the conference\\, room 4; TEL:not a property
END:VCARD
BEGIN:VCARD
VERSION:3.0
FN:Kumar\\, Ravi
N:Kumar;Ravi;;;
TEL;TYPE=HOME:+91 98111
 44455
END:VCARD
"""

VCARD_40 = (
    "\ufeffBEGIN:VCARD\r\n"
    "VERSION:4.0\r\n"
    "FN:Asha Verma\r\n"
    'TEL;VALUE=uri;TYPE="voice,cell";PREF=1:tel:+91-98111-22233\r\n'
    "TEL;VALUE=uri;TYPE=work:tel:+91-11-2345-6789;ext=102\r\n"
    "EMAIL;TYPE=work:asha@example.org\r\n"
    "END:VCARD\r\n"
    "BEGIN:VCARD\r\n"
    "VERSION:4.0\r\n"
    "FN:Only A Name\r\n"
    "END:VCARD\r\n"
)


def contact_identifiers(profile: Profile) -> list[tuple[str, str, str | None]]:
    return [(i.label, i.value, i.owner) for i in profile.identifiers if i.category == "contacts"]


def test_vcard_21(tmp_path: Path) -> None:
    profile = load_profile(write(tmp_path, CONTACTS_HEAD.format(name="c.vcf"), {"c.vcf": VCARD_21}))
    asha = "Ásha Vérma and a name long enough to fold"
    assert contact_identifiers(profile) == [
        ("contact.name", asha, asha),
        ("contact.phone", "+919811122233", asha),
        ("contact.phone", "+911123456789", asha),
        ("contact.email", "asha@example.org", asha),
        ("contact.name", "Ravi Kumar", "Ravi Kumar"),
        ("contact.phone", "+919811144455", "Ravi Kumar"),
    ]


def test_vcard_30(tmp_path: Path) -> None:
    profile = load_profile(write(tmp_path, CONTACTS_HEAD.format(name="c.vcf"), {"c.vcf": VCARD_30}))
    assert contact_identifiers(profile) == [
        ("contact.name", "Dr. Asha Verma", "Dr. Asha Verma"),
        ("contact.phone", "+919811122233", "Dr. Asha Verma"),
        ("contact.email", "asha@example.org", "Dr. Asha Verma"),
        ("contact.name", "Kumar, Ravi", "Kumar, Ravi"),
        ("contact.phone", "+919811144455", "Kumar, Ravi"),
    ]


def test_vcard_40(tmp_path: Path) -> None:
    files: dict[str, str | bytes] = {"c.vcf": VCARD_40.encode("utf-8")}
    profile = load_profile(write(tmp_path, CONTACTS_HEAD.format(name="c.vcf"), files))
    assert contact_identifiers(profile) == [
        ("contact.name", "Asha Verma", "Asha Verma"),
        ("contact.phone", "+919811122233", "Asha Verma"),
        ("contact.phone", "+911123456789", "Asha Verma"),
        ("contact.email", "asha@example.org", "Asha Verma"),
        ("contact.name", "Only A Name", "Only A Name"),
    ]


def test_contacts_file_in_a_subfolder_and_absolute(tmp_path: Path) -> None:
    (tmp_path / "exports").mkdir()
    (tmp_path / "exports" / "c.vcf").write_text(VCARD_40, encoding="utf-8")
    profile = load_profile(write(tmp_path, CONTACTS_HEAD.format(name="exports/c.vcf")))
    assert "+919811122233" in values(profile, "contact.phone")
    absolute = (tmp_path / "exports" / "c.vcf").as_posix()
    assert parse_profile(CONTACTS_HEAD.format(name=absolute), "p").identifiers == profile.identifiers


@pytest.mark.parametrize(
    ("card", "line", "key", "message"),
    [
        (
            "BEGIN:VCARD\nVERSION:3.0\nFN:A\nTEL:+91 98111 22233\nTEL:call me\nEND:VCARD\n",
            5,
            "TEL",
            "not a phone",
        ),
        (
            "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:A\r\nEMAIL;TYPE=INTERNET:\r\n a@b\r\nEND:VCARD\r\n",
            4,
            "EMAIL",
            "domain with a dot",
        ),
        (VCARD_30.replace("+91 98111\n 44455", "+91 98\n 1"), 13, "TEL", "too short"),
    ],
)
def test_bad_vcard_contact(tmp_path: Path, card: str, line: int, key: str, message: str) -> None:
    error = load_error(tmp_path, CONTACTS_HEAD.format(name="c.vcf"), {"c.vcf": card})
    assert_located(error, tmp_path / "c.vcf", line, key)
    assert message in error.message


GOOGLE_CSV = (
    "\ufeffName,Given Name,Additional Name,Family Name,Nickname,Notes,"
    "E-mail 1 - Type,E-mail 1 - Value,Phone 1 - Type,Phone 1 - Value,Phone 2 - Type,Phone 2 - Value\r\n"
    "Asha Verma,Asha,,Verma,,,* Home,asha@example.org,Mobile,+91 98111 22233 ::: +91 98111 22234,"
    "Home,011 2345 6789\r\n"
    ',Ravi,,Kumar,,"Line one\r\nline two, with a comma",,,Mobile,98111 44455,,\r\n'
    ",,,,,,,,,,,\r\n"
    "Only Name,,,,,,,,,,,\r\n"
)

GOOGLE_NEW_CSV = (
    "First Name,Middle Name,Last Name,Phonetic First Name,Phonetic Last Name,Nickname,"
    "E-mail 1 - Label,E-mail 1 - Value,Phone 1 - Label,Phone 1 - Value\n"
    "Asha,K,Verma,ah-sha,,,* Home,asha@example.org,Mobile,+91 98111 22233\n"
)


def test_csv_google_export(tmp_path: Path) -> None:
    profile = load_profile(write(tmp_path, CONTACTS_HEAD.format(name="c.csv"), {"c.csv": GOOGLE_CSV}))
    assert contact_identifiers(profile) == [
        ("contact.name", "Asha Verma", "Asha Verma"),
        ("contact.phone", "+919811122233", "Asha Verma"),
        ("contact.phone", "+919811122234", "Asha Verma"),
        ("contact.phone", "+911123456789", "Asha Verma"),
        ("contact.email", "asha@example.org", "Asha Verma"),
        ("contact.name", "Ravi Kumar", "Ravi Kumar"),
        ("contact.phone", "+919811144455", "Ravi Kumar"),
        ("contact.name", "Only Name", "Only Name"),
    ]


def test_csv_new_google_export(tmp_path: Path) -> None:
    profile = load_profile(write(tmp_path, CONTACTS_HEAD.format(name="c.csv"), {"c.csv": GOOGLE_NEW_CSV}))
    assert contact_identifiers(profile) == [
        ("contact.name", "Asha K Verma", "Asha K Verma"),
        ("contact.phone", "+919811122233", "Asha K Verma"),
        ("contact.email", "asha@example.org", "Asha K Verma"),
    ]


def test_csv_outlook_semicolons_cp1252(tmp_path: Path) -> None:
    csv_text = (
        '"First Name";"Last Name";"E-mail Address";"E-mail Display Name";"Mobile Phone";"Business Fax"\r\n'
        '"Asha";"Vérma";"asha@example.org";"Asha (asha@example.org)";"+91 98111 22233";"+91 11 2345 0000"\r\n'
    )
    files: dict[str, str | bytes] = {"c.csv": csv_text.encode("cp1252")}
    profile = load_profile(write(tmp_path, CONTACTS_HEAD.format(name="c.csv"), files))
    assert contact_identifiers(profile) == [
        ("contact.name", "Asha Vérma", "Asha Vérma"),
        ("contact.phone", "+919811122233", "Asha Vérma"),
        ("contact.email", "asha@example.org", "Asha Vérma"),
    ]


def test_csv_plain_columns(tmp_path: Path) -> None:
    csv_text = "name,phone,email\nAsha Verma,+91 98111 22233,asha@example.org\n"
    profile = load_profile(write(tmp_path, CONTACTS_HEAD.format(name="c.txt"), {"c.txt": csv_text}))
    assert len(contact_identifiers(profile)) == 3


@pytest.mark.parametrize(
    ("csv_text", "line", "key", "message"),
    [
        (GOOGLE_CSV + "Bad Number,,,,,,,,Mobile,12,,\r\n", 7, "Phone 1 - Value", "too short"),
        (GOOGLE_CSV + "Bad Mail,,,,,,,asha@,,,,\r\n", 7, "E-mail 1 - Value", "domain with a dot"),
        ("name;phone\nA;+91 98111 22233\nB;not a number\n", 3, "phone", "not a phone number"),
    ],
)
def test_bad_csv_contact(tmp_path: Path, csv_text: str, line: int, key: str, message: str) -> None:
    error = load_error(tmp_path, CONTACTS_HEAD.format(name="c.csv"), {"c.csv": csv_text})
    assert_located(error, tmp_path / "c.csv", line, key)
    assert message in error.message


def test_csv_without_a_known_column(tmp_path: Path) -> None:
    files: dict[str, str | bytes] = {"c.csv": "\n,,\nCompany,Title\nACME,Boss\n"}
    error = load_error(tmp_path, CONTACTS_HEAD.format(name="c.csv"), files)
    assert_located(error, tmp_path / "c.csv", 3, None)
    assert "found: Company, Title" in error.message


def test_empty_contacts_file(tmp_path: Path) -> None:
    error = load_error(tmp_path, CONTACTS_HEAD.format(name="c.vcf"), {"c.vcf": "\n\n"})
    assert_located(error, tmp_path / "c.vcf", None, None)
    assert "no contacts found" in error.message


def test_missing_contacts_file(tmp_path: Path) -> None:
    error = load_error(tmp_path, CONTACTS_HEAD.format(name="gone.vcf"))
    assert_located(error, tmp_path / "profile.toml", 3, "device.contacts_file")
    assert "cannot read contacts file" in error.message


# --- properties -------------------------------------------------------------------------------------------

imei_bodies = st.text(alphabet="0123456789", min_size=14, max_size=14).filter(lambda body: body != "0" * 14)
separators = st.lists(st.sampled_from(["", "", " ", "-", "/", " / ", "."]), min_size=14, max_size=14)


def spaced(digits: str, seps: list[str]) -> str:
    return "".join(digit + sep for digit, sep in zip(digits, [*seps, ""], strict=False))


@given(imei_bodies, separators)
def test_any_valid_imei_with_separators_loads_as_15_digits(body: str, seps: list[str]) -> None:
    imei = body + luhn_check_digit(body)
    raw = spaced(imei, seps)
    assert values(parse_profile(f'[identifiers]\nimei = "{raw}"\n', "p"), "imei") == [imei]
    # Without its check digit the same IMEI loads the same.
    assert values(parse_profile(f'[identifiers]\nimei2 = "{spaced(body, seps)}"\n', "p"), "imei2") == [imei]


@given(imei_bodies, st.integers(0, 14), st.integers(1, 9))
def test_any_single_digit_change_fails_the_luhn_check(body: str, position: int, delta: int) -> None:
    imei = body + luhn_check_digit(body)
    changed = imei[:position] + str((int(imei[position]) + delta) % 10) + imei[position + 1 :]
    assert not luhn_valid(changed)
    with pytest.raises(InputError, match="Luhn") as info:
        parse_profile(f'[identifiers]\nimei = "{changed}"\n', "p.toml")
    assert (info.value.source, info.value.line, info.value.key) == ("p.toml", 2, "identifiers.imei")


# --- scale ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["toml", "vcard"])
def test_fifty_thousand_contacts_load(tmp_path: Path, form: str) -> None:
    count = 50_000
    if form == "toml":
        text = CONTACTS_HEAD.replace('contacts_file = "{name}"\n', "") + "".join(
            f'[[contacts]]\nname = "Person {i}"\nphone = "+91 98{i:08d}"\nemail = "p{i}@example.org"\n'
            for i in range(count)
        )
        path = write(tmp_path, text)
    else:
        card = (
            "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Person {i}\r\n"
            "TEL;TYPE=CELL:98{i:08d}\r\nEMAIL:p{i}@x.org\r\nEND:VCARD\r\n"
        )
        path = write(
            tmp_path,
            CONTACTS_HEAD.format(name="c.vcf"),
            {"c.vcf": "".join(card.format(i=i) for i in range(count))},
        )
    # How fast is for `make bench` to say; here: every contact of a large address book is read.
    profile = load_profile(path)
    assert len(profile.identifiers) == 3 * count
    phones = {i.value for i in profile.identifiers if i.label == "contact.phone"}
    assert len(phones) == count and {"+919800000000", "+919800049999"} <= phones


# --- the parsed-profile cache ----------------------------------------------------------------------------


def _large_profile(tmp_path: Path, contacts_file: str | None = None) -> Path:
    """A profile over the size that is cached: 2,000 contacts."""
    lines = ['[device]\nname = "big"\nregion = "IN"\n']
    if contacts_file:
        lines.append(f'contacts_file = "{contacts_file}"\n')
    lines.append('[identifiers]\nimei = "865123456789019"\n[location]\nlatitude = 28.6\nlongitude = 77.2\n')
    for i in range(2000):
        lines.append(f'[[contacts]]\nname = "Person {i}"\nphone = "+9198{i:08d}"\n')
        lines.append(f'email = "p{i}@example.org"\n')
    path = tmp_path / "big.toml"
    path.write_text("".join(lines))
    assert path.stat().st_size >= 64 << 10
    return path


def test_a_large_profile_is_cached_and_the_cached_copy_is_the_same(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    path = _large_profile(tmp_path)
    first = load_profile(path, cache_dir=cache)
    (entry,) = cache.glob("profile-*.bin")
    second = load_profile(path, cache_dir=cache)
    assert second == first and len(first.identifiers) > 4000 and first.places
    parsed = parse_profile(path.read_text(), str(path))
    assert first.identifiers == parsed.identifiers and parsed.identifiers == second.identifiers
    assert isinstance(second.identifiers, IdentifierTable)
    assert list(second.identifiers) == list(parsed.identifiers)
    # It really was read from the cache: a cache entry altered in place is what comes back.
    entry.write_bytes(entry.read_bytes().replace(b'"big"', b'"BIG"'))
    assert load_profile(path, cache_dir=cache).name == "BIG"


def test_an_identifier_table_answers_as_the_tuple_it_holds() -> None:
    idents = (
        Identifier("imei", "imei", "device", "865123456789019"),
        Identifier("contact.phone", "phone", "contacts", "+919800000001", 'Ravi \u0936\n"q"', "IN"),
        Identifier("contact.email", "email", "contacts", "r@example.org", "Ravi"),
    )
    table = IdentifierTable.of(idents)
    assert len(table) == 3 and table == idents and idents == table and table != idents[:2]
    assert table[1] is table[1] and table[-1] == idents[-1] and table[0:2] == idents[0:2]
    assert tuple(table) == idents and hash(table) == hash(idents)
    with pytest.raises(IndexError):
        table[3]
    copy = pickle.loads(pickle.dumps(table))
    assert copy == table and copy.digest == table.digest and tuple(copy) == idents
    assert IdentifierTable.of(idents[::-1]).digest != table.digest
    empty = IdentifierTable.of(())
    assert len(empty) == 0 and empty == () and list(empty) == []


def test_an_edited_profile_or_contacts_file_is_parsed_again(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    vcf = tmp_path / "c.vcf"
    vcf.write_text("BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Ravi\r\nTEL:+91 98111 22233\r\nEND:VCARD\r\n")
    path = _large_profile(tmp_path, "c.vcf")
    first = load_profile(path, cache_dir=cache)
    assert any(i.value == "+919811122233" for i in first.identifiers)
    vcf.write_text("BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Ravi\r\nTEL:+91 98111 22244\r\nEND:VCARD\r\n")
    second = load_profile(path, cache_dir=cache)
    assert any(i.value == "+919811122244" for i in second.identifiers)
    assert not any(i.value == "+919811122233" for i in second.identifiers)
    path.write_text(path.read_text().replace('name = "big"', 'name = "edited"'))
    assert load_profile(path, cache_dir=cache).name == "edited"


def test_a_broken_cache_entry_is_ignored(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    path = _large_profile(tmp_path)
    first = load_profile(path, cache_dir=cache)
    (entry,) = cache.glob("profile-*.bin")
    whole = entry.read_bytes()
    head_end = whole.index(b"}\0") + 1
    garbage = [b"", b"{", b'{"name": 1}', b"\x00\xff", whole[: len(whole) // 2], whole[:-1]]
    garbage.append(whole[:-3] + bytes([whole[-3] ^ 1]) + whole[-2:])  # a row altered
    garbage.append(whole[: head_end + 40] + bytes([whole[head_end + 40] ^ 1]) + whole[head_end + 41 :])
    count = re.search(rb'"count": (\d+)', whole)
    assert count is not None
    fewer = str(int(count[1]) - 1).rjust(len(count[1])).encode()  # as long, so the header still reads
    garbage.append(whole.replace(count[0], b'"count": ' + fewer))  # header and rows disagree
    for bad in garbage:
        entry.write_bytes(bad)
        again = load_profile(path, cache_dir=cache)
        assert again == first and list(again.identifiers) == list(first.identifiers)
