"""The machine-readable findings document, schema ``phonehome/findings/1``."""

from __future__ import annotations

import json
import operator
from collections.abc import Iterable, Iterator
from dataclasses import fields
from typing import Any

from phonehome import __version__
from phonehome.audit import AuditResult
from phonehome.detect.discover import Suspect
from phonehome.model import Finding

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
    """The findings document; with ``lazy``, its findings are a generator of dicts, not a list."""
    findings = (finding_dict(f) for f in result.findings)
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


def finding_text(finding: Finding) -> str:
    """One finding as the document writes it: what audit() workers are given to encode."""
    return _COMPACT.encode(finding_dict(finding))


def lines(result: AuditResult) -> Iterator[str]:
    """The document as JSON text, piece by piece: one top-level key per line, one line per item
    of a list (finding, warning, input). Each finding is encoded as it is reached (or taken as the
    audit's workers encoded it with :func:`finding_text`), so a large audit's document never sits
    whole in memory."""
    doc = document(result, lazy=True)
    done = len(result.encoded) == len(result.findings)
    ready: dict[str, Iterable[str]] = {"findings": result.encoded} if done else {}
    yield "{\n"
    last = len(doc) - 1
    for i, (key, value) in enumerate(doc.items()):
        comma = "," if i < last else ""
        if isinstance(value, (list, Iterator)):
            yield f"  {_COMPACT.encode(key)}: ["
            first = True
            for text in ready.get(key) or map(_COMPACT.encode, value):
                yield ("\n    " if first else ",\n    ") + text
                first = False
            yield f"{'' if first else chr(10) + '  '}]{comma}\n"
        else:
            yield f"  {_COMPACT.encode(key)}: {_COMPACT.encode(value)}{comma}\n"
    yield "}\n"


def render(result: AuditResult) -> str:
    return "".join(lines(result))
