"""The machine-readable findings document, schema ``phonehome/findings/1``."""

from __future__ import annotations

import json
import operator
import shutil
from collections.abc import Callable, Iterator
from dataclasses import fields
from itertools import islice
from json.encoder import encode_basestring_ascii
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from phonehome import __version__
from phonehome.audit import AuditResult
from phonehome.model import Finding

if TYPE_CHECKING:  # discovery is imported only by audits that ask for it (--discover)
    from phonehome.detect.discover import Suspect

SCHEMA = "phonehome/findings/1"


_FINDING_FIELDS = tuple(f.name for f in fields(Finding) if f.name != "extra")
_finding_values = operator.attrgetter(*_FINDING_FIELDS)  # all of them in one call


def finding_dict(finding: Finding) -> dict[str, Any]:
    data = dict(zip(_FINDING_FIELDS, _finding_values(finding), strict=True))
    if finding.extra:  # e.g. a location finding's precision_m and distance_m
        data["extra"] = dict(finding.extra)
    return data


def suspect_dict(suspect: Suspect) -> dict[str, Any]:
    return {
        "value": suspect.value,
        "key": suspect.key,
        "confidence": suspect.confidence,
        "reasons": list(suspect.reasons),
        "hosts": list(suspect.hosts),
        "shape": suspect.shape,
        "count": suspect.count,
        "where": list(suspect.where),
    }


def document(result: AuditResult, *, lazy: bool = False) -> dict[str, Any]:
    """The findings document; with ``lazy``, its findings are the Finding objects themselves (as
    :func:`finding_text` writes them), not a list of dicts."""
    findings: Iterator[Any] = iter(result.findings) if lazy else (finding_dict(f) for f in result.findings)
    return {
        "schema": SCHEMA,
        "tool": {"name": "phonehome", "version": __version__, "engine": result.engine},
        "device": {"name": result.profile.name, "profile": result.profile.source},
        # True when the audit was interrupted (Ctrl-C, SIGTERM): the findings cover only what was read.
        "incomplete": result.incomplete,
        "verdict": {
            "sentence": result.verdict,
            "violations": result.violations,
            "policy": result.policy.name if result.policy else None,
            "policy_source": result.policy.source if result.policy else None,
        },
        "inputs": [
            {"path": i.path, "format": i.format, "bytes": i.size, "exchanges": i.exchanges, "error": i.error}
            for i in result.inputs
        ],
        "findings": findings if lazy else list(findings),
        # Only with --discover: values that look like identifiers the profile does not declare.
        **({"suspected": [suspect_dict(s) for s in result.suspected]} if result.suspected else {}),
        "warnings": [
            {"source": w.source, "offset": w.offset, "flow": w.flow, "message": w.message}
            for w in result.warnings
        ],
    }


# Without indentation the standard library encodes in C; the layout is added around it.
_COMPACT = json.JSONEncoder(ensure_ascii=True, separators=(", ", ": "))


# Between two items of a list in the document.
_ITEM = ",\n    "


def _make_finding_text() -> Callable[[Finding], str]:
    """``finding_text(finding)``: ``_COMPACT.encode(finding_dict(finding))``, written out field by field.

    An audit writes tens of thousands of findings; encoding each through a dict cost as much as
    finding them. Each key is encoded once, here, into one format string with a slot per value
    (one formatting builds the text, where joining the pieces one by one copied it over and
    over); each value by its field's type: text through the C string encoder, remembered (hosts,
    URLs, flows and rules recur in every finding of an exchange), numbers as the encoder writes
    them. A finding's ``extra`` goes through the encoder.
    """
    types = {f.name: f.type for f in fields(Finding)}
    namespace: dict[str, Any] = {"values": _finding_values, "text": _text, "number": float.__repr__}
    namespace["known"] = _TEXTS.get
    namespace["encode"] = _COMPACT.encode
    namespace["INF"] = float("inf")
    pieces, template = [], ""
    for i, name in enumerate(_FINDING_FIELDS):
        key = ("{" if i == 0 else ", ") + _COMPACT.encode(name) + ": "
        kind = types[name]
        if kind in ("str", "str | None"):
            value = f"(known(v{i}) or text(v{i}))"  # a text seen before without a call
        elif kind == "int":
            value = f"int.__repr__(v{i})"
        elif kind == "bool":
            value = f"('true' if v{i} else 'false')"
        elif kind == "float":  # NaN and the infinities as the encoder writes them
            value = f"(number(v{i}) if v{i} == v{i} and v{i} not in (INF, -INF) else encode(v{i}))"
        else:  # pragma: no cover - a new field of another type must be added here
            raise TypeError(f"Finding.{name}: no JSON writer for {kind}")
        template += key.replace("%", "%%") + "%s"
        pieces.append(value)
    names = ", ".join(f"v{i}" for i in range(len(_FINDING_FIELDS)))
    slots, with_extra = ", ".join(pieces), template + ", " + _COMPACT.encode("extra") + ": %s}"
    source = [
        "def finding_text(finding):",
        f"    {names}, = values(finding)",
        "    if finding.extra:",
        f"        return {with_extra!r} % ({slots}, encode(finding.extra))",
        f"    return {template + '}'!r} % ({slots})",
    ]
    exec("\n".join(source), namespace)
    made: Callable[[Finding], str] = namespace["finding_text"]
    return made


# Text values seen before -> their JSON text; bounded, as a capture can hold endless evidence.
_TEXTS: dict[str | None, str] = {None: "null"}
_TEXTS_MAX = 1 << 16


def _text(value: str | None) -> str:
    if value is None:
        return "null"
    known = _TEXTS.get(value)
    if known is None:
        known = encode_basestring_ascii(value)
        if len(_TEXTS) < _TEXTS_MAX:
            _TEXTS[value] = known
    return known


def _make_finding_writer() -> Callable[[Finding], str] | None:
    """:func:`finding_text` in C (``phonehome._slots.Writer``) where the module is built: the same
    text, with the same memo, the fields read straight from their slots and the pieces copied once
    into the result (2 µs a finding, against 5). None where it is not built."""
    try:
        from phonehome._slots import Writer
    except ImportError:
        return None
    types = {f.name: str(f.type) for f in fields(Finding)}
    kinds = {"str": "t", "str | None": "t", "int": "i", "bool": "b", "float": "f"}
    keys = [
        ("{" if i == 0 else ", ") + _COMPACT.encode(name) + ": " for i, name in enumerate(_FINDING_FIELDS)
    ]
    return Writer(
        Finding,
        (*_FINDING_FIELDS, "extra"),
        "".join(kinds[types[name]] for name in _FINDING_FIELDS).encode(),
        (*keys, ", " + _COMPACT.encode("extra") + ": ", "}"),
        _TEXTS,
        _TEXTS_MAX,
        encode_basestring_ascii,
        _COMPACT.encode,
    )


# The generated Python one is the reference, and what runs where the C module is not built.
finding_text_py = _make_finding_text()
finding_text = _make_finding_writer() or finding_text_py


def findings_text(findings: list[Finding]) -> str:
    """Findings as the document writes them, one after the other: what audit() workers write out."""
    return _ITEM.join(map(finding_text, findings))


def lines(result: AuditResult) -> Iterator[str]:
    """The document as JSON text, piece by piece: one top-level key per line, one line per item
    of a list (finding, warning, input). Each finding is encoded as it is reached (or taken as the
    audit's workers wrote it out), so a large audit's document never sits whole in memory."""
    for piece in _pieces(result):
        yield piece if isinstance(piece, str) else piece.read_text(encoding="utf-8")


def write(result: AuditResult, out: BinaryIO) -> None:
    """:func:`lines` written to ``out`` as UTF-8, a few hundred pieces (findings, mostly) at a
    time; what workers wrote out is copied as it is."""
    batch: list[str] = []
    for piece in _pieces(result):
        if isinstance(piece, str):
            batch.append(piece)
            if len(batch) >= _BATCH:
                out.write("".join(batch).encode("utf-8"))
                batch.clear()
        else:
            out.write("".join(batch).encode("utf-8"))
            batch.clear()
            with open(piece, "rb") as src:
                shutil.copyfileobj(src, out, 1 << 20)
    out.write("".join(batch).encode("utf-8"))


_BATCH = 256  # pieces of text encoded and written at once


def _pieces(result: AuditResult) -> Iterator[str | Path]:
    """The document's text, and in place of runs of findings the files that hold theirs."""
    doc = document(result, lazy=True)
    yield "{\n"
    last = len(doc) - 1
    for i, (key, value) in enumerate(doc.items()):
        comma = "," if i < last else ""
        if isinstance(value, (list, Iterator)):
            yield f"  {_COMPACT.encode(key)}: ["
            first = True
            items = (
                _findings(result, iter(value)) if key == "findings" else (_COMPACT.encode(v) for v in value)
            )
            for item in items:
                separator = "\n    " if first else _ITEM
                if isinstance(item, str):
                    yield separator + item  # one piece per finding, as the serial report writes most
                else:
                    yield separator
                    yield item
                first = False
            yield f"{'' if first else chr(10) + '  '}]{comma}\n"
        else:
            yield f"  {_COMPACT.encode(key)}: {_COMPACT.encode(value)}{comma}\n"
    yield "}\n"


def _findings(result: AuditResult, findings: Iterator[Finding]) -> Iterator[str | Path]:
    """Each finding's text, or in place of an input's findings the file its worker wrote them
    to (``result.encoded``); findings added to the result after its audit come last."""
    for count, file in result.encoded:
        if file is not None:
            if count:
                yield Path(file)
        else:
            yield from map(finding_text, islice(findings, count))
    yield from map(finding_text, findings)


def render(result: AuditResult) -> str:
    return "".join(lines(result))
