"""The key -> line map of a TOML document's text, and TOML errors that name their line."""

from __future__ import annotations

import pytest

from phonehome.errors import InputError
from phonehome.tomldoc import key_line, key_lines, parse_toml

# --- the key -> line map ----------------------------------------------------------------------------------

KEY_LINES_DOC = """\
# a profile
[ device ]  # spaced header
name = "t"
"quoted key" = 1
a.b . c = 2

[identifiers]
note = \"\"\"
[fake]
fake = 1
\"\"\"
literal = '''
[[contacts]]
'''
imei = [
  "865123456789019",  # first
  # between
  "352099001761481",
]
after = 3

[[contacts]]
name = "A"

[[contacts]]
name = "B"
[contacts.extra]
x = 1
[[contacts.numbers]]
n = 1
[[contacts.numbers]]
n = 2

[[contacts]]
phones = ["1", "2"]
[[contacts.numbers]]
n = 3
"""


def test_key_lines() -> None:
    lines = key_lines(KEY_LINES_DOC)
    assert lines["device"] == 2
    assert lines["device.name"] == 3
    assert lines["device.quoted key"] == 4
    assert lines["device.a"] == lines["device.a.b"] == lines["device.a.b.c"] == 5
    assert lines["identifiers"] == 7
    assert lines["identifiers.note"] == 8
    assert "fake" not in lines and "identifiers.fake" not in lines
    assert lines["identifiers.literal"] == 12
    assert lines["identifiers.imei"] == 15
    assert lines["identifiers.imei[0]"] == 16
    assert lines["identifiers.imei[1]"] == 18
    assert lines["identifiers.after"] == 20
    assert lines["contacts[0]"] == 22
    assert lines["contacts[0].name"] == 23
    assert lines["contacts[1].name"] == 26
    assert lines["contacts[1].extra.x"] == 28
    assert lines["contacts[1].numbers[0].n"] == 30
    assert lines["contacts[1].numbers[1].n"] == 32
    assert lines["contacts[2].phones[1]"] == 35
    assert lines["contacts[2].numbers[0].n"] == 37  # nested arrays start over in each element
    assert "contacts[3]" not in lines


def test_key_line_falls_back_to_the_enclosing_key() -> None:
    lines = key_lines(KEY_LINES_DOC)
    assert key_line(lines, "contacts[2].phones[7]") == 35
    assert key_line(lines, "contacts[1].missing") == 25
    assert key_line(lines, "identifiers.imei[1]") == 18
    assert key_line(lines, "nowhere.at.all") is None


def test_key_lines_matches_tomllib_structure() -> None:
    inline = (
        'contacts = [ { name = "A" }, { name = "B" } ]\nx = { a = [1, 2] }\ny = """a"b""" # c = 1\nz = 1\n'
    )
    lines = key_lines(inline)
    assert lines == {"contacts": 1, "contacts[0]": 1, "contacts[1]": 1, "x": 2, "y": 3, "z": 4}


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("a = 1\nb = \n", 2, "TOML syntax error: Invalid value (column"),
        ('a = "unterminated\n', 1, "TOML syntax error"),
        ("a = [", 1, "(at the end of the file)"),
        ("a = " + "[" * 5000 + "]" * 5000 + "\n", None, "TOML nested too deeply"),
    ],
)
def test_a_toml_error_names_the_file_and_line(text: str, line: int | None, message: str) -> None:
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")) as caught:
        parse_toml(text, "doc.toml")
    assert caught.value.source == "doc.toml" and caught.value.line == line
    assert parse_toml("a = [1, {b = 2}]\n", "doc.toml") == {"a": [1, {"b": 2}]}
