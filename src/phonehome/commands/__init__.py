"""One module per subcommand. Each exports ``HELP``, ``configure(parser)`` and ``run(args, env)``.

:data:`phonehome.cli.COMMANDS` lists them; adding a command is one module and one line there.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import TextIO

from phonehome.errors import InputError


class ExitStatus(IntEnum):
    """What the exit status means; scripts and CI rely on it."""

    CLEAN = 0  # no declared identifier left the phone (or: no violation of the policy)
    LEAKS = 1  # at least one violation (every finding is one when no policy is given)
    BAD_INPUT = 2  # bad usage, bad profile or policy, or an input that could not be read to its end
    INTERRUPTED = 130  # Ctrl-C or SIGTERM; what was read so far is written, marked incomplete


@dataclass
class Env:
    """What a command may touch of the outside world; tests pass their own."""

    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    progress: bool | None = None  # None: show progress when stderr is a terminal


@dataclass(frozen=True)
class Command:
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, Env], ExitStatus]


def processes(text: str) -> int:
    """The ``-j/--jobs`` argument type: a number of worker processes, 1 or more."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number of processes (1 or more), got {text!r}")
    return value


def add_engine(parser: argparse.ArgumentParser) -> None:
    """``--engine``, the matching engine, as every command that audits offers it."""
    parser.add_argument(
        "--engine",
        choices=("auto", "hyperscan", "aho-corasick"),
        default="auto",
        help="matching engine (default: hyperscan where it loads)",
    )


def write_output(output: str | None, text: str, env: Env) -> None:
    """``text`` to the file named by ``-o``, or to standard output."""
    if output:
        try:
            Path(output).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise InputError(f"cannot write: {exc.strerror or exc}", source=output) from None
    else:
        env.stdout.write(text)
