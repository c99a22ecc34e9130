"""The terminal view never passes capture bytes through raw, and rich markup in them is inert."""

from __future__ import annotations

import io

from rich.console import Console

from phonehome.audit import AuditResult
from phonehome.model import Finding, Notice
from phonehome.profile import Profile
from phonehome.report import text


def _finding(host: str, evidence: str = "x«865123456789019»y") -> Finding:
    return Finding(
        identifier="imei",
        category="device",
        encoding="plain",
        where="header:x-\x1b[2Jevil",
        host=host,
        ip="42.62.48.171",
        port=80,
        url="http://h/",
        country="CN",
        country_source="geolite2",
        transport="tcp",
        protocol="http",
        encrypted=False,
        time=0.0,
        flow="f",
        source="s",
        evidence=evidence,
    )


def test_control_characters_and_markup_from_a_capture_are_escaped() -> None:
    result = AuditResult(profile=Profile("p", "p.toml", None, ()))
    result.findings.append(_finding("evil\x1b]0;pwned\x07[bold red]host[/]\x9b"))
    result.warnings.append(Notice("cap\x1b[31m.pcap", "bad \x00 byte", 12))
    out = io.StringIO()
    text.render(result, Console(file=out, width=200, no_color=True, force_terminal=False))
    shown = out.getvalue()
    assert "\x1b" not in shown and "\x07" not in shown and "\x00" not in shown and "\x9b" not in shown
    assert "[bold red]host[/]" in shown  # markup shown as text, not interpreted
    assert "\\x1b" in shown


def test_safe_escapes_c0_del_and_c1() -> None:
    assert text.safe("a\x00b\x7fc\x85d") == "a\\x00b\\x7fc\\x85d"
    assert text.safe(None) == ""
