"""``phonehome audit``: find the declared identifiers in captured traffic."""

from __future__ import annotations

import argparse
import gc
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from phonehome.commands import Env, ExitStatus, add_engine, processes, write_output
from phonehome.errors import InputError

if TYPE_CHECKING:
    from rich.progress import Progress

    from phonehome.audit import AuditResult

HELP = "find the declared identifiers in captured traffic"


def configure(a: argparse.ArgumentParser) -> None:
    a.add_argument(
        "captures", nargs="+", metavar="CAPTURE", help="pcap, pcapng or HAR files (detected by content)"
    )
    a.add_argument("--device", required=True, metavar="FILE", help="device profile (TOML)")
    a.add_argument(
        "--format",
        choices=("text", "json", "html"),
        default="text",
        help="text (terminal), json (phonehome/findings/1), or html (one self-contained page)",
    )
    a.add_argument(
        "--redact",
        action="store_true",
        help="mask every identifier value in the HTML report (first and last two characters kept)",
    )
    a.add_argument("-o", "--output", metavar="FILE", help="write the report here instead of standard output")
    add_engine(a)
    a.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    a.add_argument(
        "--discover",
        action="store_true",
        help="also list values that look like identifiers the profile does not declare, with a confidence",
    )
    a.add_argument(
        "--keylog",
        metavar="FILE",
        action="append",
        default=[],
        help="TLS key log (NSS format, as SSLKEYLOGFILE writes) to decrypt TLS in the captures "
        "(repeatable; secrets blocks inside pcapng files are used without it)",
    )
    a.add_argument(
        "--geoip",
        metavar="FILE",
        help="a MaxMind DB (GeoLite2, GeoIP2 or DB-IP, country or city) to place servers with "
        "(default: one found in /usr/share/GeoIP, /var/lib/GeoIP, ~/.local/share/GeoIP, ...)",
    )
    a.add_argument(
        "--trackers",
        metavar="FILE",
        action="append",
        default=[],
        help="a tracker list naming owners and roles: Disconnect services.json or Exodus trackers "
        "JSON (repeatable)",
    )
    a.add_argument(
        "-j",
        "--jobs",
        type=processes,
        default=1,
        metavar="N",
        help="audit several captures in N processes at once (same findings as one; default 1)",
    )
    a.add_argument(
        "--policy",
        metavar="FILE|PRESET",
        help="what the owner agreed to: a policy TOML file, or a preset: strict, consented-cloud, "
        "residency:CC[,CC] (default: none, every leak is a violation)",
    )
    a.add_argument(
        "--store",
        metavar="DB",
        help="keep this audit in a history database: a SQLite file path or a postgresql:// URL",
    )


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """While the audit runs, SIGTERM stops it as Ctrl-C does: the report of what was read is written."""

    from phonehome.audit import STOP

    def interrupt(_signum: int, _frame: FrameType | None) -> None:
        STOP.set()
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    previous = signal.signal(signal.SIGTERM, interrupt)
    STOP.clear()
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        STOP.clear()


@contextmanager
def few_collections() -> Iterator[None]:
    """Keep the cyclic garbage collector out of a long audit's way.

    An audit makes millions of short-lived objects and keeps few; each collection of the oldest
    generation would walk every object alive, the profile's hundreds of thousands included. The
    objects alive now (the profile) are set aside from collection (``gc.freeze``), and the youngest
    generation is collected every 100,000 allocations instead of 700. Undone on the way out,
    where the objects made meanwhile join the oldest generation too: restored to 700, the
    threshold would otherwise start a collection of up to 100,000 young objects at once.
    """
    threshold = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)
    try:
        yield
    finally:
        gc.freeze()
        gc.set_threshold(*threshold)
        gc.unfreeze()


def _dump_json(path: str, result: AuditResult) -> None:
    """The JSON report written as it is encoded (the same text as ``json_report.render``), so a
    large audit's report never sits whole in memory, nor the millions of pieces it is made of."""
    from phonehome.report import json_report

    try:
        with open(path, "wb") as fh:
            json_report.write(result, fh)
    except OSError as exc:
        raise InputError(f"cannot write: {exc.strerror or exc}", source=path) from None


def progress_factory(
    env: Env, enabled: bool
) -> tuple[Progress | None, Callable[[str, int], Callable[[int], None] | None] | None]:
    if not enabled:
        return None, None
    # rich only for a terminal: an audit writing JSON for a machine starts without it.
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    progress = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=Console(file=env.stderr),
        transient=True,
    )

    def factory(path: str, size: int) -> Callable[[int], None]:
        task = progress.add_task(Path(path).name.translate({c: "?" for c in range(32)}), total=size or None)
        return lambda offset: progress.update(task, completed=offset)

    return progress, factory


def run(args: argparse.Namespace, env: Env) -> ExitStatus:
    from phonehome.audit import Spool, audit
    from phonehome.policy import load_policy
    from phonehome.profile import load_profile
    from phonehome.report import json_report, text

    if args.redact and args.format != "html":
        env.stderr.write("phonehome: --redact applies to --format html only\n")
        return ExitStatus.BAD_INPUT
    profile = load_profile(args.device)
    # Config is parsed and the store opened before any capture is read: errors come first.
    policy = load_policy(args.policy) if args.policy else None
    started = ""
    if args.store:  # the store (and sqlite3) is imported only for --store
        from phonehome.store import now, open_store

        open_store(args.store).close()  # reachable and of a known schema, before the long part
        started = now()
    show = env.progress if env.progress is not None else env.stderr.isatty()
    progress, factory = progress_factory(env, show and not args.no_progress)
    with ExitStack() as stack:
        spool = None
        if args.format == "json" and args.jobs > 1 and not args.store:
            # Worker processes write out their findings' JSON beside their audit and send back
            # only what the verdict needs (audit.Spool); the store needs every finding back.
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="phonehome-"))
            spool = Spool(json_report.findings_text, folder)
        with sigterm_interrupts(), few_collections(), progress or nullcontext():
            result = audit(
                args.captures,
                profile,
                engine=args.engine,
                progress=factory,
                policy=policy,
                jobs=args.jobs,
                geoip=args.geoip,
                trackers=args.trackers,
                keylogs=args.keylog,
                discover=args.discover,
                spool=spool,
            )
        if args.store and not result.incomplete:
            from phonehome.store import now, open_store

            # One transaction: an audit interrupted before or during this leaves no run behind.
            with open_store(args.store) as store:
                run_id = store.save(result, started=started, finished=now())
                env.stderr.write(f"phonehome: stored as run:{run_id} in {text.safe(store.name)}\n")
        if args.format == "json":
            if args.output:
                _dump_json(args.output, result)
            else:
                write_output(args.output, json_report.render(result), env)
        elif args.format == "html":
            from phonehome.report import html

            write_output(args.output, html.render(result, redact=args.redact), env)
        else:
            from rich.console import Console

            if args.output:
                with open(args.output, "w", encoding="utf-8") as fh:
                    text.render(result, Console(file=fh, width=120, no_color=True))
            else:
                text.render(result, Console(file=env.stdout))
    for error in result.errors:
        env.stderr.write(f"phonehome: {text.safe(error)}\n")
    if result.incomplete:
        env.stderr.write("phonehome: interrupted; the report covers only what was read until then\n")
        return ExitStatus.INTERRUPTED
    if result.errors:
        return ExitStatus.BAD_INPUT
    return ExitStatus.LEAKS if result.violations else ExitStatus.CLEAN
