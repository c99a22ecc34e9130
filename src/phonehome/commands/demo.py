"""``phonehome demo``: the published Redmi 1S observations, rebuilt as traffic and audited."""

from __future__ import annotations

import argparse
from pathlib import Path

from phonehome.commands import Env, ExitStatus

HELP = "replay the published Redmi 1S observations and audit them"


def configure(d: argparse.ArgumentParser) -> None:
    d.add_argument(
        "--out", default="demo-out", metavar="DIR", help="where to write the profile, pcap and findings"
    )


def run(args: argparse.Namespace, env: Env) -> ExitStatus:
    from phonehome import demo

    return ExitStatus(demo.run(Path(args.out), env.stdout))
