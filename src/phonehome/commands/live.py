"""``phonehome live``: run mitmproxy in-process with phonehome as an addon and report leaks as they pass.

Needs the ``live`` extra (mitmproxy). The profile is loaded and the detector built before the proxy
starts, so a bad profile fails at once. On Ctrl-C (or SIGTERM) mitmproxy's ``done`` hook saves
the flows still open and ``findings.json`` into ``--save``; flows are appended to ``flows.mitm``
as each completes, so even a killed run keeps its traffic for ``phonehome audit``.
"""

from __future__ import annotations

import argparse
import ipaddress
import re
import signal
from typing import Any

from phonehome.commands import Env, ExitStatus, add_engine
from phonehome.errors import InputError

HELP = "watch a phone live: a TLS-intercepting proxy (mitmproxy) that reports leaks as they happen"

MODES = ("regular", "wireguard", "transparent")
# Where each mode listens unless told: loopback, so nothing is exposed by default.
_DEFAULT_PORTS = {"regular": 8080, "wireguard": 51820, "transparent": 8080}
_SIZE_RE = re.compile(r"\A[0-9]+[bkmg]?\Z", re.IGNORECASE)  # mitmproxy's human.parse_size


def configure(a: argparse.ArgumentParser) -> None:
    a.add_argument("--device", required=True, metavar="FILE", help="device profile (TOML)")
    a.add_argument(
        "--policy",
        metavar="FILE|PRESET",
        help="what the owner agreed to (TOML, or strict, consented-cloud, residency:CC[,CC]); "
        "default: every leak is a violation",
    )
    a.add_argument(
        "--listen",
        metavar="HOST:PORT",
        help="where the proxy listens (default 127.0.0.1 and 8080, or 51820 in wireguard mode)",
    )
    a.add_argument("--mode", choices=MODES, default="regular", help="how the phone reaches the proxy")
    a.add_argument("--save", metavar="DIR", help="write flows.mitm, findings.json and report.html here")
    a.add_argument(
        "--confdir",
        metavar="DIR",
        default="~/.mitmproxy",
        help="mitmproxy's folder for its CA and WireGuard keys (default ~/.mitmproxy)",
    )
    a.add_argument(
        "--proxyauth", metavar="SPEC", help="proxy authentication, as mitmproxy's (user:pass, ...)"
    )
    a.add_argument(
        "--stream-bodies",
        metavar="SIZE",
        default="10m",
        help="stream bodies above this size (e.g. 512k, 10m) instead of holding them; they go unscanned",
    )
    a.add_argument(
        "--upstream-insecure",
        action="store_true",
        help="do not verify servers' certificates (for testing against self-signed servers only)",
    )
    add_engine(a)


def parse_listen(text: str | None, mode: str) -> tuple[str, int]:
    """(host, port) of ``--listen``: ``HOST:PORT``, ``[IPv6]:PORT``, ``HOST`` or ``:PORT``."""
    default_port = _DEFAULT_PORTS[mode]
    if not text:
        return "127.0.0.1", default_port
    host, port_text = text, ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or text[end + 1 : end + 2] not in ("", ":"):
            raise InputError(f"--listen {text!r}: expected [IPv6]:PORT", key="--listen")
        host, port_text = text[1:end], text[end + 2 :]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    if port_text and not (port_text.isdigit() and 0 <= int(port_text) <= 65535):
        raise InputError(f"--listen {text!r}: the port must be a number from 0 to 65535", key="--listen")
    return host or "127.0.0.1", int(port_text) if port_text else default_port


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def instructions(mode: str, addrs: list[tuple[str, int]], confdir: str, wireguard: str | None) -> str:
    """How to point a phone at the proxy, for the mode it runs in."""
    where = ", ".join(f"{h}:{p}" for h, p in addrs) or "(no address)"
    lines = [f"phonehome live: {mode} proxy listening on {where}"]
    host, port = addrs[0] if addrs else ("?", 0)
    if mode == "wireguard":
        lines.append("  On the phone: WireGuard app, add a tunnel from this configuration:")
        lines.extend("    " + line for line in (wireguard or "(configuration not available)").splitlines())
    elif mode == "transparent":
        lines.append(
            f"  Route the phone's traffic through this machine and redirect ports 80 and 443 to {port}."
        )
    else:
        lines.append(f"  On the phone: Wi-Fi settings, proxy manual, host {host}, port {port}.")
    lines.append(
        "  Then open http://mitm.it on the phone and install the CA certificate"
        f" (also at {confdir}/mitmproxy-ca-cert.cer)."
    )
    lines.append("  Apps that pin certificates, or trust no user CA, fail or go around the proxy.")
    if all(is_loopback(h) for h, _ in addrs):
        lines.append("  Listening on loopback only: a phone cannot reach it; use --listen 0.0.0.0:PORT.")
    lines.append("Leaks are printed as they pass. Ctrl-C stops and saves.")
    return "\n".join(lines) + "\n"


class _Announce:
    """Prints how to point a phone at the proxy once mitmproxy's servers are up."""

    def __init__(self, env: Env, mode: str, confdir: str) -> None:
        self.env, self.mode, self.confdir = env, mode, confdir

    def running(self) -> None:
        from mitmproxy import ctx

        manager: Any = ctx.master.addons  # mitmproxy's addon manager is not annotated
        server: Any = manager.get("proxyserver")
        addrs = [(str(a[0]), int(a[1])) for a in server.listen_addrs()]
        conf = next((s.client_conf() for s in server.servers if hasattr(s, "client_conf")), None)
        self.env.stdout.write(instructions(self.mode, addrs, self.confdir, conf))
        self.env.stdout.flush()


async def _serve(options: dict[str, Any], addons: list[Any]) -> None:
    from mitmproxy import addons as mitm_addons
    from mitmproxy import exceptions, master
    from mitmproxy.addons import errorcheck
    from mitmproxy.options import Options

    # mitmproxy's master and addon manager are not annotated; used through Any.
    proxy: Any = master.Master(Options())
    defaults: Any = mitm_addons.default_addons
    proxy.addons.add(*defaults())
    proxy.addons.add(errorcheck.ErrorCheck(repeat_errors_on_stderr=True), *addons)
    try:
        proxy.options.update(**options)
    except exceptions.OptionsError as exc:
        raise InputError(f"proxy options: {exc}") from None
    import asyncio

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, proxy.shutdown)
    await proxy.run()


def run(args: argparse.Namespace, env: Env) -> ExitStatus:
    from phonehome.profile import load_profile
    from phonehome.report.text import safe

    host, port = parse_listen(args.listen, args.mode)
    if not is_loopback(host) and not args.proxyauth and args.mode != "wireguard":
        env.stderr.write(
            f"phonehome: warning: listening on {safe(host)} without --proxyauth:"
            " anyone on the network can use this proxy\n"
        )
    if not _SIZE_RE.match(args.stream_bodies):
        raise InputError(f"--stream-bodies {args.stream_bodies!r}: expected a size such as 512k or 10m")
    from phonehome.audit import Auditor
    from phonehome.policy import load_policy

    # Profile and policy are read before the proxy starts: a bad file fails here, not mid-run.
    profile = load_profile(args.device)
    policy = load_policy(args.policy) if args.policy else None
    try:
        from phonehome.live import LiveSession, PhonehomeAddon
    except ImportError as exc:
        raise InputError(
            f"phonehome live needs mitmproxy ({exc.name} is missing): pip install 'phonehome[live]'"
        ) from None

    def emit(line: str) -> None:
        env.stdout.write(line + "\n")
        env.stdout.flush()

    auditor = Auditor(profile, args.engine, policy=policy)
    session = LiveSession(profile, engine=args.engine, save=args.save, emit=emit, auditor=auditor)
    addon = PhonehomeAddon(session)
    options: dict[str, Any] = {
        "mode": [args.mode],
        "listen_host": host,
        "listen_port": port,
        "confdir": args.confdir,
        "stream_large_bodies": args.stream_bodies,
        "ssl_insecure": bool(args.upstream_insecure),
    }
    if args.proxyauth:
        options["proxyauth"] = args.proxyauth
    import asyncio  # not at module level: every other command starts without it

    try:
        asyncio.run(_serve(options, [_Announce(env, args.mode, args.confdir), addon]))
    except SystemExit as stop:  # mitmproxy's start-up check exits after printing what went wrong
        if stop.code:
            raise InputError("the proxy could not start (see the message above)") from None
    finally:
        result = addon.result if addon.result is not None else session.finish()
    if args.save:
        env.stderr.write(
            f"phonehome: saved {safe(args.save)}/flows.mitm and {safe(args.save)}/findings.json\n"
        )
    env.stderr.write(f"phonehome: {len(result.findings)} finding(s)\n")
    return ExitStatus.LEAKS if result.findings else ExitStatus.CLEAN
