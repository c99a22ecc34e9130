"""The JSON findings document: what it holds, and its text laid out one finding per line."""

from __future__ import annotations

import dataclasses
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from factories import finding
from phonehome.audit import AuditResult
from phonehome.report import json_report
from report.report_inputs import demo


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
    for _ in range(2):  # the second time from the texts remembered
        assert json_report.finding_text(found) == json_report._COMPACT.encode(json_report.finding_dict(found))
