"""Run-to-run comparison: which leaks stopped, started or persisted between two audits."""

from __future__ import annotations

from dataclasses import dataclass, field

from phonehome.model import Finding


@dataclass(frozen=True, slots=True)
class Side:
    """One side of a diff: a label for people (capture names, a stored run id) and its findings."""

    label: str
    findings: tuple[Finding, ...]
    verdict: str = ""  # the run's one-sentence verdict, when known


@dataclass(frozen=True, slots=True)
class Change:
    """One leak, keyed by identifier and destination, on one or both sides."""

    identifier: str
    category: str
    host: str | None
    country: str | None
    before: tuple[Finding, ...] = ()  # empty when the leak started
    after: tuple[Finding, ...] = ()  # empty when the leak stopped

    @property
    def verdict_before(self) -> str | None:
        return _worst(self.before)

    @property
    def verdict_after(self) -> str | None:
        return _worst(self.after)


def _worst(findings: tuple[Finding, ...]) -> str | None:
    if not findings:
        return None
    return "violation" if any(f.verdict == "violation" for f in findings) else "allowed"


@dataclass(frozen=True, slots=True)
class DiffResult:
    before: Side
    after: Side
    stopped: tuple[Change, ...] = field(default=())
    started: tuple[Change, ...] = field(default=())
    persisted: tuple[Change, ...] = field(default=())
