"""``phonehome diff``: which leaks stopped, started or persisted between two runs."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from phonehome.commands import Env, ExitStatus, write_output
from phonehome.errors import InputError

if TYPE_CHECKING:
    from rich.console import Console

    from phonehome.diff import DiffResult

HELP = "compare two runs: which leaks stopped, started, persisted"


def configure(d: argparse.ArgumentParser) -> None:
    for name, when in (("before", "earlier"), ("after", "later")):
        d.add_argument(
            name,
            metavar=name.upper(),
            help=f"the {when} run: run:N (stored), a findings JSON, or captures joined by commas",
        )
    d.add_argument("--device", metavar="FILE", help="device profile (TOML); needed when a side is captures")
    d.add_argument(
        "--policy",
        metavar="FILE|PRESET",
        help="judge both sides against this policy (default: captures against none; stored runs and "
        "findings JSON keep their verdicts)",
    )
    d.add_argument("--store", metavar="DB", help="the history database that run:N refers to")
    d.add_argument("--format", choices=("text", "json", "html"), default="text")
    d.add_argument("-o", "--output", metavar="FILE", help="write the report here instead of standard output")
    d.add_argument(
        "--redact",
        action="store_true",
        help="html only: mask every identifier value (first and last two characters kept)",
    )


def run(args: argparse.Namespace, env: Env) -> ExitStatus:
    from rich.console import Console

    from phonehome import diff
    from phonehome.policy import load_policy
    from phonehome.profile import Profile, load_profile
    from phonehome.store import Store, open_store

    # Everything given on the command line is checked before either side is read.
    if args.redact and args.format != "html":
        raise InputError("--redact applies to --format html only")
    policy = load_policy(args.policy) if args.policy else None
    profile = load_profile(args.device) if args.device else None
    stores: list[Store] = []

    def need_profile() -> Profile:
        if profile is None:
            raise InputError("a side made of captures needs --device (the profile to look for)")
        return profile

    def need_store() -> Store:
        if not args.store:
            raise InputError("run:N names a stored run: give the history database with --store")
        if not stores:
            stores.append(open_store(args.store))
        return stores[0]

    try:
        before = diff.load_side(args.before, profile=need_profile, policy=policy, store=need_store)
        after = diff.load_side(args.after, profile=need_profile, policy=policy, store=need_store)
    finally:
        for store in stores:
            store.close()
    result = diff.diff(before, after)
    if args.format == "json":
        write_output(args.output, diff.render_json(result), env)
    elif args.format == "html":
        from phonehome.report import html

        write_output(args.output, html.render_diff(result, redact=args.redact, profile=profile), env)
    elif args.output:
        with open(args.output, "w", encoding="utf-8") as fh:
            render(result, Console(file=fh, width=120, no_color=True))
    else:
        render(result, Console(file=env.stdout))
    return ExitStatus.LEAKS if any(f.verdict == "violation" for f in after.findings) else ExitStatus.CLEAN


def _summary(side: dict[str, Any] | None) -> str:
    if side is None:
        return "—"
    transport = _TRANSPORT[side["encrypted"]]
    return f"{side['encoding']}, {transport}, {side['country'] or '??'}, {side['verdict']}"


# encrypted: True, False, or None when some findings of the change were and some were not.
_TRANSPORT: dict[bool | None, str] = {True: "TLS", False: "cleartext", None: "TLS/cleartext"}


def render(result: DiffResult, console: Console) -> None:
    """The diff as three tables, each change one row: identifier, destination, before, after."""
    from rich.table import Table
    from rich.text import Text

    from phonehome.diff import change_dict
    from phonehome.report.text import safe

    for name, side in (("before", result.before), ("after", result.after)):
        console.print(Text(f"{name}: {safe(side.label)}", style="bold"))
        if side.verdict:
            console.print(Text(f"  {safe(side.verdict)}"))
    for title, changes, style in (
        ("Stopped", result.stopped, "green"),
        ("Started", result.started, "red"),
        ("Persisted", result.persisted, "yellow"),
    ):
        table = Table(title=Text(f"{title} ({len(changes)})", style=f"bold {style}"), title_justify="left")
        for column in ("identifier", "destination", "before", "after"):
            table.add_column(column, overflow="fold")
        for change in changes:
            data = change_dict(change)
            table.add_row(
                Text(safe(change.identifier)),
                Text(safe(change.host)),
                Text(safe(_summary(data["before"]))),
                Text(safe(_summary(data["after"]))),
            )
        console.print(table)
    counts = (
        f"{len(result.stopped)} stopped, {len(result.started)} started, {len(result.persisted)} persisted."
    )
    console.print(Text(counts, style="bold"))
