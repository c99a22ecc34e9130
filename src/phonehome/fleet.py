"""Many captures from many devices: each audited against its own device's profile, then summarised.

A fleet is a list of :class:`CaptureTask` s, read from a directory laid out as
``DIR/<device>/<firmware>/<capture>`` (or ``DIR/<device>/<capture>`` when the firmware is not
known) or from a manifest (TOML ``[[capture]]`` tables, or CSV with ``path,device,firmware``
columns), and tied to profiles by a device map: a TOML file whose ``[devices."<glob>"]`` tables
give, for the device names they match, the ``profile`` (required), ``model``, ``firmware`` and
``policy``. Everything is read and checked before any capture is audited.

Each capture is one task of a pure function, :func:`audit_capture` (task in, serialisable
:class:`CaptureOutcome` out), run serially, in local processes (:class:`ProcessPoolExecutor`,
from the standard library, so the default needs no extra package), or on a Dask cluster
(``dask.distributed``, the ``phonehome[fleet]`` extra), where the scheduler retries the tasks of a
worker that dies. :func:`summarise` then says which identifiers leave which device models, to
whom, in which countries, on how many devices, and which firmware versions changed that.
"""

from __future__ import annotations

import csv
import fnmatch
import io
import os
import re
import threading
import tomllib
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

from phonehome.audit import Auditor, InputSummary, audit_input
from phonehome.errors import InputError
from phonehome.model import Finding, Notice
from phonehome.sources import sniff
from phonehome.tomldoc import parse_toml

__all__ = [
    "CaptureOutcome",
    "CaptureTask",
    "DeviceEntry",
    "FirmwareChange",
    "FleetResult",
    "IdentifierSummary",
    "audit_capture",
    "load_device_map",
    "load_fleet",
    "run_fleet",
    "summarise",
]

MANIFEST_COLUMNS = ("path", "device", "firmware")
# Attempts per task on a cluster beyond the first, when the task itself fails (a worker that dies
# is handled by the scheduler, which reschedules what it held).
CLUSTER_RETRIES = 3


@dataclass(frozen=True, slots=True)
class DeviceEntry:
    """One table of the device map: what the devices whose name matches ``pattern`` are."""

    pattern: str
    profile: str  # absolute path of the device profile
    model: str | None = None
    firmware: str | None = None  # when the capture's layout or manifest does not say
    policy: str | None = None  # policy file or preset, as ``audit --policy`` takes it


@dataclass(frozen=True, slots=True)
class CaptureTask:
    """One capture, the device it came from, and how to audit it. Picklable: it travels to workers."""

    path: str
    device: str
    model: str
    firmware: str | None
    profile: str
    policy: str | None = None
    engine: str = "auto"


@dataclass(frozen=True, slots=True)
class CaptureOutcome:
    """What auditing one capture gave: serialisable, so a worker can send it back."""

    task: CaptureTask
    format: str | None
    size: int
    exchanges: int
    error: str | None
    findings: tuple[Finding, ...]
    warnings: tuple[Notice, ...]


@dataclass(frozen=True, slots=True)
class IdentifierSummary:
    """Across the fleet: where one identifier (a profile key such as ``imei``) went."""

    identifier: str
    category: str
    models: tuple[str, ...]
    destinations: tuple[str, ...]  # host (or address), with its owner where attribution knows it
    countries: tuple[str, ...]
    devices: int  # distinct devices it left
    captures: int
    findings: int


@dataclass(frozen=True, slots=True)
class FirmwareChange:
    """Between two consecutive firmware versions of one model, leaks that appeared or stopped."""

    model: str
    before: str
    after: str
    appeared: tuple[str, ...]  # "identifier -> destination"
    disappeared: tuple[str, ...]


@dataclass(slots=True)
class FleetResult:
    outcomes: list[CaptureOutcome]
    identifiers: list[IdentifierSummary] = field(default_factory=list)
    changes: list[FirmwareChange] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # files of a directory that are not captures

    @property
    def findings(self) -> list[Finding]:
        return [f for o in self.outcomes for f in o.findings]

    @property
    def errors(self) -> list[str]:
        return [o.error for o in self.outcomes if o.error]

    @property
    def violations(self) -> int:
        return sum(f.verdict == "violation" for f in self.findings)


# ---- configuration ------------------------------------------------------------------------------


def _toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read: {getattr(exc, 'strerror', None) or exc}", source=str(path)) from None
    return parse_toml(text, str(path))


_ENTRY_KEYS = frozenset({"profile", "model", "firmware", "policy"})


def load_device_map(path: str | os.PathLike[str]) -> list[DeviceEntry]:
    """The ``[devices."<glob>"]`` tables of a device map, in file order; paths relative to the map."""
    source = Path(path)
    doc = _toml(source)
    devices = doc.get("devices")
    if not isinstance(devices, dict) or not devices:
        raise InputError('no [devices."<name or glob>"] table', source=str(source), key="devices")
    entries = []
    for pattern, table in devices.items():
        key = f"devices.{pattern}"
        if not isinstance(table, dict):
            raise InputError("expected a table", source=str(source), key=key)
        unknown = sorted(set(table) - _ENTRY_KEYS)
        if unknown:
            raise InputError(f"unknown key {unknown[0]!r}", source=str(source), key=f"{key}.{unknown[0]}")
        for name in _ENTRY_KEYS:
            if name in table and not isinstance(table[name], str):
                raise InputError("expected a string", source=str(source), key=f"{key}.{name}")
        if "profile" not in table:
            raise InputError("missing the device profile", source=str(source), key=f"{key}.profile")
        policy = table.get("policy")
        if policy is not None and _is_file_reference(policy):
            policy = str((source.parent / policy).resolve())
        entries.append(
            DeviceEntry(
                pattern=pattern,
                profile=str((source.parent / table["profile"]).resolve()),
                model=table.get("model"),
                firmware=table.get("firmware"),
                policy=policy,
            )
        )
    return entries


def _is_file_reference(policy: str) -> bool:
    # A policy is a file, or a preset name ("strict", "residency:IN"); a preset never has a suffix.
    return policy.endswith(".toml") or "/" in policy


def _device_entry(entries: list[DeviceEntry], device: str) -> DeviceEntry | None:
    for entry in entries:
        if fnmatch.fnmatchcase(device, entry.pattern):
            return entry
    return None


@dataclass(frozen=True, slots=True)
class _Listed:
    path: str
    device: str
    firmware: str | None
    where: str  # for error messages: the capture, or the manifest and its line


def _from_directory(root: Path, skipped: list[str]) -> Iterator[_Listed]:
    for device_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for path in sorted(device_dir.rglob("*")):
            if not path.is_file() or any(part.startswith(".") for part in path.relative_to(root).parts):
                continue
            try:
                sniff(str(path))
            except InputError:
                skipped.append(str(path))
                continue
            parts = path.relative_to(device_dir).parts
            firmware = parts[0] if len(parts) >= 2 else None  # DIR/<device>/<firmware>/...
            yield _Listed(str(path.resolve()), device_dir.name, firmware, str(path))


def _from_manifest(source: Path) -> Iterator[_Listed]:
    try:
        raw = source.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", source=str(source)) from None
    text = raw.decode("utf-8", "replace")
    try:
        doc: dict[str, Any] | None = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        doc = None
    base = source.parent
    if doc is not None:
        captures = doc.get("capture")
        if not isinstance(captures, list) or not captures:
            raise InputError("no [[capture]] table", source=str(source), key="capture")
        for i, table in enumerate(captures):
            key = f"capture[{i}]"
            if not isinstance(table, dict):
                raise InputError("expected a table", source=str(source), key=key)
            for name in ("path", "device"):
                if not isinstance(table.get(name), str) or not table[name]:
                    raise InputError(f"missing {name}", source=str(source), key=f"{key}.{name}")
            firmware = table.get("firmware")
            if firmware is not None and not isinstance(firmware, str):
                raise InputError("expected a string", source=str(source), key=f"{key}.firmware")
            where = f"{source}, {key}"
            yield _Listed(str((base / table["path"]).resolve()), table["device"], firmware, where)
        return
    # Not TOML: a CSV manifest with a header row naming at least path and device.
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    missing = [c for c in MANIFEST_COLUMNS[:2] if c not in header]
    if missing:
        raise InputError(
            "not a manifest: neither TOML [[capture]] tables nor CSV with columns "
            + ", ".join(MANIFEST_COLUMNS),
            source=str(source),
            line=1,
        )
    for row in reader:
        line = reader.line_num
        path, device = (row.get("path") or "").strip(), (row.get("device") or "").strip()
        if not path or not device:
            raise InputError("path and device are required", source=str(source), line=line)
        firmware = (row.get("firmware") or "").strip() or None
        yield _Listed(str((base / path).resolve()), device, firmware, f"{source}, line {line}")


def load_fleet(
    inputs: str | os.PathLike[str], device_map: str | os.PathLike[str], *, engine: str = "auto"
) -> tuple[list[CaptureTask], list[str]]:
    """The captures of a directory or manifest, each tied to its device entry; and the skipped files.

    Every device must match an entry of the map, and every profile must load: checked here,
    before any capture is read.
    """
    from phonehome.profile import load_profile

    root = Path(inputs)
    entries = load_device_map(device_map)
    skipped: list[str] = []
    listed = list(_from_directory(root, skipped) if root.is_dir() else _from_manifest(root))
    if not listed:
        raise InputError("no captures found", source=str(root))
    tasks = []
    profiles: set[str] = set()
    for item in listed:
        entry = _device_entry(entries, item.device)
        if entry is None:
            raise InputError(
                f"device {item.device!r} (of {item.where}) matches no table of the device map",
                source=str(device_map),
            )
        if entry.profile not in profiles:
            load_profile(entry.profile)  # a bad profile fails now, naming its file, line and key
            profiles.add(entry.profile)
        tasks.append(
            CaptureTask(
                path=item.path,
                device=item.device,
                model=entry.model or item.device,
                firmware=item.firmware or entry.firmware,
                profile=entry.profile,
                policy=entry.policy,
                engine=engine,
            )
        )
    _check_policies(tasks)
    return tasks, skipped


def _check_policies(tasks: Iterable[CaptureTask]) -> None:
    from phonehome.policy import load_policy

    for policy in {t.policy for t in tasks if t.policy}:
        load_policy(policy)


# ---- one capture --------------------------------------------------------------------------------

# Building a detector for a large profile takes seconds: each process keeps the auditors it built,
# keyed by profile file (and its size and time, so an edited profile is read again) and policy.
_AUDITORS: dict[tuple[str, int, int, str | None, str], Auditor] = {}
_MAX_AUDITORS = 4


def _auditor(task: CaptureTask) -> Auditor:
    from phonehome.policy import load_policy
    from phonehome.profile import load_profile

    stat = os.stat(task.profile)
    key = (task.profile, stat.st_size, stat.st_mtime_ns, task.policy, task.engine)
    auditor = _AUDITORS.get(key)
    if auditor is None:
        if len(_AUDITORS) >= _MAX_AUDITORS:
            _AUDITORS.pop(next(iter(_AUDITORS)))
        policy = load_policy(task.policy) if task.policy else None
        auditor = _AUDITORS[key] = Auditor(load_profile(task.profile), task.engine, policy)
    return auditor


def audit_capture(task: CaptureTask) -> CaptureOutcome:
    """Audit one capture against its device's profile: the function each fleet task runs."""
    try:
        size = os.path.getsize(task.path)
    except OSError:
        size = 0
    summary = InputSummary(path=task.path, format=None, size=size)
    findings: list[Finding] = []
    warnings: list[Notice] = []
    audit_input(_auditor(task), summary, findings, warnings)
    return CaptureOutcome(
        task=task,
        format=summary.format,
        size=size,
        exchanges=summary.exchanges,
        error=summary.error,
        findings=tuple(findings),
        warnings=tuple(warnings),
    )


# ---- running ------------------------------------------------------------------------------------

Done = Callable[[CaptureOutcome], None]


def run_fleet(
    tasks: list[CaptureTask],
    *,
    jobs: int | None = None,
    cluster: str | None = None,
    done: Done | None = None,
    timeout: float | None = None,
) -> FleetResult:
    """Audit every task (locally in ``jobs`` processes, or on the Dask cluster at ``cluster``).

    Outcomes come back in task order whatever ran where, so a run gives the same result serially,
    in processes or on a cluster.
    """
    if cluster:
        outcomes = _run_cluster(tasks, cluster, done, timeout)
    else:
        outcomes = _run_local(tasks, jobs or os.cpu_count() or 1, done)
    result = FleetResult(outcomes=outcomes)
    result.identifiers, result.changes = summarise(outcomes)
    return result


def _run_local(tasks: list[CaptureTask], jobs: int, done: Done | None) -> list[CaptureOutcome]:
    if jobs <= 1 or len(tasks) <= 1:
        outcomes = []
        for task in tasks:
            outcomes.append(audit_capture(task))
            if done is not None:
                done(outcomes[-1])
        return outcomes
    import multiprocessing

    # When this process runs no other thread, the auditors are built here and the workers forked
    # with them (a large profile costs seconds to load); otherwise workers are spawned, so that
    # none inherits a lock another thread held at the fork, and each builds what it needs.
    fork = threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods()
    if fork:
        first = {(t.profile, t.policy, t.engine): t for t in tasks}
        for task in list(first.values())[:_MAX_AUDITORS]:
            _auditor(task)
    context = multiprocessing.get_context("fork" if fork else "spawn")
    with ProcessPoolExecutor(max_workers=min(jobs, len(tasks)), mp_context=context) as pool:
        outcomes = []
        for outcome in pool.map(audit_capture, tasks):
            outcomes.append(outcome)
            if done is not None:
                done(outcome)
        return outcomes


def _run_cluster(
    tasks: list[CaptureTask], address: str, done: Done | None, timeout: float | None
) -> list[CaptureOutcome]:
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise InputError(
            "--cluster needs dask.distributed: install phonehome[fleet]", source=address
        ) from None
    try:
        client = Client(address, timeout=30 if timeout is None else min(timeout, 30))  # type: ignore[no-untyped-call]
    except OSError as exc:
        raise InputError(f"cannot reach the Dask scheduler: {exc}", source=address) from None
    with client:
        # One task per capture; a unique key per run, so two runs never share results.
        run = uuid.uuid4().hex
        futures = client.map(
            audit_capture,
            tasks,
            key=[f"phonehome-{run}-{i}" for i in range(len(tasks))],
            retries=CLUSTER_RETRIES,
            pure=False,
        )
        index = {future.key: i for i, future in enumerate(futures)}
        outcomes: list[CaptureOutcome | None] = [None] * len(tasks)
        for future in as_completed(futures, timeout=timeout):  # type: ignore[no-untyped-call]
            outcome: CaptureOutcome = future.result()
            outcomes[index[future.key]] = outcome
            if done is not None:
                done(outcome)
    return [o for o in outcomes if o is not None]


# ---- summary ------------------------------------------------------------------------------------


def destination(finding: Finding) -> str:
    """Where a finding went, as a person reads it: the host (or address) and who runs it."""
    where = finding.host or finding.ip
    return f"{where} ({finding.owner})" if finding.owner else where


def _version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    # Natural order: "9.2" before "10.1", numbers compared as numbers.
    return tuple((0, int(t)) if t.isdigit() else (1, t) for t in re.findall(r"\d+|[^\d.\-_]+", version))


def summarise(outcomes: list[CaptureOutcome]) -> tuple[list[IdentifierSummary], list[FirmwareChange]]:
    """Per identifier across the fleet, and the firmware versions that changed what leaks."""
    models: dict[str, set[str]] = defaultdict(set)
    destinations: dict[str, set[str]] = defaultdict(set)
    countries: dict[str, set[str]] = defaultdict(set)
    devices: dict[str, set[str]] = defaultdict(set)
    captures: dict[str, set[str]] = defaultdict(set)
    counts: dict[str, int] = defaultdict(int)
    category: dict[str, str] = {}
    # model -> firmware -> set of (identifier, destination)
    leaks: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for outcome in outcomes:
        task = outcome.task
        if task.firmware is not None:
            leaks[task.model].setdefault(task.firmware, set())
        for f in outcome.findings:
            name = f.identifier
            category.setdefault(name, f.category)
            models[name].add(task.model)
            destinations[name].add(destination(f))
            if f.country:
                countries[name].add(f.country)
            devices[name].add(task.device)
            captures[name].add(task.path)
            counts[name] += 1
            if task.firmware is not None:
                leaks[task.model][task.firmware].add(f"{name} -> {f.host or f.ip}")
    identifiers = [
        IdentifierSummary(
            identifier=name,
            category=category[name],
            models=tuple(sorted(models[name])),
            destinations=tuple(sorted(destinations[name])),
            countries=tuple(sorted(countries[name])),
            devices=len(devices[name]),
            captures=len(captures[name]),
            findings=counts[name],
        )
        for name in sorted(counts, key=lambda n: (-len(devices[n]), n))
    ]
    changes = []
    for model in sorted(leaks):
        versions = sorted(leaks[model], key=_version_key)
        for before, after in pairwise(versions):
            old, new = leaks[model][before], leaks[model][after]
            if old != new:
                changes.append(
                    FirmwareChange(model, before, after, tuple(sorted(new - old)), tuple(sorted(old - new)))
                )
    return identifiers, changes
