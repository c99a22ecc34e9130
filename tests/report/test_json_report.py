"""The JSON findings document: what it holds, and its text laid out one finding per line."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from factories import finding
from phonehome.audit import AuditResult
from phonehome.model import Finding
from phonehome.report import json_report
from report.report_inputs import demo

try:
    from phonehome import _slots
except ImportError:  # the C module is optional: its tests skip where it is not built
    _slots = None  # type: ignore[assignment]

needs_c = pytest.mark.skipif(_slots is None, reason="the C slot module (phonehome._slots) is not built here")

# The C writer where it is built, and its Python reference, which runs where it is not.
_WRITERS: dict[str, Callable[[Finding], str]] = {"python": json_report.finding_text_py}
if json_report.finding_text is not json_report.finding_text_py:
    _WRITERS["C"] = json_report.finding_text


def _factory() -> AuditResult:
    return demo()[1]["factory"]


def test_the_text_is_the_document() -> None:
    result = _factory()
    assert result.findings and result.inputs
    assert json.loads(json_report.render(result)) == json.loads(json.dumps(json_report.document(result)))


def test_each_finding_is_one_line_of_its_own() -> None:
    result = _factory()
    lines = json_report.render(result).splitlines()
    one_per_line = [json.loads(line.strip().rstrip(",")) for line in lines if '"identifier": ' in line]
    assert one_per_line == [json_report.finding_dict(f) for f in result.findings]


def test_empty_lists_and_extra_fields() -> None:
    result = _factory()
    located = dataclasses.replace(result.findings[0], extra={"distance_m": "12"})
    empty = dataclasses.replace(result, findings=[located], warnings=[])
    doc = json.loads(json_report.render(empty))
    assert doc["warnings"] == [] and doc["findings"][0]["extra"] == {"distance_m": "12"}
    assert "extra" not in json_report.finding_dict(result.findings[0])


def test_control_characters_and_non_ascii_are_escaped() -> None:
    result = _factory()
    hostile = dataclasses.replace(result.findings[0], evidence="\x1b[2J\u202e«x»\x00")
    text = json_report.render(dataclasses.replace(result, findings=[hostile]))
    assert text.isascii() and "\x1b" not in text and "\x00" not in text
    assert json.loads(text)["findings"][0]["evidence"] == "\x1b[2J\u202e«x»\x00"


_TEXT = st.text(max_size=12) | st.sampled_from(["«x»", "\x00\x1b", "\u202e", "\ud800", 'a"b\\c', ""])


@settings(max_examples=300)
@given(
    identifier=_TEXT,
    host=st.none() | _TEXT,
    port=st.integers(0, 65535),
    url=st.none() | _TEXT,
    encrypted=st.booleans(),
    time=st.floats(),
    evidence=_TEXT,
    owner=st.none() | _TEXT,
    rule=st.none() | _TEXT,
    extra=st.dictionaries(_TEXT, _TEXT, max_size=3),
)
def test_a_finding_is_written_as_the_json_encoder_writes_its_dict(**values: object) -> None:
    found = finding(**values)
    expected = json_report._COMPACT.encode(json_report.finding_dict(found))
    for write in _WRITERS.values():
        for _ in range(2):  # the second time from the texts remembered
            assert write(found) == expected


@needs_c
def test_the_c_writer_is_the_one_used_where_it_is_built() -> None:
    assert type(json_report.finding_text).__name__ == "Writer"


def _writer(memo: dict[object, str], memo_max: int = 100, **changes: object) -> Callable[[Finding], str]:
    """A C writer of findings as json_report makes it, with its own memo and ``changes``."""
    names = json_report._FINDING_FIELDS
    types = {f.name: f.type for f in dataclasses.fields(Finding)}
    kinds = {"str": "t", "str | None": "t", "int": "i", "bool": "b", "float": "f"}
    args: dict[str, object] = {
        "cls": Finding,
        "names": (*names, "extra"),
        "kinds": "".join(kinds[str(types[n])] for n in names).encode(),
        "keys": (*(f"<{n}>" for n in names), "<extra>", "<end>"),
        "memo": memo,
        "memo_max": memo_max,
        "text": json.encoder.encode_basestring_ascii,
        "other": json.dumps,
    }
    args.update(changes)
    return _slots.Writer(*args.values())  # type: ignore[no-any-return]


@needs_c
def test_the_c_writer_remembers_texts_up_to_its_bound_and_holds_no_reference_too_many() -> None:
    evidence = "".join(["ev", "«idence»"])  # made at run time: its references are this test's
    found = finding(evidence=evidence, extra={"k": "v"})
    memo: dict[object, str] = {None: "null"}
    text = _writer(memo, memo_max=1000)(found)
    assert text.startswith('<identifier>"imei"<category>') and text.endswith('<extra>{"k": "v"}<end>')
    assert memo[evidence] == '"ev\\u00abidence\\u00bb"' and memo["imei"] == '"imei"'
    full: dict[object, str] = {None: "null"}
    write = _writer(full, memo_max=1)  # full from the start: it takes nothing more
    before = sys.getrefcount(evidence)
    for _ in range(1000):
        assert write(found) == text
    assert full == {None: "null"}
    assert sys.getrefcount(evidence) == before  # nothing kept, nothing released too many times
    empty = write(finding(extra={}))  # an empty extra is left out
    assert empty.endswith("<rule>null<end>") and "<extra>" not in empty


@needs_c
@pytest.mark.parametrize(
    "changes",
    [
        {"kinds": b"t"},  # a kind for each field but the last
        {"kinds": b"x" * (len(json_report._FINDING_FIELDS))},  # no such kind
        {"keys": ("<a>",)},  # a key for each field, the last one's and the end
        {"names": ("identifier", "nope")},
        {"text": 1},
    ],
)
def test_the_c_writer_refuses_what_it_cannot_write(changes: dict[str, object]) -> None:
    with pytest.raises((TypeError, ValueError, AttributeError)):
        _writer({}, **changes)


@needs_c
def test_the_c_writer_refuses_other_objects_and_values_of_another_kind() -> None:
    write = _writer({})
    with pytest.raises(TypeError):
        write(object())  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        write(finding(port="443"))
    with pytest.raises(TypeError):
        _writer({}, text=lambda value: 1)(finding())
    unset = Finding.__new__(Finding)
    with pytest.raises(AttributeError):
        write(unset)
