"""``phonehome audit``: find the declared identifiers in captured traffic."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

from phonehome.commands import Env, ExitStatus, write_output

HELP = "find the declared identifiers in captured traffic"


def configure(a: argparse.ArgumentParser) -> None:
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


def progress_factory(
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


def run(args: argparse.Namespace, env: Env) -> ExitStatus:
    from phonehome.audit import audit
    from phonehome.profile import load_profile
    from phonehome.report import json_report, text

    profile = load_profile(args.device)
    show = env.progress if env.progress is not None else env.stderr.isatty()
    progress, factory = progress_factory(env, show and not args.no_progress)
    if progress is not None:
        with progress:
            result = audit(args.captures, profile, engine=args.engine, progress=factory)
    else:
        result = audit(args.captures, profile, engine=args.engine)
    if args.format == "json":
        write_output(args.output, json_report.render(result), env)
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
