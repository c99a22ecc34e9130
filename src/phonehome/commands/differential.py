"""``phonehome differential``: identifiers found by comparing two runs whose device values differ."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from phonehome.commands import Env, ExitStatus, write_output

if TYPE_CHECKING:
    from rich.console import Console

HELP = "compare two runs on devices with different IDs: values that change with them are identifiers"
SCHEMA = "phonehome/differential/1"


def configure(a: argparse.ArgumentParser) -> None:
    a.description = (
        "Compare two captures of the same actions on two devices (or one device before and after"
        " resetting its IDs). Give each run as one capture (RUN_A RUN_B) or as several (--a FILE...,"
        " --b FILE...)."
    )
    a.add_argument("runs", nargs="*", metavar="RUN", help="RUN_A RUN_B: one capture per run")
    a.add_argument("--a", nargs="+", default=[], metavar="FILE", dest="run_a", help="captures of run A")
    a.add_argument("--b", nargs="+", default=[], metavar="FILE", dest="run_b", help="captures of run B")
    a.add_argument("--device-a", required=True, metavar="FILE", help="device profile of run A (TOML)")
    a.add_argument("--device-b", required=True, metavar="FILE", help="device profile of run B (TOML)")
    a.add_argument("--format", choices=("text", "json"), default="text")
    a.add_argument("-o", "--output", metavar="FILE", help="write the report here instead of standard output")


def _runs(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    from phonehome.errors import InputError

    run_a, run_b = list(args.run_a), list(args.run_b)
    if args.runs:
        if run_a or run_b or len(args.runs) != 2:
            raise InputError("give RUN_A RUN_B (one capture each) or --a FILE... --b FILE..., not both")
        run_a, run_b = [args.runs[0]], [args.runs[1]]
    if not run_a or not run_b:
        raise InputError("differential needs captures of both runs: RUN_A RUN_B, or --a FILE... --b FILE...")
    return run_a, run_b


def document(result: Any) -> dict[str, Any]:
    from dataclasses import asdict

    return {
        "schema": SCHEMA,
        "runs": {
            side.label: {
                "device": side.profile.name,
                "profile": side.profile.source,
                "exchanges": len(side.exchanges),
                "errors": side.errors,
            }
            for side in (result.a, result.b)
        },
        "differing": list(result.differing),
        "derived": [{**asdict(d), "description": d.description} for d in result.derived],
        "noise": [{"endpoint": endpoint, "field": name} for endpoint, name in result.noise],
        "constant": result.constant,
        "unpaired_endpoints": result.unpaired,
    }


def render_text(result: Any, console: Console) -> None:
    from rich.text import Text

    from phonehome.report.text import safe

    console.print(
        Text(f"phonehome differential: {safe(result.a.profile.name)} vs {safe(result.b.profile.name)}")
    )
    for side in (result.a, result.b):
        console.print(Text(f"  run {side.label}: {len(side.exchanges):,} exchanges"))
    if not result.differing:
        console.print(
            Text("The two profiles declare the same values: nothing to tell identifiers by.", style="yellow")
        )
    else:
        console.print(Text("Device values that differ: " + ", ".join(result.differing)))
    if result.derived:
        console.print(Text("Values that change with the device:", style="bold red"))
        for d in result.derived:
            where = f"{d.method or ''} {d.host or ''}{d.path}".strip()
            console.print(Text(f"  {safe(where)} {safe(d.field)}: {d.description}", style="bold"))
            console.print(Text(f"    A ({d.samples_a}x): {safe(d.value_a)}"))
            console.print(Text(f"    B ({d.samples_b}x): {safe(d.value_b)}"))
    else:
        console.print(Text("No value changed with the device's identifiers.", style="green"))
    console.print(
        Text(
            f"{len(result.derived)} derived, {len(result.noise)} noisy, {result.constant} constant field(s);"
            f" {result.unpaired} endpoint(s) seen in one run only."
        )
    )


def run(args: argparse.Namespace, env: Env) -> ExitStatus:
    from phonehome.differential import compare, read_run
    from phonehome.profile import load_profile
    from phonehome.report.text import safe

    run_a, run_b = _runs(args)
    profile_a, profile_b = load_profile(args.device_a), load_profile(args.device_b)
    result = compare(read_run("A", run_a, profile_a), read_run("B", run_b, profile_b))
    if args.format == "json":
        write_output(args.output, json.dumps(document(result), indent=2, ensure_ascii=True) + "\n", env)
    else:
        from rich.console import Console

        if args.output:
            with open(args.output, "w", encoding="utf-8") as fh:
                render_text(result, Console(file=fh, width=120, no_color=True, soft_wrap=True))
        else:
            render_text(result, Console(file=env.stdout, soft_wrap=True))
    errors = result.a.errors + result.b.errors
    for error in errors:
        env.stderr.write(f"phonehome: {safe(error)}\n")
    if errors:
        return ExitStatus.BAD_INPUT
    return ExitStatus.LEAKS if result.derived else ExitStatus.CLEAN
