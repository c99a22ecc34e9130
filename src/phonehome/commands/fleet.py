"""``phonehome fleet``: audit many captures from many devices, each against its device's profile."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from phonehome.commands import Env, ExitStatus, add_engine, processes, write_output

if TYPE_CHECKING:
    from rich.console import Console

    from phonehome.fleet import FleetResult

HELP = "audit many captures from many devices, locally in processes or on a Dask cluster"
SCHEMA = "phonehome/fleet/1"


def configure(a: argparse.ArgumentParser) -> None:
    a.add_argument(
        "inputs",
        metavar="DIR_OR_MANIFEST",
        help="a directory laid out as DIR/<device>/<firmware>/<capture>, or a manifest "
        "(TOML [[capture]] tables or CSV with columns path,device,firmware)",
    )
    a.add_argument(
        "--device-map",
        required=True,
        metavar="MAP",
        help='TOML: [devices."<name or glob>"] tables with profile, and optionally model, firmware, policy',
    )
    a.add_argument(
        "-j", "--jobs", type=processes, metavar="N", help="local processes (default: one per core)"
    )
    a.add_argument(
        "--cluster",
        metavar="ADDRESS",
        help="run on a Dask cluster, e.g. tcp://scheduler:8786 (needs phonehome[fleet])",
    )
    a.add_argument("--format", choices=("text", "json"), default="text")
    a.add_argument("-o", "--output", metavar="FILE", help="write the report here instead of standard output")
    add_engine(a)
    a.add_argument(
        "--store",
        metavar="DB",
        help="keep each capture's audit in a history database: a SQLite file path or a postgresql:// URL",
    )


def document(result: FleetResult) -> dict[str, Any]:
    from phonehome import __version__
    from phonehome.report.json_report import finding_dict

    captures = []
    findings: list[dict[str, Any]] = []
    for outcome in result.outcomes:
        task = outcome.task
        device = {"device": task.device, "model": task.model, "firmware": task.firmware}
        captures.append(
            {
                "path": task.path,
                **device,
                "profile": task.profile,
                "policy": task.policy,
                "format": outcome.format,
                "bytes": outcome.size,
                "exchanges": outcome.exchanges,
                "findings": len(outcome.findings),
                "error": outcome.error,
            }
        )
        findings.extend({**device, **finding_dict(f)} for f in outcome.findings)
    return {
        "schema": SCHEMA,
        "tool": {"name": "phonehome", "version": __version__},
        "captures": captures,
        "skipped": result.skipped,
        "identifiers": [asdict(s) for s in result.identifiers],
        "firmware_changes": [asdict(c) for c in result.changes],
        "findings": findings,
    }


def render_text(result: FleetResult, console: Console) -> None:
    from rich.table import Table

    from phonehome.report.text import safe

    devices = {o.task.device for o in result.outcomes}
    console.print(
        f"[bold]Fleet:[/bold] {len(result.outcomes)} captures from {len(devices)} devices, "
        f"{len(result.findings)} findings"
    )
    if result.identifiers:
        table = Table(title="Which identifiers leave which devices")
        for column in ("identifier", "models", "devices", "destinations", "countries", "findings"):
            table.add_column(column)
        for s in result.identifiers:
            table.add_row(
                safe(s.identifier),
                safe(", ".join(s.models)),
                str(s.devices),
                safe(", ".join(s.destinations)),
                ", ".join(s.countries) or "-",
                str(s.findings),
            )
        console.print(table)
    else:
        console.print("No declared identifier left any device.")
    if result.changes:
        table = Table(title="Firmware versions that changed what leaks")
        for column in ("model", "from", "to", "appeared", "stopped"):
            table.add_column(column)
        for c in result.changes:
            table.add_row(
                safe(c.model),
                safe(c.before),
                safe(c.after),
                safe("\n".join(c.appeared)) or "-",
                safe("\n".join(c.disappeared)) or "-",
            )
        console.print(table)
    for path in result.skipped:
        console.print(f"skipped (not a capture): {safe(path)}")


def _store(location: str, result: FleetResult) -> tuple[int, str]:
    """Each capture as one run of the history store: its device's profile, policy and findings."""
    from phonehome.audit import AuditResult, InputSummary
    from phonehome.policy import load_policy, sentence
    from phonehome.profile import load_profile
    from phonehome.store import now, open_store

    profiles: dict[str, Any] = {}
    policies: dict[str, Any] = {}
    saved = 0
    with open_store(location) as store:
        for outcome in result.outcomes:
            task = outcome.task
            profile = profiles.get(task.profile) or profiles.setdefault(
                task.profile, load_profile(task.profile)
            )
            policy = None
            if task.policy:
                policy = policies.get(task.policy) or policies.setdefault(
                    task.policy, load_policy(task.policy)
                )
            audit = AuditResult(profile=profile, policy=policy)
            audit.inputs.append(
                InputSummary(task.path, outcome.format, outcome.size, outcome.exchanges, outcome.error)
            )
            audit.findings.extend(outcome.findings)
            audit.warnings.extend(outcome.warnings)
            audit.verdict = sentence(audit.findings, policy)
            stamp = now()
            store.save(audit, started=stamp, finished=stamp)
            saved += 1
        name = store.name
    return saved, name


def run(args: argparse.Namespace, env: Env) -> ExitStatus:
    from phonehome.fleet import load_fleet, run_fleet
    from phonehome.report.text import safe

    tasks, skipped = load_fleet(args.inputs, args.device_map, engine=args.engine)
    if args.store:
        from phonehome.store import open_store

        open_store(args.store).close()  # reachable and of a known schema, before the long part
    result = run_fleet(tasks, jobs=args.jobs, cluster=args.cluster)
    result.skipped = skipped
    if args.store:
        saved, name = _store(args.store, result)
        env.stderr.write(f"phonehome: {saved} capture audits stored in {safe(name)}\n")
    if args.format == "json":
        write_output(args.output, json.dumps(document(result), indent=2, ensure_ascii=True) + "\n", env)
    else:
        from rich.console import Console

        if args.output:
            with open(args.output, "w", encoding="utf-8") as fh:
                render_text(result, Console(file=fh, width=120, no_color=True))
        else:
            render_text(result, Console(file=env.stdout))
    for error in result.errors:
        env.stderr.write(f"phonehome: {safe(error)}\n")
    if result.errors:
        return ExitStatus.BAD_INPUT
    return ExitStatus.LEAKS if result.violations else ExitStatus.CLEAN
