"""``phonehome history``: the audits kept in a history database (``audit --store DB``)."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from phonehome.commands import Env, ExitStatus, write_output

HELP = "list the audits kept in a history database"


def configure(h: argparse.ArgumentParser) -> None:
    h.add_argument(
        "--store",
        required=True,
        metavar="DB",
        help="the history database: a SQLite file or a postgresql:// URL",
    )
    h.add_argument("--format", choices=("text", "json"), default="text")
    h.add_argument("-o", "--output", metavar="FILE", help="write the list here instead of standard output")


def run(args: argparse.Namespace, env: Env) -> ExitStatus:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from phonehome.report.text import safe
    from phonehome.store import open_store

    with open_store(args.store) as store:
        runs = store.runs()
        name = store.name  # a URL without its password
    if args.format == "json":
        doc = {"schema": "phonehome/history/1", "runs": [asdict(r) for r in runs]}
        write_output(args.output, json.dumps(doc, indent=2, ensure_ascii=True) + "\n", env)
        return ExitStatus.CLEAN
    table = Table(title=Text(f"{len(runs)} run(s) in {safe(name)}"), title_justify="left")
    for column in ("run", "date", "device", "captures", "findings", "violations", "verdict"):
        table.add_column(column, overflow="fold")
    for r in runs:
        table.add_row(
            Text(f"run:{r.id}"),
            Text(r.started),
            Text(safe(r.device)),
            Text(str(r.inputs) + ("" if r.complete else " (not all read)")),
            Text(str(r.findings)),
            Text(str(r.violations), style="red" if r.violations else "green"),
            Text(safe(r.verdict)),
        )
    if args.output:
        with open(args.output, "w", encoding="utf-8") as fh:
            Console(file=fh, width=160, no_color=True).print(table)
    else:
        Console(file=env.stdout).print(table)
    return ExitStatus.CLEAN
