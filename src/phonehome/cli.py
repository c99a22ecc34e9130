"""The command line: one parser, and the table of subcommands in :mod:`phonehome.commands`.

Testable in-process: :func:`main` takes the arguments and an :class:`Env` (streams, terminal or
not) and returns an :class:`ExitStatus`; nothing here calls ``sys.exit`` but the entry point.
"""

from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Sequence

from phonehome import __version__
from phonehome.commands import Command, Env, ExitStatus
from phonehome.commands import audit as audit_cmd
from phonehome.commands import demo as demo_cmd
from phonehome.commands import diff as diff_cmd
from phonehome.commands import differential as differential_cmd
from phonehome.commands import fleet as fleet_cmd
from phonehome.commands import history as history_cmd
from phonehome.commands import live as live_cmd
from phonehome.errors import InputError

__all__ = ["COMMANDS", "Env", "ExitStatus", "entry", "main"]

COMMANDS: dict[str, Command] = {
    "audit": Command(audit_cmd.HELP, audit_cmd.configure, audit_cmd.run),
    "demo": Command(demo_cmd.HELP, demo_cmd.configure, demo_cmd.run),
    "diff": Command(diff_cmd.HELP, diff_cmd.configure, diff_cmd.run),
    "differential": Command(differential_cmd.HELP, differential_cmd.configure, differential_cmd.run),
    "fleet": Command(fleet_cmd.HELP, fleet_cmd.configure, fleet_cmd.run),
    "history": Command(history_cmd.HELP, history_cmd.configure, history_cmd.run),
    "live": Command(live_cmd.HELP, live_cmd.configure, live_cmd.run),
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise InputError(f"{self.prog}: {message}")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="phonehome", description="What does a phone tell the world about its owner, to whom, and where?"
    )
    p.add_argument("--version", action="version", version=f"phonehome {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, command in COMMANDS.items():
        command.configure(sub.add_parser(name, help=command.help))
    return p


def main(argv: Sequence[str] | None = None, env: Env | None = None) -> int:
    env = env or Env()
    try:
        try:
            args = _parser().parse_args(argv)
        except SystemExit as done:  # --help and --version print and stop
            return int(done.code or 0)
        return int(COMMANDS[args.command].run(args, env))
    except InputError as exc:
        from phonehome.report.text import safe

        env.stderr.write(f"phonehome: {safe(str(exc))}\n")
        return int(ExitStatus.BAD_INPUT)
    except KeyboardInterrupt:
        env.stderr.write("phonehome: interrupted\n")
        return int(ExitStatus.INTERRUPTED)


def entry() -> None:
    status = main()
    # The process ends here: the collection the interpreter makes on its way out would walk every
    # object still alive (a large profile's, a report's findings) to free what the exit frees
    # anyway. Frozen, they are left out of it; files and standard streams are still closed.
    gc.freeze()
    sys.exit(status)
