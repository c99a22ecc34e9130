"""The terminal view: findings grouped by destination, one table, nothing from a capture unescaped."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import TYPE_CHECKING

from phonehome.audit import AuditResult
from phonehome.model import Finding

if TYPE_CHECKING:  # rich is imported by the functions that render: safe() is used without it
    from rich.console import Console

_CONTROL = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F, *range(0x80, 0xA0)]}


def safe(text: str | None) -> str:
    """Text from a capture with every control character (C0, DEL, C1) escaped."""
    if not text:
        return ""
    return text.translate(_CONTROL)


def destination(f: Finding) -> tuple[str, str, str]:
    return (f.host or f.ip, f.ip, f.country or "??")


def group(findings: Iterable[Finding]) -> dict[tuple[str, str, str], list[Finding]]:
    groups: dict[tuple[str, str, str], list[Finding]] = defaultdict(list)
    for f in findings:
        groups[destination(f)].append(f)
    return dict(sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])))


def render(result: AuditResult, console: Console) -> None:
    from rich.table import Table
    from rich.text import Text

    title = f"phonehome audit of {safe(result.profile.name)}"
    console.print(Text(title, style="bold"))
    if result.incomplete:
        console.print(Text("INCOMPLETE: interrupted; only what was read until then is reported", "bold red"))
    if result.verdict:
        style = "bold red" if result.violations else "bold green"
        console.print(Text(f"Verdict: {safe(result.verdict)}", style=style))
    policy = result.policy
    console.print(
        Text(f"  policy: {safe(policy.name)} ({safe(policy.source)})" if policy else "  policy: none")
    )
    for i in result.inputs:
        line = f"  {safe(i.path)}: {i.format or 'unreadable'}, {i.size:,} bytes, {i.exchanges:,} exchanges"
        console.print(Text(line))
    if not result.findings:
        console.print(Text("No declared identifier was found in the traffic.", style="green"))
    for (host, ip, country), items in group(result.findings).items():
        transports = {("TLS" if f.encrypted else "cleartext") for f in items}
        heading = f"{safe(host)} ({safe(ip)}, {country}, {'/'.join(sorted(transports))})"
        owned = next((f for f in items if f.owner), None)
        if owned is not None:  # who runs it, and in what role (attribute/owners.py)
            heading += f" — {safe(owned.owner)}, {safe(owned.role)}"
        table = Table(title=Text(heading, style="bold red"), title_justify="left", expand=False)
        for col in ("identifier", "encoding", "where", "protocol", "count", "verdict", "rule"):
            table.add_column(col, overflow="fold")
        counts: dict[tuple[str, str, str, str, str, str], int] = defaultdict(int)
        for f in items:
            counts[(f.identifier, f.encoding, f.where, f.protocol, f.verdict, f.rule or "")] += 1
        for (ident, encoding, where, protocol, verdict, rule), n in sorted(counts.items()):
            table.add_row(
                Text(ident),
                Text(encoding),
                Text(safe(where)),
                Text(protocol),
                Text(str(n)),
                Text(verdict, style="red" if verdict == "violation" else "green"),
                Text(safe(rule)),
            )
        console.print(table)
    for w in result.warnings[:20]:
        console.print(Text(f"warning: {safe(str(w))}", style="yellow"))
    if len(result.warnings) > 20:
        console.print(
            Text(f"... and {len(result.warnings) - 20} more warnings (see --format json)", style="yellow")
        )
    for error in result.errors:
        console.print(Text(f"error: {safe(error)}", style="bold red"))
    if result.suspected:
        suspects(result, console)
    leaks = len(result.findings)
    hosts = len({destination(f) for f in result.findings})
    console.print(
        Text(f"{leaks} finding(s) to {hosts} destination(s), {result.violations} violation(s).", style="bold")
    )


def suspects(result: AuditResult, console: Console, limit: int = 30) -> None:
    from rich.table import Table
    from rich.text import Text

    """The --discover table: undeclared values that look like identifiers, most confident first."""
    table = Table(
        title=Text("Suspected identifiers (not in the profile)", style="bold yellow"), title_justify="left"
    )
    for col in ("value", "key", "confidence", "hosts", "why"):
        table.add_column(col, overflow="fold")
    for s in result.suspected[:limit]:
        hosts = ", ".join(s.hosts[:3]) + (f" +{len(s.hosts) - 3}" if len(s.hosts) > 3 else "")
        table.add_row(
            Text(safe(s.value)),
            Text(safe(s.key)),
            Text(f"{s.confidence:.2f}"),
            Text(safe(hosts)),
            Text(safe("; ".join(s.reasons))),
        )
    console.print(table)
    if len(result.suspected) > limit:
        more = len(result.suspected) - limit
        console.print(Text(f"... and {more} more (see --format json)", style="yellow"))
