"""The command line: ``phonehome audit`` and ``phonehome demo``.

Testable in-process: :func:`main` takes the arguments and an :class:`Env` (streams, terminal or
not) and returns an :class:`ExitStatus`; nothing here calls ``sys.exit`` but the entry point.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

from phonehome import __version__
from phonehome.errors import InputError


class ExitStatus(IntEnum):
    """What the exit status means; scripts and CI rely on it."""

    CLEAN = 0  # no declared identifier left the phone
    LEAKS = 1  # at least one finding
    BAD_INPUT = 2  # bad usage, bad profile, or an input that could not be read to its end


@dataclass
class Env:
    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    progress: bool | None = None  # None: show progress when stderr is a terminal


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise InputError(f"{self.prog}: {message}")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="phonehome", description="What does a phone tell the world about its owner, to whom, and where?"
    )
    p.add_argument("--version", action="version", version=f"phonehome {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    a = sub.add_parser("audit", help="find the declared identifiers in captured traffic")
    a.add_argument(
        "captures", nargs="+", metavar="CAPTURE", help="pcap, pcapng or HAR files (detected by content)"
    )
    a.add_argument("--device", required=True, metavar="FILE", help="device profile (TOML)")
    a.add_argument("--format", choices=("text", "json"), default="text")
    a.add_argument("-o", "--output", metavar="FILE", help="write the report here instead of standard output")
    a.add_argument(
        "--engine",
        choices=("auto", "hyperscan", "aho-corasick"),
        default="auto",
        help="matching engine (default: hyperscan where it loads)",
    )
    a.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    d = sub.add_parser("demo", help="replay the published Redmi 1S observations and audit them")
    d.add_argument(
        "--out", default="demo-out", metavar="DIR", help="where to write the profile, pcap and findings"
    )
    return p


def _progress_factory(
    env: Env, enabled: bool
) -> tuple[Progress | None, Callable[[str, int], Callable[[int], None] | None] | None]:
    if not enabled:
        return None, None
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


def _write(output: str | None, text: str, env: Env) -> None:
    if output:
        try:
            Path(output).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise InputError(f"cannot write: {exc.strerror or exc}", source=output) from None
    else:
        env.stdout.write(text)


def cmd_audit(args: argparse.Namespace, env: Env) -> ExitStatus:
    from phonehome.audit import audit
    from phonehome.profile import load_profile
    from phonehome.report import json_report, text

    profile = load_profile(args.device)
    show = env.progress if env.progress is not None else env.stderr.isatty()
    progress, factory = _progress_factory(env, show and not args.no_progress)
    if progress is not None:
        with progress:
            result = audit(args.captures, profile, engine=args.engine, progress=factory)
    else:
        result = audit(args.captures, profile, engine=args.engine)
    if args.format == "json":
        _write(args.output, json_report.render(result), env)
    else:
        if args.output:
            with open(args.output, "w", encoding="utf-8") as fh:
                text.render(result, Console(file=fh, width=120, no_color=True))
        else:
            text.render(result, Console(file=env.stdout))
    for error in result.errors:
        env.stderr.write(f"phonehome: {text.safe(error)}\n")
    if result.errors:
        return ExitStatus.BAD_INPUT
    return ExitStatus.LEAKS if result.findings else ExitStatus.CLEAN


def cmd_demo(args: argparse.Namespace, env: Env) -> ExitStatus:
    from phonehome import demo

    return ExitStatus(demo.run(Path(args.out), env.stdout))


COMMANDS: dict[str, Callable[[argparse.Namespace, Env], ExitStatus]] = {
    "audit": cmd_audit,
    "demo": cmd_demo,
}


def main(argv: Sequence[str] | None = None, env: Env | None = None) -> int:
    env = env or Env()
    try:
        try:
            args = _parser().parse_args(argv)
        except SystemExit as done:  # --help and --version print and stop
            return int(done.code or 0)
        return int(COMMANDS[args.command](args, env))
    except InputError as exc:
        from phonehome.report.text import safe

        env.stderr.write(f"phonehome: {safe(str(exc))}\n")
        return int(ExitStatus.BAD_INPUT)
    except KeyboardInterrupt:
        env.stderr.write("phonehome: interrupted\n")
        return 130


def entry() -> None:
    sys.exit(main())
