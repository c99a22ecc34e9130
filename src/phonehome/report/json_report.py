"""The machine-readable findings document, schema ``phonehome/findings/1``."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from phonehome import __version__
from phonehome.audit import AuditResult
from phonehome.model import Finding

SCHEMA = "phonehome/findings/1"


def finding_dict(finding: Finding) -> dict[str, Any]:
    data = asdict(finding)
    data.pop("extra", None)
    return data


def document(result: AuditResult) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "tool": {"name": "phonehome", "version": __version__, "engine": result.engine},
        "device": {"name": result.profile.name, "profile": result.profile.source},
        "inputs": [
            {"path": i.path, "format": i.format, "bytes": i.size, "exchanges": i.exchanges, "error": i.error}
            for i in result.inputs
        ],
        "findings": [finding_dict(f) for f in result.findings],
        "warnings": [
            {"source": w.source, "offset": w.offset, "flow": w.flow, "message": w.message}
            for w in result.warnings
        ],
    }


def render(result: AuditResult) -> str:
    return json.dumps(document(result), indent=2, ensure_ascii=True) + "\n"
