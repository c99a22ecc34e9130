"""The audit: inputs and a profile in, findings out. The one path every front end uses."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from phonehome.attribute.geo import Geo
from phonehome.detect.scan import Detector
from phonehome.errors import InputError
from phonehome.model import Exchange, Finding, Notice
from phonehome.profile import Profile
from phonehome.sources import read_input


@dataclass(slots=True)
class InputSummary:
    path: str
    format: str | None
    size: int
    exchanges: int = 0
    error: str | None = None  # set when the input could not be read to its end


@dataclass(slots=True)
class AuditResult:
    profile: Profile
    inputs: list[InputSummary] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    warnings: list[Notice] = field(default_factory=list)
    engine: str = ""
    # The run's verdict in one plain sentence a non-specialist understands (filled by policy/).
    verdict: str = ""
    # True when the audit was interrupted (Ctrl-C, SIGTERM) before reading every input to its end.
    incomplete: bool = False

    @property
    def errors(self) -> list[str]:
        return [i.error for i in self.inputs if i.error]


ProgressFactory = Callable[[str, int], Callable[[int], None] | None]


class Auditor:
    """A profile's detector plus attribution, reusable across many exchanges and inputs."""

    def __init__(self, profile: Profile, engine: str = "auto") -> None:
        self.profile = profile
        self.detector = Detector(profile.identifiers, engine)
        self.geo = Geo()

    def findings(self, exchange: Exchange, warnings: list[Notice]) -> list[Finding]:
        out: list[Finding] = []
        seen: set[tuple[int, str, str]] = set()
        idents = self.detector.identifiers
        country, country_source = None, None
        looked_up = False
        for part in exchange.parts:
            hits, notes = self.detector.scan(part.data)
            for note in notes:
                warnings.append(Notice(exchange.source, f"{part.where}: {note}", None, exchange.flow))
            for hit in hits:
                key = (hit.ident, hit.encoding, part.where)
                if key in seen:
                    continue
                seen.add(key)
                if not looked_up:
                    country, country_source = self.geo.country(exchange.server_ip)
                    looked_up = True
                ident = idents[hit.ident]
                out.append(
                    Finding(
                        identifier=ident.label,
                        category=ident.category,
                        encoding=hit.encoding,
                        where=part.where,
                        host=exchange.host,
                        ip=exchange.server_ip,
                        port=exchange.server_port,
                        url=exchange.url,
                        country=country,
                        country_source=country_source,
                        transport=exchange.transport,
                        protocol=exchange.protocol,
                        encrypted=exchange.encrypted,
                        time=exchange.time,
                        flow=exchange.flow,
                        source=exchange.source,
                        evidence=hit.evidence,
                        form=hit.form,
                        tls_version=exchange.tls_version,
                        tls_cipher=exchange.tls_cipher,
                        name_source=exchange.name_source,
                    )
                )
        return out


def audit(
    paths: Iterable[str],
    profile: Profile,
    *,
    engine: str = "auto",
    progress: ProgressFactory | None = None,
) -> AuditResult:
    """Audit every input; an unreadable input is recorded and the others still audited."""
    auditor = Auditor(profile, engine)
    result = AuditResult(profile=profile, engine=auditor.detector.engine.name)
    for path in paths:
        try:
            size = os.path.getsize(path)
        except OSError:
            size = 0
        summary = InputSummary(path=path, format=None, size=size)
        result.inputs.append(summary)
        try:
            summary.format, events = read_input(path, progress(path, size) if progress else None)
            for event in events:
                if isinstance(event, Notice):
                    result.warnings.append(event)
                    if event.damage and summary.error is None:
                        summary.error = str(event)
                    continue
                summary.exchanges += 1
                result.findings.extend(auditor.findings(event, result.warnings))
        except InputError as exc:
            summary.error = str(exc.located(path))
    return result
