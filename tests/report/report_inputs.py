"""Inputs for the HTML report tests: the demo's audits, a diff built from them, and a hostile HAR.

The HAR is crafted to attack the report, with the profile whose identifiers it carries.

Script tags, attribute break-outs with event handlers, ``javascript:`` URLs, bidi overrides,
zero-width characters, stacked combining marks, NUL and C1 controls and a lone surrogate sit in
URLs, host names, header names and values, bodies and the device name; every payload tries to set
``window.__pwned`` or the page title, so a browser shows whether any of it ran.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from functools import cache
from pathlib import Path

from phonehome.audit import AuditResult
from phonehome.demo import audit_runs
from phonehome.diff import Change, DiffResult, Side
from phonehome.model import Finding
from phonehome.profile import Profile, load_profile

_DEMO_DIR = tempfile.TemporaryDirectory(prefix="phonehome-html-demo-")


@cache
def demo() -> tuple[Profile, dict[str, AuditResult]]:
    """The demo's profile and its runs, audited once per test process."""
    profile_path, _, results = audit_runs(Path(_DEMO_DIR.name))
    return load_profile(profile_path), results


def demo_diff(results: dict[str, AuditResult]) -> DiffResult:
    """The factory run against the updated run, from the real findings: the contact and SMS leaks
    stopped, the IMEI, number and carrier leaks persisted, and one leak to a made-up tracker in the
    US started (a real finding of the updated run, moved there with ``dataclasses.replace``)."""
    before = list(results["factory"].findings)
    after = list(results["updated"].findings)
    after.append(
        dataclasses.replace(
            after[0], host="tracker.example.net", ip="54.169.43.109", country="US", owner=None
        )
    )
    keyed: dict[tuple[str, str | None], tuple[list[Finding], list[Finding]]] = {}
    for side, findings in ((0, before), (1, after)):
        for f in findings:
            keyed.setdefault((f.identifier, f.host), ([], []))[side].append(f)
    groups: dict[str, list[Change]] = {"stopped": [], "started": [], "persisted": []}
    for (ident, host), (b, a) in keyed.items():
        latest = (a or b)[0]
        change = Change(ident, latest.category, host, latest.country, tuple(b), tuple(a))
        groups["persisted" if a and b else "started" if a else "stopped"].append(change)
    return DiffResult(
        Side("factory run", tuple(before), results["factory"].verdict),
        Side("updated run", tuple(after), results["updated"].verdict),
        stopped=tuple(groups["stopped"]),
        started=tuple(groups["started"]),
        persisted=tuple(groups["persisted"]),
    )


IMEI = "865123456789019"
PHONE = "+919876543210"
EMAIL = "owner@example.org"
CONTACT = "Zoë Ŝmith"  # non-ASCII, so its evidence holds \xNN escapes

DEVICE_NAME = "<script>document.title='pwned';window.__pwned=0</script>Phone"

SCRIPT = "<script>window.__pwned=1;document.title='pwned'</script>"
BREAKOUT = '"><img src=x onerror="window.__pwned=2">'
SVG = "'><svg/onload=window.__pwned=3>"
JS_URL = "javascript:window.__pwned=4"
BIDI = "\u202egnp.exe\u202c"  # RIGHT-TO-LEFT OVERRIDE ... POP DIRECTIONAL FORMATTING
ZERO_WIDTH = "\u200b\u200d\ufeff\u2060"
COMBINING = "Z" + "\u0351\u0310\u0357\u0300\u0301" * 6
CONTROLS = "\x00\x07\x1b[31m\x85\x9b"

# Text that must be visible in the page, as text.
HOSTILE_MARKERS = (
    SCRIPT,
    BREAKOUT,
    "\\u202e",  # the bidi override, shown as a marker
    "\\u200b",
    "\\u0351",  # a combining mark past the stack limit
    "\\x00",
    "\\x85",
    "\\ud800",  # a lone surrogate
)


def hostile_profile() -> str:
    return f"""[device]
name = {json.dumps(DEVICE_NAME)}
region = "IN"

[identifiers]
imei = "{IMEI}"
phone = "{PHONE}"
email = "{EMAIL}"
android_id = "b9e28776354d259e"

[[contacts]]
name = "{CONTACT}"
phone = "+91 98111 22233"
"""


def _entry(
    url: str, headers: list[tuple[str, str]], body: str | None = None, ip: str = "42.62.48.171"
) -> dict:
    request: dict[str, object] = {
        "method": "POST" if body is not None else "GET",
        "url": url,
        "httpVersion": "HTTP/1.1",
        "headers": [{"name": n, "value": v} for n, v in headers],
        "queryString": [],
        "cookies": [],
        "headersSize": -1,
        "bodySize": -1,
    }
    if body is not None:
        request["postData"] = {"mimeType": "application/x-www-form-urlencoded", "text": body}
    return {
        "startedDateTime": "2024-03-01T10:00:00.000Z",
        "time": 1,
        "request": request,
        "response": {
            "status": 200,
            "statusText": "OK",
            "httpVersion": "HTTP/1.1",
            "headers": [],
            "cookies": [],
            "content": {"size": 0, "mimeType": "text/plain"},
            "redirectURL": "",
            "headersSize": -1,
            "bodySize": 0,
        },
        "cache": {},
        "timings": {"send": 0, "wait": 1, "receive": 0},
        "serverIPAddress": ip,
    }


def hostile_har() -> bytes:
    entries = [
        # Script and attribute break-out in the path and query of the URL.
        _entry(f"http://evil.example/{SCRIPT}?imei={IMEI}&x={BREAKOUT}", [("User-Agent", SVG)]),
        # Bidi override, zero-width and combining marks around the identifier; C0/C1 controls.
        _entry(
            f"https://api.example.com/a{BIDI}?id={IMEI}{ZERO_WIDTH}&n={COMBINING}&c={CONTROLS}",
            [("Referer", JS_URL)],
            ip="8.8.8.8",
        ),
        # A header whose name and value are payloads; the phone number in the value.
        _entry(
            "http://hdr.example/h",
            [(f"X-Evil{BREAKOUT}", f"{SCRIPT} {PHONE} {JS_URL}"), ("Host", f"{SVG}.example")],
        ),
        # A body of controls, a lone surrogate and markup around the e-mail address and the contact.
        _entry(
            "http://body.example/upload",
            [("Content-Type", "application/x-www-form-urlencoded")],
            body=(
                f"a={CONTROLS}\ud800&email={EMAIL}&c={SCRIPT}&n={CONTACT}&z={COMBINING}"
                f'&l=<a href="{JS_URL}">x</a>'
            ),
        ),
        # A host that is itself markup, and a lone surrogate in the URL.
        _entry(f"http://{SVG}x/\ud800?imei={IMEI}", []),
        # A javascript: URL: skipped by the reader, named in a warning.
        _entry(f"{JS_URL};{SCRIPT}", []),
    ]
    doc = {"log": {"version": "1.2", "creator": {"name": "crafted", "version": "1"}, "entries": entries}}
    return json.dumps(doc, ensure_ascii=True).encode("ascii")
