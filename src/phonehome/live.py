"""phonehome inside mitmproxy: each request a phone sends through the proxy is audited as it passes.

Two pieces:

- :class:`LiveSession` holds the auditor, the findings so far and the saved files. It knows
  nothing of mitmproxy's objects: it takes a flow's state dictionary, sends it through the same
  tnetstring bytes and the same :func:`phonehome.sources.mitmflow.flow_exchanges` as a saved flow
  file, and the same :class:`phonehome.audit.Auditor` as ``phonehome audit``. So a flow seen
  live and the same flow read back from ``flows.mitm`` give identical findings.
- :class:`PhonehomeAddon` is the mitmproxy addon: its hooks hand each flow's state to the
  session, and write each flow to ``flows.mitm`` as it completes.

``phonehome live`` runs the addon in-process (:mod:`phonehome.commands.live`). With an existing
mitmproxy set-up, load this file as a script::

    mitmdump -s src/phonehome/live.py --set phonehome_device=phone.toml --set phonehome_save=out

Needs mitmproxy (``pip install 'phonehome[live]'``); nothing else in phonehome imports this module.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from mitmproxy import ctx, exceptions, flow, http
from mitmproxy.io import tnetstring

from phonehome.audit import Auditor, AuditResult, InputSummary
from phonehome.errors import InputError
from phonehome.model import Finding, Notice
from phonehome.profile import Profile, load_profile
from phonehome.report.text import safe
from phonehome.sources.mitmflow import Record, TnetReader, flow_exchanges, flow_label

FLOWS_FILE = "flows.mitm"
FINDINGS_FILE = "findings.json"
REPORT_FILE = "report.html"

logger = logging.getLogger("phonehome")

Emit = Callable[[str], None]


def leak_line(f: Finding) -> str:
    """One line per finding, as it happens: identifier, destination, country, verdict."""
    destination = safe(f.host or f.ip) + (f":{f.port}" if f.port else "")
    return (
        f"leak {safe(f.identifier)} -> {destination} ({f.country or '??'})"
        f" {f.verdict}: {safe(f.encoding)} in {safe(f.where)}"
        f"{' over TLS' if f.encrypted else ''}"
    )


def state_of(value: flow.Flow) -> dict[Any, Any]:
    """A live flow's state exactly as a flow file gives it back: written and read as tnetstring."""
    reader = TnetReader()
    reader.feed(tnetstring.dumps(value.get_state()))
    reader.close()
    for event in reader.events():
        if isinstance(event, Record) and isinstance(event.value, dict):
            return event.value
    raise ValueError("flow state did not survive its own serialisation")


class LiveSession:
    """Findings of one live run, and where they are saved (``save``: a folder, or None)."""

    def __init__(
        self,
        profile: Profile,
        *,
        engine: str = "auto",
        save: str | None = None,
        emit: Emit | None = None,
        auditor: Auditor | None = None,
    ) -> None:
        # The one auditor of the run: a policy, when given, is part of it.
        self.auditor = auditor or Auditor(profile, engine)
        self.profile = profile
        self.emit: Emit = emit or logger.info
        self.findings: list[Finding] = []
        self.warnings: list[Notice] = []
        self.exchanges = 0
        self.save = Path(save) if save else None
        self.source = str(self.save / FLOWS_FILE) if self.save else "live"
        self._flows: BinaryIO | None = None
        self._pending: dict[str, flow.Flow] = {}  # flows begun and not saved yet
        self._analysed: set[str] = set()  # flows (not single messages) audited already
        if self.save is not None:
            try:
                self.save.mkdir(parents=True, exist_ok=True)
                self._flows = open(self.save / FLOWS_FILE, "wb")  # noqa: SIM115 - closed in finish()
            except OSError as exc:
                raise InputError(f"cannot write: {exc.strerror or exc}", source=str(self.save)) from None

    # -- analysis ----------------------------------------------------------------------------------

    def analyse(self, live: flow.Flow, message: int | None = None) -> list[Finding]:
        """Audit a live flow (``message``: only that WebSocket/TCP/UDP message). Never raises."""
        label = f"mitm {live.id}"
        if message is None:
            self._analysed.add(live.id)
        try:
            state = state_of(live)
            problems: list[str] = []
            exchanges = flow_exchanges(state, self.source, problems, message=message)
            label = flow_label(state, live.id)
            self.warnings.extend(Notice(self.source, p, flow=label) for p in problems)
            found: list[Finding] = []
            for exchange in exchanges:
                self.exchanges += 1
                found.extend(self.auditor.findings(exchange, self.warnings))
        except Exception as exc:  # one flow's failure must not stop the proxy or lose the others
            logger.exception("phonehome: analysis of a flow failed")
            problem = f"analysis failed ({type(exc).__name__}: {exc})"
            self.warnings.append(Notice(self.source, problem, None, label))
            return []
        for finding in found:
            self.findings.append(finding)
            self.emit(leak_line(finding))
        return found

    def request(self, live: flow.Flow, connected: bool) -> None:
        """A request (or DNS query) arrived: audited now when its server is known, else at its end.

        The server's address is part of every finding (country, owner). A plain-HTTP request in
        regular mode names its server only in the request, and mitmproxy connects after this
        hook; auditing it then, at its response, gives the same state the saved flow holds.
        """
        self._pending[live.id] = live
        if connected:
            self.analyse(live)

    def completed(self, live: flow.Flow, *, save: bool = True) -> None:
        """A flow ended: audit it if not done yet, and append it to ``flows.mitm`` at once."""
        if live.id not in self._analysed and live.id in self._pending:
            self.analyse(live)
        if not save:
            return
        self._pending.pop(live.id, None)
        self._analysed.discard(live.id)
        if self._flows is None:
            return
        try:
            # What mitmproxy's FlowWriter writes: the flow's state as one tnetstring.
            self._flows.write(tnetstring.dumps(live.get_state()))
            self._flows.flush()
        except (OSError, ValueError) as exc:
            self.warnings.append(Notice(self.source, f"flow not saved ({exc})", None, f"mitm {live.id}"))

    def stream_started(self, live: flow.Flow) -> None:
        """A TCP or UDP flow began: its messages are audited one by one, the flow saved at its end."""
        self._pending[live.id] = live
        self._analysed.add(live.id)

    def result(self) -> AuditResult:
        """The run as an audit result, like ``phonehome audit`` gives for the saved flows."""
        size = 0
        if self.save is not None:
            try:
                size = os.path.getsize(self.source)
            except OSError:
                size = 0
        summary = InputSummary(path=self.source, format="mitm", size=size, exchanges=self.exchanges)
        from phonehome.policy import sentence

        findings = list(self.findings)
        return AuditResult(
            profile=self.profile,
            inputs=[summary],
            findings=findings,
            warnings=list(self.warnings),
            engine=self.auditor.detector.engine.name,
            verdict=sentence(findings, self.auditor.policy),
            policy=self.auditor.policy,
        )

    def finish(self) -> AuditResult:
        """Save the flows still open and the findings; the single place the run's results are written."""
        for live in list(self._pending.values()):
            self.completed(live)
        if self._flows is not None:
            self._flows.close()
            self._flows = None
        result = self.result()
        if self.save is not None:
            from phonehome.report import html, json_report

            for name, render in ((FINDINGS_FILE, json_report.render), (REPORT_FILE, html.render)):
                target = self.save / name
                temporary = target.with_name(target.name + ".part")
                temporary.write_text(render(result), encoding="utf-8")
                temporary.replace(target)  # never a half-written findings file or report
        return result


class PhonehomeAddon:
    """The mitmproxy addon. Given a session, uses it; else builds one from the phonehome_* options."""

    def __init__(self, session: LiveSession | None = None) -> None:
        self.session = session
        self.result: AuditResult | None = None

    def load(self, loader: Any) -> None:
        loader.add_option("phonehome_device", str, "", "phonehome: device profile (TOML) to audit against")
        loader.add_option("phonehome_save", str, "", "phonehome: folder for flows.mitm and findings.json")
        loader.add_option("phonehome_engine", str, "auto", "phonehome: matching engine")

    def configure(self, updated: set[str]) -> None:
        if "phonehome_device" not in updated or not ctx.options.phonehome_device:
            return
        try:
            profile = load_profile(ctx.options.phonehome_device)
            self.session = LiveSession(
                profile, engine=ctx.options.phonehome_engine, save=ctx.options.phonehome_save or None
            )
        except InputError as exc:
            # OptionsError is mitmproxy's way to refuse a setting; its constructor is not annotated.
            raise exceptions.OptionsError(f"phonehome: {exc}") from None  # type: ignore[no-untyped-call]

    # -- what the phone sends: audited as it passes -------------------------------------------------

    def request(self, f: http.HTTPFlow) -> None:
        if self.session is not None:
            self.session.request(f, connected=f.server_conn.peername is not None)

    def websocket_message(self, f: http.HTTPFlow) -> None:
        if self.session is not None and f.websocket is not None and f.websocket.messages:
            self.session.analyse(f, message=len(f.websocket.messages) - 1)

    def tcp_start(self, f: flow.Flow) -> None:
        if self.session is not None:
            self.session.stream_started(f)

    def tcp_message(self, f: Any) -> None:
        if self.session is not None and f.messages:
            self.session.analyse(f, message=len(f.messages) - 1)

    udp_start = tcp_start
    udp_message = tcp_message

    def dns_request(self, f: flow.Flow) -> None:
        if self.session is not None:
            self.session.request(f, connected=False)

    # -- flows complete: audited if not yet, and saved at once ------------------------------------

    def response(self, f: http.HTTPFlow) -> None:
        # A WebSocket flow goes on after its 101 response; it is saved at websocket_end.
        if self.session is not None:
            self.session.completed(f, save=f.websocket is None)

    error = response

    def _end(self, f: flow.Flow) -> None:
        if self.session is not None:
            self.session.completed(f)

    websocket_end = _end
    tcp_end = _end
    tcp_error = _end
    udp_end = _end
    udp_error = _end
    dns_response = _end
    dns_error = _end

    def done(self) -> None:
        if self.session is not None:
            self.result = self.session.finish()


# For ``mitmdump -s live.py``: mitmproxy loads the addons a script lists here.
addons = [PhonehomeAddon()]
