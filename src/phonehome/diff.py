"""Run-to-run comparison: which leaks stopped, started or persisted between two audits.

A leak is an identifier and the destination it went to (host, or address when there is no name);
a :class:`Change` keeps the findings of both sides, so a change of encoding, transport, country or
verdict shows. A side is a findings JSON, a stored run (``run:N``) or captures audited on the spot.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from phonehome.errors import InputError
from phonehome.model import Finding
from phonehome.policy import Policy, judge_all, sentence
from phonehome.profile import Profile

if TYPE_CHECKING:
    from phonehome.store import Store


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


# --- comparing ----------------------------------------------------------------------------------------


def leak_key(f: Finding) -> tuple[str, str]:
    """What makes two findings the same leak: the identifier and where it went (host, else address)."""
    return f.identifier, (f.host or f.ip).lower().rstrip(".")


def diff(before: Side, after: Side) -> DiffResult:
    """Which leaks stopped, started or persisted from ``before`` to ``after``."""
    old: dict[tuple[str, str], list[Finding]] = defaultdict(list)
    new: dict[tuple[str, str], list[Finding]] = defaultdict(list)
    for f in before.findings:
        old[leak_key(f)].append(f)
    for f in after.findings:
        new[leak_key(f)].append(f)
    out: dict[str, list[Change]] = {"stopped": [], "started": [], "persisted": []}
    for key in sorted(old.keys() | new.keys()):
        was, now = tuple(old.get(key, ())), tuple(new.get(key, ()))
        latest = (now or was)[0]
        change = Change(key[0], latest.category, key[1], latest.country, was, now)
        out["persisted" if was and now else "stopped" if was else "started"].append(change)
    return DiffResult(before, after, tuple(out["stopped"]), tuple(out["started"]), tuple(out["persisted"]))


# --- sides: a findings JSON, a stored run, or captures audited now --------------------------------------

_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "str | None": (str, type(None)),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "dict[str, str]": (dict,),
}
_FIELDS = {f.name: f for f in fields(Finding)}
_REQUIRED = [f.name for f in fields(Finding) if f.default is MISSING and f.default_factory is MISSING]
FINDINGS_SCHEMAS = ("phonehome/findings/1",)


def finding_from_dict(data: object, source: str, key: str) -> Finding:
    """A finding as a findings JSON writes it; anything missing or of the wrong type is an InputError."""
    if not isinstance(data, dict):
        raise InputError("a finding must be an object", source=source, key=key)
    for name in _REQUIRED:
        if name not in data:
            raise InputError(f"finding has no {name!r}", source=source, key=key)
    values: dict[str, Any] = {}
    for name, value in data.items():
        spec = _FIELDS.get(name)
        if spec is None:
            continue  # a later schema's field this version does not know
        wanted = _FIELD_TYPES[str(spec.type)]
        if not isinstance(value, wanted) or (isinstance(value, bool) and bool not in wanted):
            raise InputError(f"{name} has the wrong type", source=source, key=f"{key}.{name}")
        values[name] = value
    if values.get("verdict", "violation") not in ("allowed", "violation"):
        raise InputError("verdict must be 'allowed' or 'violation'", source=source, key=f"{key}.verdict")
    return Finding(**values)


def side_from_json(path: str, doc: dict[str, Any]) -> Side:
    if doc.get("schema") not in FINDINGS_SCHEMAS:
        raise InputError(
            f"not a phonehome findings document (schema {doc.get('schema')!r})", source=path, key="schema"
        )
    found = doc.get("findings")
    if not isinstance(found, list):
        raise InputError("findings must be a list", source=path, key="findings")
    verdict = doc.get("verdict")
    sentence = verdict.get("sentence", "") if isinstance(verdict, dict) else ""
    findings = tuple(finding_from_dict(f, path, f"findings[{i}]") for i, f in enumerate(found))
    return Side(Path(path).name, findings, sentence if isinstance(sentence, str) else "")


def _read_json(path: str) -> dict[str, Any] | None:
    """The document in ``path`` if it is a JSON object; None if it is not JSON (a capture, say)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(1)
            if head not in (b"{", b"\xef"):
                return None
            data = head + fh.read()
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", source=path) from None
    try:
        doc = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: nested too deeply
        return None  # a HAR that is not valid JSON is for the capture reader to report
    return doc if isinstance(doc, dict) and "schema" in doc else None


def side_from_run(store: Store, run_id: int) -> Side:
    run = store.run(run_id)
    return Side(f"run:{run_id}", run.findings, run.summary.verdict)


def side_from_captures(paths: list[str], profile: Profile, policy: Policy | None) -> Side:
    from phonehome.audit import audit

    result = audit(paths, profile, policy=policy)
    if result.errors:
        raise InputError(result.errors[0])
    return Side(", ".join(Path(p).name for p in paths), tuple(result.findings), result.verdict)


def rejudge(side: Side, policy: Policy | None) -> Side:
    """``side`` judged again against ``policy``, so both sides of a diff use the same rules."""
    findings = tuple(judge_all(policy, side.findings))
    return replace(side, findings=findings, verdict=sentence(findings, policy))


def load_side(
    spec: str,
    *,
    profile: Callable[[], Profile],
    policy: Policy | None,
    store: Callable[[], Store],
) -> Side:
    """One side named on the command line: ``run:N``, a findings JSON, or captures joined by commas.

    ``profile`` and ``store`` are called only when the side needs them (captures; a stored run).
    A findings JSON and a stored run keep their verdicts unless ``policy`` is given.
    """
    if spec.startswith("run:"):
        number = spec[4:]
        if not number.isdigit():
            raise InputError(f"a stored run is written run:N, not {spec!r}")
        side = side_from_run(store(), int(number))
        return rejudge(side, policy) if policy is not None else side
    paths = [p for p in spec.split(",") if p]
    if len(paths) == 1 and (doc := _read_json(paths[0])) is not None:
        side = side_from_json(paths[0], doc)
        return rejudge(side, policy) if policy is not None else side
    return side_from_captures(paths, profile(), policy)


# --- the JSON document ----------------------------------------------------------------------------------

DIFF_SCHEMA = "phonehome/diff/1"


def _side_summary(findings: tuple[Finding, ...]) -> dict[str, Any] | None:
    if not findings:
        return None
    encrypted = {f.encrypted for f in findings}
    violation = next((f for f in findings if f.verdict == "violation"), None)
    first = findings[0]
    return {
        "ip": sorted({f.ip for f in findings}),
        "country": first.country,
        "country_source": first.country_source,
        "owner": first.owner,
        "encoding": ", ".join(sorted({f.encoding for f in findings})),
        "encrypted": encrypted.pop() if len(encrypted) == 1 else None,  # None: some were, some not
        "verdict": _worst(findings),
        "rule": (violation or first).rule,
        "findings": len(findings),
    }


def change_dict(change: Change) -> dict[str, Any]:
    before, after = _side_summary(change.before), _side_summary(change.after)
    latest = after or before
    assert latest is not None  # a change has findings on at least one side
    return {
        "identifier": change.identifier,
        "category": change.category,
        "host": change.host,
        "country": latest["country"],
        "encoding": latest["encoding"],
        "encrypted": latest["encrypted"],
        "verdict": latest["verdict"],
        "before": before,
        "after": after,
    }


def document(result: DiffResult) -> dict[str, Any]:
    return {
        "schema": DIFF_SCHEMA,
        "before": {"label": result.before.label, "verdict": result.before.verdict},
        "after": {"label": result.after.label, "verdict": result.after.verdict},
        "stopped": [change_dict(c) for c in result.stopped],
        "started": [change_dict(c) for c in result.started],
        "persisted": [change_dict(c) for c in result.persisted],
    }


def render_json(result: DiffResult) -> str:
    return json.dumps(document(result), indent=2, ensure_ascii=True) + "\n"
