"""The HTML report in a real browser: headless Chromium, no network, driven over the DevTools protocol.

Chromium is started with ``--remote-debugging-pipe`` (the protocol as NUL-separated JSON on file
descriptors 3 and 4), a throw-away profile, and every name resolving nowhere through a dead proxy,
so a request the page attempted is both recorded (``Network.requestWillBeSent``) and bound to fail.
Each page is checked for attempted requests, console errors, CSP violations, dialogs, and the DOM
the report must not contain (any script but its own, any ``on*`` attribute, any ``javascript:`` link);
screenshots are saved for review (``PHONEHOME_SCREENSHOTS`` names the directory, else a temporary one).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from phonehome.audit import audit
from phonehome.profile import load_profile
from phonehome.report.html import render, render_diff
from report.report_inputs import HOSTILE_MARKERS, demo, demo_diff, hostile_har, hostile_profile

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium is not installed (apt-get install chromium; make install does it as root)",
)

TIMEOUT = 20.0


class Browser:
    """One headless Chromium and a DevTools session per page, over the debugging pipe."""

    def __init__(self, profile_dir: Path) -> None:
        assert CHROMIUM is not None
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        args = [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--remote-debugging-pipe",
            f"--user-data-dir={profile_dir}",
            # No network: every name resolves nowhere and every connection goes to a dead proxy.
            "--proxy-server=127.0.0.1:9",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--disable-dev-shm-usage",
            "--mute-audio",
            "about:blank",
        ]
        # The protocol runs on fds 3 (commands in) and 4 (replies out): a Python trampoline puts the
        # pipe ends there (through fresh copies, whatever numbers they had) and becomes Chromium.
        trampoline = (
            "import os, sys; r, w = os.dup(int(sys.argv[1])), os.dup(int(sys.argv[2])); "
            "os.dup2(r, 3); os.dup2(w, 4); os.set_inheritable(3, True); os.set_inheritable(4, True); "
            "os.execv(sys.argv[3], sys.argv[3:])"
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-c", trampoline, str(to_chrome_r), str(from_chrome_w), *args],
            pass_fds=(to_chrome_r, from_chrome_w),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._next_id = 0
        self._replies: dict[int, dict[str, Any]] = {}
        self._inbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.events: list[dict[str, Any]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        buf = b""
        while True:
            try:
                chunk = os.read(self._from_chrome, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                self._inbox.put(None)
                return
            buf += chunk
            while b"\0" in buf:
                message, buf = buf.split(b"\0", 1)
                self._inbox.put(json.loads(message))

    def _pump(self, deadline: float) -> bool:
        try:
            message = self._inbox.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return False
        if message is None:
            raise RuntimeError("chromium closed the debugging pipe")
        if "id" in message:
            self._replies[message["id"]] = message
        else:
            self.events.append(message)
        return True

    def send(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        call_id = self._next_id
        message: dict[str, Any] = {"id": call_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + TIMEOUT
        while call_id not in self._replies:
            if not self._pump(deadline):
                raise TimeoutError(method)
        reply = self._replies.pop(call_id)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    def wait_event(self, method: str, session: str, since: int) -> dict[str, Any]:
        deadline = time.monotonic() + TIMEOUT
        while True:
            for event in self.events[since:]:
                if event.get("method") == method and event.get("sessionId") == session:
                    return event
            if not self._pump(deadline):
                raise TimeoutError(method)

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, TimeoutError, OSError):
            self.send("Browser.close")
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_chrome)
        os.close(self._from_chrome)


@dataclasses.dataclass
class PageLoad:
    url: str
    events: list[dict[str, Any]]
    facts: dict[str, Any]
    screenshot: bytes

    def requests(self) -> list[str]:
        """URLs the page tried to fetch, other than itself and ``data:`` URLs."""
        urls = [
            e["params"]["request"]["url"] for e in self.events if e["method"] == "Network.requestWillBeSent"
        ]
        return [u for u in urls if u != self.url and not u.startswith("data:")]

    def errors(self) -> list[str]:
        out = []
        for e in self.events:
            method, params = e["method"], e.get("params", {})
            if method == "Runtime.exceptionThrown":
                out.append(json.dumps(params["exceptionDetails"])[:500])
            elif method == "Runtime.consoleAPICalled" and params.get("type") in (
                "error",
                "warning",
                "assert",
            ):
                out.append(json.dumps(params.get("args"))[:500])
            elif method == "Log.entryAdded" and params["entry"].get("level") in ("error", "warning"):
                out.append(params["entry"].get("text", "")[:500])
            elif method in ("Page.javascriptDialogOpening", "Network.loadingFailed"):
                out.append(f"{method}: {json.dumps(params)[:300]}")
        return out


# What the report must look like once loaded, read by the page's own DOM.
FACTS = """(() => {
  const d = document;
  const onAttrs = [...d.querySelectorAll('*')].flatMap(el => [...el.attributes].map(a => a.name))
    .filter(n => n.toLowerCase().startsWith('on'));
  const links = [...d.querySelectorAll('[href], [src], [xlink\\\\:href], [action], [formaction]')]
    .map(el => el.getAttribute('href') || el.getAttribute('src') || el.getAttribute('action') || '');
  return {
    title: d.title,
    scripts: d.querySelectorAll('script').length,
    styles: d.querySelectorAll('style').length,
    onAttrs: onAttrs,
    links: links,
    elements: [...new Set([...d.querySelectorAll('body *')].map(el => el.localName))].sort(),
    tables: d.querySelectorAll('table').length,
    tableRows: d.querySelectorAll('tbody tr').length,
    svgs: d.querySelectorAll('svg').length,
    filters: d.querySelectorAll('.filter input').length,
    pwned: window.__pwned === undefined ? null : String(window.__pwned),
    scrollWidth: d.documentElement.scrollWidth,
    clientWidth: d.documentElement.clientWidth,
    text: d.body.innerText,
    height: d.documentElement.scrollHeight,
  };
})()"""


def load(browser: Browser, path: Path, *, width: int, script: bool = True, height: int = 900) -> PageLoad:
    target = browser.send("Target.createTarget", url="about:blank")["targetId"]
    session = browser.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
    try:
        for domain in ("Page", "Network", "Runtime", "Log"):
            browser.send(f"{domain}.enable", session)
        browser.send(
            "Emulation.setDeviceMetricsOverride",
            session,
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=width < 600,
        )
        browser.send("Emulation.setScriptExecutionDisabled", session, value=not script)
        start = len(browser.events)
        url = path.resolve().as_uri()
        browser.send("Page.navigate", session, url=url)
        browser.wait_event("Page.loadEventFired", session, start)
        # Script-disabled pages are still readable through the DevTools evaluation, which is not page script.
        facts = browser.send("Runtime.evaluate", session, expression=FACTS, returnByValue=True)["result"][
            "value"
        ]
        shot = browser.send(
            "Page.captureScreenshot",
            session,
            format="png",
            captureBeyondViewport=True,
            clip={"x": 0, "y": 0, "width": width, "height": min(facts["height"], 12000), "scale": 1},
        )
        events = [e for e in browser.events[start:] if e.get("sessionId") == session]
        return PageLoad(url, events, facts, base64.b64decode(shot["data"]))
    finally:
        browser.send("Target.closeTarget", targetId=target)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    b = Browser(tmp_path_factory.mktemp("chromium-profile"))
    try:
        yield b
    finally:
        b.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    named = os.environ.get("PHONEHOME_SCREENSHOTS")
    out = Path(named) if named else tmp_path_factory.mktemp("screenshots")
    out.mkdir(parents=True, exist_ok=True)
    return out


def check_clean(page: PageLoad) -> None:
    assert page.requests() == [], page.requests()
    assert page.errors() == [], page.errors()
    assert page.facts["scripts"] == 1 and page.facts["styles"] == 1
    assert page.facts["onAttrs"] == []
    assert all(link.startswith(("#", "data:")) for link in page.facts["links"]), page.facts["links"]
    assert page.facts["pwned"] is None


def test_demo_reports_render_offline_without_errors(browser: Browser, shots: Path, tmp_path: Path) -> None:
    _, results = demo()
    sizes = {}
    for name, result in results.items():
        path = tmp_path / f"{name}.html"
        path.write_text(render(result), encoding="utf-8")
        sizes[name] = path.stat().st_size
        page = load(browser, path, width=1280)
        (shots / f"audit-{name}-desktop.png").write_bytes(page.screenshot)
        check_clean(page)
        assert page.facts["title"] == f"phonehome audit: {result.profile.name}"
        assert page.facts["svgs"] == 3  # map, flow, timeline
        assert page.facts["filters"] == 1  # the script ran and added the evidence filter
        assert result.verdict in page.facts["text"]
        assert page.facts["scrollWidth"] <= page.facts["clientWidth"]
        evidence_rows = len(result.findings)
        assert page.facts["tableRows"] >= evidence_rows
    path = tmp_path / "diff.html"
    path.write_text(render_diff(demo_diff(results)), encoding="utf-8")
    sizes["diff"] = path.stat().st_size
    page = load(browser, path, width=1280)
    (shots / "diff-desktop.png").write_bytes(page.screenshot)
    check_clean(page)
    for heading in ("Stopped", "Started", "Persisted"):
        assert heading in page.facts["text"]
    assert all(size < 1_000_000 for size in sizes.values()), sizes


def test_reports_read_without_javascript_and_at_phone_width(
    browser: Browser, shots: Path, tmp_path: Path
) -> None:
    _, results = demo()
    result = results["factory"]
    path = tmp_path / "factory.html"
    path.write_text(render(result), encoding="utf-8")
    page = load(browser, path, width=1280, script=False)
    (shots / "audit-factory-nojs.png").write_bytes(page.screenshot)
    check_clean(page)
    assert page.facts["filters"] == 0  # the script did not run ...
    assert page.facts["tables"] >= 4 and page.facts["svgs"] == 3  # ... and everything is there
    for f in result.findings:
        assert f.identifier in page.facts["text"]
    phone = load(browser, path, width=375)
    (shots / "audit-factory-phone.png").write_bytes(phone.screenshot)
    check_clean(phone)
    assert phone.facts["scrollWidth"] <= 375, phone.facts["scrollWidth"]
    diff_path = tmp_path / "diff.html"
    diff_path.write_text(render_diff(demo_diff(results)), encoding="utf-8")
    phone = load(browser, diff_path, width=375)
    (shots / "diff-phone.png").write_bytes(phone.screenshot)
    check_clean(phone)
    assert phone.facts["scrollWidth"] <= 375, phone.facts["scrollWidth"]


def test_hostile_har_executes_nothing(browser: Browser, shots: Path, tmp_path: Path) -> None:
    har = tmp_path / "hostile.har"
    har.write_bytes(hostile_har())
    profile = tmp_path / "phone.toml"
    profile.write_text(hostile_profile(), encoding="utf-8")
    result = audit([str(har)], load_profile(profile))
    assert len(result.findings) >= 5
    path = tmp_path / "hostile.html"
    path.write_text(render(result), encoding="utf-8")
    for script in (True, False):
        page = load(browser, path, width=1280, script=script)
        (shots / f"hostile-{'js' if script else 'nojs'}.png").write_bytes(page.screenshot)
        check_clean(page)
        assert page.facts["title"] == f"phonehome audit: {result.profile.name}"
        assert "img" not in page.facts["elements"] and "iframe" not in page.facts["elements"]
        # The payloads are shown as text, not run.
        for marker in HOSTILE_MARKERS:
            assert marker in page.facts["text"], marker
