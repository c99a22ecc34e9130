"""The machine-readable findings document, schema ``phonehome/findings/1``."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from phonehome import __version__
from phonehome.audit import AuditResult
from phonehome.detect.discover import Suspect
from phonehome.model import Finding

SCHEMA = "phonehome/findings/1"


def finding_dict(finding: Finding) -> dict[str, Any]:
    data = asdict(finding)
    if not data.get("extra"):  # e.g. a location finding's precision_m and distance_m
        data.pop("extra", None)
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


def document(result: AuditResult) -> dict[str, Any]:
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
        "findings": [finding_dict(f) for f in result.findings],
        # Only with --discover: values that look like identifiers the profile does not declare.
        **({"suspected": [suspect_dict(s) for s in result.suspected]} if result.suspected else {}),
        "warnings": [
            {"source": w.source, "offset": w.offset, "flow": w.flow, "message": w.message}
            for w in result.warnings
        ],
    }


def render(result: AuditResult) -> str:
    return json.dumps(document(result), indent=2, ensure_ascii=True) + "\n"
