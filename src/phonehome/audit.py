"""The audit: inputs and a profile in, findings out. The one path every front end uses."""

from __future__ import annotations

import os
import signal
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from phonehome.attribute import Destination, Destinations
from phonehome.detect.location import LocationFinder
from phonehome.detect.scan import Detector
from phonehome.errors import InputError
from phonehome.model import Exchange, Finding, Notice
from phonehome.policy import Facet, Policy, facets, fixed_verdict, judge_all, sentence, sentence_of
from phonehome.profile import Profile
from phonehome.protocols.keylog import KeyStore
from phonehome.sources import load_keylogs, read_input

if TYPE_CHECKING:  # discovery is imported only by audits that ask for it (--discover)
    from phonehome.detect.discover import Discoverer, Suspect


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
    policy: Policy | None = None  # what the findings were judged against; None: every leak is a violation
    # Values that look like identifiers the profile does not declare (audit with discover=True).
    suspected: list[Suspect] = field(default_factory=list)
    # True when the audit was interrupted (Ctrl-C, SIGTERM) before reading every input to its end.
    incomplete: bool = False
    # With a Spool, one entry per input, in order: (how many findings, the file its worker wrote
    # their text to), or (how many, None) when they could not be written and are in ``findings``.
    # Empty without a spool.
    encoded: list[tuple[int, str | None]] = field(default_factory=list)
    # The findings written out to ``encoded``'s files, which are not in ``findings``, counted by
    # what the verdict takes of them (policy.facets).
    written: Counter[Facet] = field(default_factory=Counter)

    @property
    def violations(self) -> int:
        written = sum(n for (*_, violation), n in self.written.items() if violation)
        return written + sum(f.verdict == "violation" for f in self.findings)

    @property
    def errors(self) -> list[str]:
        return [i.error for i in self.inputs if i.error]


ProgressFactory = Callable[[str, int], Callable[[int], None] | None]


@dataclass(frozen=True, slots=True)
class Spool:
    """How worker processes write out each input's findings for a report, beside their audit.

    ``encode`` turns an input's findings into their text (JSON, say), written to a new file in
    ``folder``: the work is shared out, and the text reaches the report through the file system.
    The findings written out do not come back: a worker sends only their count by
    :data:`~phonehome.policy.Facet`, what the verdict needs (bringing back each finding costs
    about 6 µs, half of it in the parent). So the result's ``findings`` lack them, and only a
    report that splices ``encoded`` (``json_report.write``) shows every finding: a caller that
    needs the Finding objects (the history store, the text and HTML reports) passes no spool.
    An input whose text cannot be written sends its findings back, for the report to encode.
    """

    encode: Callable[[list[Finding]], str]
    folder: str


class Auditor:
    """A profile's detector plus attribution, reusable across many exchanges and inputs."""

    def __init__(
        self,
        profile: Profile,
        engine: str = "auto",
        policy: Policy | None = None,
        discover: bool = False,
        *,
        geoip: str | None = None,
        trackers: Sequence[str] = (),
    ) -> None:
        self.profile = profile
        self.policy = policy
        self.detector = Detector(profile.identifiers, engine)
        # Built with the auditor, so a bad --geoip or --trackers file fails before any capture is read.
        self.destinations = Destinations(geoip, trackers)
        self.geo = self.destinations.geo
        self.locations = LocationFinder(profile.places)
        self.discoverer: Discoverer | None = None
        if discover:
            from phonehome.detect.discover import Discoverer

            self.discoverer = Discoverer(profile)
        self.verdict: tuple[str, str | None] = fixed_verdict(policy) or ("violation", None)

    def findings(self, exchange: Exchange, warnings: list[Notice]) -> list[Finding]:
        out: list[Finding] = []
        seen: set[tuple[int, str, str]] = set()
        idents = self.detector.identifiers
        dest: Destination | None = None
        parts = exchange.parts
        for i, hits, notes in self.detector.scan_parts(parts):
            part = parts[i]
            for note in notes:
                warnings.append(Notice(exchange.source, f"{part.where}: {note}", None, exchange.flow))
            for hit in hits:
                key = (hit.ident, hit.encoding, part.where)
                if key in seen:
                    continue
                seen.add(key)
                if dest is None:
                    dest = self.destinations.describe(exchange.host, exchange.server_ip)
                ident = idents[hit.ident]
                out.append(
                    dest.finding(
                        exchange,
                        identifier=ident.label,
                        category=ident.category,
                        encoding=hit.encoding,
                        where=part.where,
                        evidence=hit.evidence,
                        form=hit.form,
                        verdict=self.verdict,
                    )
                )
        located = self.locations.findings(exchange, self.destinations.describe)
        out.extend(located)
        if self.discoverer is not None:
            self.discoverer.observe(exchange)
        if self.policy is None and not located:
            return out  # each made with the verdict of no policy already (fixed_verdict)
        # Judged last, once every field a rule may name (owner, role, country) is filled.
        return judge_all(self.policy, out)


def audit(
    paths: Iterable[str],
    profile: Profile,
    *,
    engine: str = "auto",
    progress: ProgressFactory | None = None,
    policy: Policy | None = None,
    jobs: int = 1,
    auditor: Auditor | None = None,
    discover: bool = False,
    geoip: str | None = None,
    trackers: Sequence[str] = (),
    keylogs: Sequence[str] = (),
    spool: Spool | None = None,
) -> AuditResult:
    """Audit every input; an unreadable input is recorded and the others still audited.

    ``keylogs`` are NSS key log files whose secrets decrypt TLS in the captures; they are read
    first, so a bad one fails (naming file and line) before any capture is read.

    With ``jobs`` above 1 and several inputs, the inputs are audited in that many processes, one
    input per task; the result is the same as the serial one, in the same order. With ``spool``,
    each worker writes out its inputs' findings (``result.encoded``) instead of sending them back.
    """
    keys = load_keylogs(keylogs)
    paths = list(paths)
    if jobs > 1 and len(paths) > 1 and not discover:  # discovery compares values across all inputs
        # A bad --geoip or --trackers file fails here, not in a worker.
        skipped = Destinations(geoip, trackers).geo.skipped
        result = _audit_parallel(paths, profile, engine, policy, jobs, geoip, tuple(trackers), keys, spool)
        result.warnings[:0] = _skipped_notices(skipped)
        return result
    auditor = auditor or Auditor(profile, engine, policy, discover, geoip=geoip, trackers=trackers)
    result = AuditResult(profile=profile, engine=auditor.detector.engine.name, policy=policy)
    result.warnings.extend(_skipped_notices(auditor.geo.skipped))
    try:
        for path in paths:
            size = _size(path)
            summary = InputSummary(path=path, format=None, size=size)
            result.inputs.append(summary)
            callback = progress(path, size) if progress else None
            audit_input(auditor, summary, result.findings, result.warnings, callback, keys)
    except KeyboardInterrupt:
        # Ctrl-C, or SIGTERM turned into one by the command: the findings so far are the result,
        # marked incomplete, so the report is still written.
        result.incomplete = True
    result.verdict = sentence(result.findings, policy)
    if auditor.discoverer is not None:
        result.suspected = auditor.discoverer.suspects()
    return result


def _skipped_notices(skipped: InputError | None) -> list[Notice]:
    """A warning for the geolocation database found on this machine that could not be read."""
    if skipped is None:
        return []
    message = f"geolocation database skipped, countries come from the bundled tables: {skipped.message}"
    return [Notice(skipped.source or "geolocation", message, skipped.offset)]


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def audit_input(
    auditor: Auditor,
    summary: InputSummary,
    findings: list[Finding],
    warnings: list[Notice],
    progress: Callable[[int], None] | None = None,
    keys: KeyStore | None = None,
) -> None:
    """One input through ``auditor``: findings and warnings appended as they are found."""
    path = summary.path
    try:
        summary.format, events = read_input(path, progress, keys)
        for event in events:
            if STOP.is_set():
                raise KeyboardInterrupt
            if isinstance(event, Notice):
                warnings.append(event)
                if event.damage and summary.error is None:
                    summary.error = str(event)
                continue
            summary.exchanges += 1
            findings.extend(auditor.findings(event, warnings))
    except InputError as exc:
        summary.error = str(exc.located(path))


# Set by a front end's signal handler (SIGTERM) besides raising KeyboardInterrupt there: should the
# exception land where it is absorbed (a library callback, a finalizer), the next exchange still stops.
STOP = threading.Event()


# One Auditor per worker process, built once by the pool's initializer, with its key store and
# where it writes out its findings (or None).
_WORKER: list[Auditor] = []
_WORKER_KEYS: list[KeyStore] = []
_WORKER_SPOOL: list[Spool | None] = []


def _init_worker(
    profile: Profile,
    engine: str,
    policy: Policy | None,
    geoip: str | None,
    trackers: tuple[str, ...],
    keys: KeyStore | None = None,
    spool: Spool | None = None,
) -> None:
    _WORKER[:] = [Auditor(profile, engine, policy, geoip=geoip, trackers=trackers)]
    _WORKER_KEYS[:] = [keys or KeyStore()]
    _WORKER_SPOOL[:] = [spool]


def _follow_stop(stop: Any) -> None:
    """In a worker: leave interrupts to the parent, and stop reading when it sets ``stop``.

    Ctrl-C reaches every process of the terminal's group; a worker ignores it, and the parent,
    which also handles SIGTERM, tells the workers through ``stop`` (a multiprocessing Event). A
    thread turns that into this process's :data:`STOP`, which the read loop checks cheaply.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    STOP.clear()

    def watch() -> None:
        stop.wait()
        STOP.set()

    threading.Thread(target=watch, name="phonehome-stop", daemon=True).start()


def _init_worker_following(stop: Any, *initargs: Any) -> None:
    _follow_stop(stop)
    _init_worker(*initargs)


# What a worker returns for one input: engine name, summary, its findings, or their facets and
# the file of their text when written out, warnings, and whether it was interrupted.
_Done = tuple[str, InputSummary, list[Finding] | tuple[Counter[Facet], str], list[Notice], bool]


def _audit_one(path: str) -> _Done:
    summary = InputSummary(path=path, format=None, size=_size(path))
    findings: list[Finding] = []
    warnings: list[Notice] = []
    interrupted = False
    try:
        audit_input(_WORKER[0], summary, findings, warnings, None, _WORKER_KEYS[0])
    except KeyboardInterrupt:
        interrupted = True  # what was read of this input is still returned
    spool = _WORKER_SPOOL[0]
    written = _write_out(spool, findings) if spool is not None else None
    found = findings if written is None else (facets(findings), written)
    return _WORKER[0].detector.engine.name, summary, found, warnings, interrupted


def _write_out(spool: Spool, findings: list[Finding]) -> str | None:
    """Findings written to a new file of the spool: the file, or None when it failed."""
    try:
        fd, name = tempfile.mkstemp(suffix=".part", dir=spool.folder)
        with open(fd, "w", encoding="utf-8") as fh:
            fh.write(spool.encode(findings))
    except OSError:
        return None  # the findings go back, for the report to encode
    return name


def _audit_parallel(
    paths: list[str],
    profile: Profile,
    engine: str,
    policy: Policy | None,
    jobs: int,
    geoip: str | None = None,
    trackers: tuple[str, ...] = (),
    keys: KeyStore | None = None,
    spool: Spool | None = None,
) -> AuditResult:
    # Processes, not threads: detection is CPU-bound Python. When this process runs no other
    # thread, the auditor is built once here and the workers are forked with it (a large profile
    # costs seconds to load); otherwise they are spawned and each builds its own, so that no worker
    # inherits a lock another thread held at the fork.
    #
    # Interrupted (Ctrl-C, or SIGTERM turned into KeyboardInterrupt by the command), the parent
    # cancels the inputs not started, tells the workers to stop at their next exchange, and keeps
    # what every started input gave: the result is marked incomplete, as the serial one is.
    import multiprocessing  # imported here: a serial audit starts without them
    from concurrent.futures import ProcessPoolExecutor

    initargs = (profile, engine, policy, geoip, trackers, keys, spool)
    workers = min(jobs, len(paths))
    incomplete = False
    done: list[_Done] = []
    try:
        forking = threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("fork" if forking else "spawn")
        stop = context.Event()
        if forking:
            _init_worker(*initargs)
            pool = ProcessPoolExecutor(workers, context, initializer=_follow_stop, initargs=(stop,))
        else:
            pool = ProcessPoolExecutor(
                workers, context, initializer=_init_worker_following, initargs=(stop, *initargs)
            )
        with pool:
            futures = [pool.submit(_audit_one, path) for path in paths]
            try:
                for future in futures:
                    done.append(future.result())
            except KeyboardInterrupt:
                incomplete = True
                stop.set()
                for future in futures:
                    future.cancel()
                done = [f.result() for f in futures if not f.cancelled()]
    finally:
        _WORKER.clear()
        _WORKER_KEYS.clear()
        _WORKER_SPOOL.clear()
    result = AuditResult(profile=profile, engine=done[0][0] if done else engine, policy=policy)
    result.incomplete = incomplete
    counts: Counter[Facet] = Counter()  # of every finding, in input order
    for _engine, summary, found, warnings, interrupted in done:
        result.inputs.append(summary)
        if isinstance(found, list):
            result.findings.extend(found)
            counts.update(facets(found))
            if spool is not None:
                result.encoded.append((len(found), None))
        else:
            written, file = found
            result.written.update(written)
            counts.update(written)
            result.encoded.append((written.total(), file))
        result.warnings.extend(warnings)
        result.incomplete |= interrupted
    result.verdict = sentence_of(counts, policy)
    return result
