"""``phonehome live`` end to end: mitmproxy on loopback, real HTTP and HTTPS servers, a real client.

Everything stays on 127.0.0.1; HOME points into the test's folder so ``~/.mitmproxy`` is never
touched; every wait has a timeout and the proxy is stopped with SIGINT as a user would.
"""

from __future__ import annotations

import base64
import datetime
import io
import ipaddress
import json
import os
import queue
import signal
import socket
import ssl
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from factories import SAMPLES
from phonehome.cli import Env, main
from phonehome.commands.live import instructions, parse_listen
from phonehome.errors import InputError

pytest.importorskip("mitmproxy", reason="mitmproxy (the live extra) is not installed")
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ENGINE = "aho-corasick"  # no Hyperscan compile in the subprocess: the test stays quick
WAIT = 60.0  # seconds for any one step; the test never waits longer than this for anything
IDS = {k: SAMPLES[k].value for k in ("imei", "android_id", "advertising_id", "email", "serial")}
PROFILE = "[device]\nname = 'live test phone'\n[identifiers]\n" + "".join(
    f'{k} = "{v}"\n' for k, v in IDS.items()
)


class _Sink(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self._reply()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._reply()

    def _reply(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:  # keep the test output quiet
        pass


def _self_signed(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "server.pem", folder / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[tuple[int, int]]:
    """A plain HTTP server and an HTTPS server (self-signed) on loopback: their ports."""
    plain = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    secure = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*_self_signed(tmp_path))
    secure.socket = context.wrap_socket(secure.socket, server_side=True)
    threads = [
        threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.1}) for s in (plain, secure)
    ]
    for t in threads:
        t.start()
    try:
        yield plain.server_address[1], secure.server_address[1]
    finally:
        for s in (plain, secure):
            s.shutdown()
            s.server_close()
        for t in threads:
            t.join(WAIT)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _lines(stream: io.TextIOBase, out: queue.Queue[str]) -> None:
    for line in stream:
        out.put(line.rstrip("\n"))


def _wait_for(lines: queue.Queue[str], seen: list[str], done: object) -> None:
    """Read lines into ``seen`` until ``done(seen)`` holds; fail after WAIT seconds."""
    deadline = datetime.datetime.now() + datetime.timedelta(seconds=WAIT)
    while not done(seen):  # type: ignore[operator]
        left = (deadline - datetime.datetime.now()).total_seconds()
        if left <= 0:
            pytest.fail("timed out; output so far:\n" + "\n".join(seen))
        try:
            seen.append(lines.get(timeout=left))
        except queue.Empty:
            pytest.fail("timed out; output so far:\n" + "\n".join(seen))


def test_live_reports_every_leak_and_saves_what_audit_reads_back(
    tmp_path: Path, servers: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    http_port, https_port = servers
    profile, confdir, save = tmp_path / "phone.toml", tmp_path / "mitm", tmp_path / "out"
    profile.write_text(PROFILE, encoding="utf-8")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "no_proxy")}
    env["HOME"] = str(tmp_path / "home")  # nothing may reach the user's ~/.mitmproxy
    command = [sys.executable, "-c", "from phonehome.cli import entry; entry()", "live"]
    args = ["--device", str(profile), "--listen", f"127.0.0.1:{port}", "--confdir", str(confdir)]
    args += ["--save", str(save), "--upstream-insecure", "--engine", ENGINE, "--policy", "strict"]
    proc = subprocess.Popen(
        command + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=_lines, args=(proc.stdout, lines), daemon=True)
    reader.start()
    seen: list[str] = []
    try:
        _wait_for(lines, seen, lambda s: any("Ctrl-C stops" in line for line in s))
        assert any(f"listening on 127.0.0.1:{port}" in line for line in seen)
        assert any("http://mitm.it" in line for line in seen)

        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.delenv("NO_PROXY", raising=False)
        trust = ssl.create_default_context(cafile=str(confdir / "mitmproxy-ca-cert.pem"))
        proxy = f"http://127.0.0.1:{port}"
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({"http": proxy, "https": proxy}),
            urllib.request.HTTPSHandler(context=trust),
        )
        plain, secure = f"http://127.0.0.1:{http_port}", f"https://127.0.0.1:{https_port}"
        blob = base64.b64encode(json.dumps({"sn": IDS["serial"]}).encode()).decode()
        requests = [
            urllib.request.Request(f"{plain}/ping?imei={IDS['imei']}"),
            urllib.request.Request(f"{secure}/config", headers={"X-Device": IDS["android_id"]}),
            urllib.request.Request(f"{secure}/ads", headers={"Cookie": f"adid={IDS['advertising_id']}"}),
            urllib.request.Request(
                f"{secure}/account",
                data=json.dumps({"user": {"email": IDS["email"]}}).encode(),
                headers={"Content-Type": "application/json"},
            ),
            urllib.request.Request(f"{plain}/up", data=f"payload={blob}".encode()),
        ]
        for request in requests:
            with opener.open(request, timeout=WAIT) as response:
                assert response.read() == b"ok"

        _wait_for(lines, seen, lambda s: all(any(f"leak {k} " in line for line in s) for k in IDS))
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            status = proc.wait(WAIT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(WAIT)
            pytest.fail("phonehome live did not stop on SIGINT")
        reader.join(WAIT)
    stderr = proc.stderr.read() if proc.stderr else ""
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()
    assert status == 1, stderr
    live_lines = [line for line in seen if line.startswith("leak ")]
    wanted = {
        ("imei", "query", False),
        ("android_id", "header:x-device", True),
        ("advertising_id", "cookie", True),
        ("email", "body", True),
        ("serial", "body", False),
    }
    doc = json.loads((save / "findings.json").read_text())
    got = {(f["identifier"], f["where"], f["encrypted"]) for f in doc["findings"]}
    assert wanted <= got
    assert len(doc["findings"]) == len(live_lines)
    assert all(f["host"] == "127.0.0.1" and f["ip"] == "127.0.0.1" for f in doc["findings"])
    assert {f["encoding"] for f in doc["findings"] if f["identifier"] == "serial"} == {"base64"}
    assert doc["inputs"][0]["format"] == "mitm" and doc["inputs"][0]["exchanges"] == len(requests)
    assert not (tmp_path / "home" / ".mitmproxy").exists()
    assert doc["verdict"]["policy"] == "strict" and doc["verdict"]["violations"] == len(doc["findings"])
    assert all(f["verdict"] == "violation" and f["rule"] for f in doc["findings"])
    page = (save / "report.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and IDS["imei"] in page

    # The saved flows, read back by `phonehome audit`, give exactly the findings seen live.
    out = io.StringIO()
    again = main(
        [
            "audit",
            str(save / "flows.mitm"),
            "--device",
            str(profile),
            "--format",
            "json",
            "--engine",
            ENGINE,
            "--policy",
            "strict",
        ],
        Env(out, io.StringIO(), False),
    )
    assert again == 1
    assert json.loads(out.getvalue())["findings"] == doc["findings"]


def test_listen_parsing_and_defaults() -> None:
    assert parse_listen(None, "regular") == ("127.0.0.1", 8080)
    assert parse_listen(None, "wireguard") == ("127.0.0.1", 51820)
    assert parse_listen("0.0.0.0:9000", "regular") == ("0.0.0.0", 9000)
    assert parse_listen("[::1]:9000", "regular") == ("::1", 9000)
    assert parse_listen(":9000", "regular") == ("127.0.0.1", 9000)
    for bad in ("host:port", "[::1", "1.2.3.4:70000"):
        with pytest.raises(InputError):
            parse_listen(bad, "regular")


def test_instructions_per_mode() -> None:
    wg = instructions("wireguard", [("0.0.0.0", 51820)], "/c", "[Interface]\nPrivateKey = k")
    assert "    PrivateKey = k" in wg and "loopback only" not in wg
    regular = instructions("regular", [("127.0.0.1", 8080)], "/c", None)
    assert "port 8080" in regular and "/c/mitmproxy-ca-cert.cer" in regular and "loopback only" in regular


def test_open_listener_without_auth_warns(tmp_path: Path) -> None:
    err = io.StringIO()
    profile = tmp_path / "phone.toml"
    profile.write_text(PROFILE, encoding="utf-8")
    # The warning comes first; the bad size then stops the command before any proxy starts.
    status = main(
        ["live", "--device", str(profile), "--listen", "0.0.0.0:1", "--stream-bodies", "lots"],
        Env(io.StringIO(), err, False),
    )
    assert status == 2 and "--stream-bodies" in err.getvalue()
    assert "anyone on the network can use this proxy" in err.getvalue()
