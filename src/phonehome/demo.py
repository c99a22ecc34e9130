"""The demo: the 2014 Redmi 1S story in three runs, generated deterministically, audited and compared.

This is NOT the original traffic (which was never published). It replays what the published
reports described, with made-up identifiers and illustrative request paths and field names:

1. factory: before any cloud sign-in, a factory-fresh Redmi 1S sent its carrier name, IMEI and own
   number to api.account.xiaomi.com, then the number of a newly added contact and the number an SMS
   came from, over plain HTTP to servers in Beijing (42.62.48.0/24). Judged with no policy: nothing
   was agreed to.
2. updated: after the vendor's update, contacts and SMS numbers are no longer sent; what remains goes
   over TLS to servers in Singapore (in 2014 Xiaomi moved international users' data to AWS in
   Singapore). The capture shows the TLS connection (SNI only); a HAR holds the decrypted requests,
   as an intercepting proxy records them. Still judged with no policy.
3. opted-in: the user opts in to cloud sync; IMSI, IMEI and number go to the vendor's cloud,
   encrypted. Judged with the ``consented-cloud`` preset, which allows exactly that.

The demo prints each run's verdict and the diff factory → updated, and writes the profile, the
captures, each run's findings JSON and the diff JSON.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import dpkt

if TYPE_CHECKING:
    from phonehome.audit import AuditResult
    from phonehome.diff import DiffResult

DEMO_TIME = 1407664800.0  # 2014-08-10 10:00:00 UTC: the factory-fresh phone
UPDATED_TIME = 1414800000.0  # 2014-11-01: after the vendor's update
OPTED_IN_TIME = 1415404800.0  # 2014-11-08: after the user opted in to cloud sync
PHONE_MAC = bytes.fromhex("021a11f0aab3")
ROUTER_MAC = bytes.fromhex("021a11000001")
PHONE_IP = bytes([192, 168, 1, 23])
RESOLVER_IP = bytes([192, 168, 1, 1])
XIAOMI_HOST = "api.account.xiaomi.com"
XIAOMI_IP = bytes([42, 62, 48, 171])  # Beijing
CLOUD_HOST = "api.micloud.xiaomi.net"
# Amazon Web Services, Singapore (ap-southeast-1, 54.169.0.0/16): the same names, answered from there.
XIAOMI_SG_IP = bytes([54, 169, 43, 109])
CLOUD_SG_IP = bytes([54, 169, 43, 110])

PROFILE = """\
# Device profile for the phonehome demo: a reconstruction of the 2014 Redmi 1S test.
# The identifiers are made up; they only have the shapes of real ones.
[device]
name = "Redmi 1S test unit (reconstruction)"
region = "IN"

[identifiers]
imei = "865123456789019"
imsi = "404101234567890"
iccid = "8991101200003204514"
phone = "+919876543210"
carrier = "airtel"
android_id = "b9e28776354d259e"
wifi_mac = "02:1a:11:f0:aa:b3"

[[contacts]]
name = "Asha Verma"
phone = "+91 98111 22233"

[[messages]]
peer = "+919822233344"
text = "Meet at the gate at 6"
"""

IMEI = "865123456789019"
IMSI = "404101234567890"
PHONE = "+919876543210"
CONTACT = "+919811122233"
SMS_PEER = "+919822233344"
USER_AGENT = "Dalvik/1.6.0 (Linux; U; Android 4.3; 2014011 MIUI/JHCCNBF43.0)"


class _Capture:
    """Builds a deterministic Ethernet capture, one TCP or UDP exchange at a time."""

    def __init__(self, start: float = DEMO_TIME) -> None:
        self.frames: list[tuple[float, bytes]] = []
        self.time = start
        self.port = 40000

    def _frame(self, ip: dpkt.ip.IP, outbound: bool) -> None:
        eth = dpkt.ethernet.Ethernet(
            src=PHONE_MAC if outbound else ROUTER_MAC,
            dst=ROUTER_MAC if outbound else PHONE_MAC,
            type=dpkt.ethernet.ETH_TYPE_IP,
            data=ip,
        )
        self.time += 0.013
        self.frames.append((self.time, bytes(eth)))

    def _ip(self, src: bytes, dst: bytes, proto: int, payload: dpkt.Packet) -> dpkt.ip.IP:
        return dpkt.ip.IP(src=src, dst=dst, p=proto, ttl=64, id=len(self.frames) & 0xFFFF, data=payload)

    def dns(self, name: str, answer: bytes) -> None:
        query = dpkt.dns.DNS(id=0x1000 + len(self.frames), qd=[dpkt.dns.DNS.Q(name=name)])
        self.port += 1
        udp = _udp(self.port, 53, bytes(query))
        self._frame(self._ip(PHONE_IP, RESOLVER_IP, dpkt.ip.IP_PROTO_UDP, udp), True)
        reply = dpkt.dns.DNS(id=query.id, qr=dpkt.dns.DNS_R, op=dpkt.dns.DNS_RA, qd=query.qd)
        reply.an = [dpkt.dns.DNS.RR(name=name, type=dpkt.dns.DNS_A, ttl=60, ip=answer)]
        udp = _udp(53, self.port, bytes(reply))
        self._frame(self._ip(RESOLVER_IP, PHONE_IP, dpkt.ip.IP_PROTO_UDP, udp), False)

    def tcp(self, server: bytes, dport: int, turns: list[tuple[bytes, bytes]], mss: int = 536) -> None:
        """One TCP connection: for each turn the phone sends its bytes and the server answers."""
        self.port += 1
        sport = self.port
        # Next sequence number of each side: the phone's (out) and the server's.
        seq = {True: 1_000_000 + sport * 7919, False: 3_000_000}
        ack, psh = dpkt.tcp.TH_ACK, dpkt.tcp.TH_PUSH | dpkt.tcp.TH_ACK

        def seg(out: bool, flags: int, data: bytes = b"") -> None:
            ports, ips = ((sport, dport), (PHONE_IP, server)) if out else ((dport, sport), (server, PHONE_IP))
            tcp = dpkt.tcp.TCP(
                sport=ports[0],
                dport=ports[1],
                seq=seq[out],
                # Zero unless ACK is set (RFC 9293 §3.1): a SYN acknowledges nothing.
                ack=seq[not out] if flags & ack else 0,
                flags=flags,
                win=65535,
                data=data,
            )
            seq[out] += len(data) + (1 if flags & (dpkt.tcp.TH_SYN | dpkt.tcp.TH_FIN) else 0)
            self._frame(self._ip(ips[0], ips[1], dpkt.ip.IP_PROTO_TCP, tcp), out)

        seg(True, dpkt.tcp.TH_SYN)
        seg(False, dpkt.tcp.TH_SYN | ack)
        seg(True, ack)
        for sent, answer in turns:
            for i in range(0, len(sent), mss):
                seg(True, psh, sent[i : i + mss])
            seg(False, psh, answer)
        seg(True, dpkt.tcp.TH_FIN | ack)
        seg(False, dpkt.tcp.TH_FIN | ack)
        seg(True, ack)

    def http(self, server: bytes, requests: list[bytes]) -> None:
        """One HTTP connection carrying ``requests``, each answered with a short 200 response."""
        body = b'{"code":0}'
        ok = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
            len(body),
            body,
        )
        self.tcp(server, 80, [(request, ok) for request in requests])

    def tls(self, server: bytes, name: str, requests: int) -> None:
        """One TLS connection to ``name``: a real ClientHello, then opaque records standing for ciphertext."""
        seed = hashlib.sha256(name.encode() + server + str(self.time).encode()).digest()
        turns = [(client_hello(name, seed), _record(0x16, _opaque(seed + b"server", 90)))]
        for i in range(requests):
            turns.append(
                (
                    _record(0x17, _opaque(seed + b"c%d" % i, 420)),
                    _record(0x17, _opaque(seed + b"s%d" % i, 60)),
                )
            )
        self.tcp(server, 443, turns)

    def pcap(self) -> bytes:
        # Classic pcap, microsecond resolution, Ethernet (what tcpdump on the test router writes).
        out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
        for ts, frame in self.frames:
            sec = int(ts)
            usec = round((ts - sec) * 1_000_000)
            out.append(struct.pack("<IIII", sec, usec, len(frame), len(frame)) + frame)
        return b"".join(out)


def _udp(sport: int, dport: int, payload: bytes) -> dpkt.udp.UDP:
    # dpkt leaves the UDP length at its default of 8; RFC 768 wants header plus data.
    return dpkt.udp.UDP(sport=sport, dport=dport, ulen=8 + len(payload), data=payload)


def _opaque(seed: bytes, size: int) -> bytes:
    """Deterministic bytes that look like ciphertext (SHA-256 in counter mode)."""
    blocks = (hashlib.sha256(seed + i.to_bytes(4, "big")).digest() for i in range(size // 32 + 1))
    return b"".join(blocks)[:size]


def _record(content_type: int, body: bytes) -> bytes:
    # RFC 8446 §5.1: type, legacy_record_version 0x0303, length.
    return struct.pack("!BHH", content_type, 0x0303, len(body)) + body


def _ext(kind: int, body: bytes) -> bytes:
    return struct.pack("!HH", kind, len(body)) + body


def _vec(body: bytes, size: int = 2) -> bytes:
    return len(body).to_bytes(size, "big") + body


def client_hello(name: str, seed: bytes) -> bytes:
    """A TLS 1.3 ClientHello record for ``name`` (RFC 8446 §4.1.2, SNI per RFC 6066 §3)."""
    host = name.encode("ascii")
    extensions = b"".join(
        (
            _ext(0x0000, _vec(b"\x00" + _vec(host))),  # server_name: host_name
            _ext(0x000A, _vec(struct.pack("!HH", 0x001D, 0x0017))),  # supported_groups: x25519, P-256
            _ext(0x000D, _vec(struct.pack("!HHH", 0x0403, 0x0804, 0x0401))),  # signature_algorithms
            _ext(0x002B, _vec(struct.pack("!HH", 0x0304, 0x0303), 1)),  # supported_versions
            _ext(0x0033, _vec(struct.pack("!HH", 0x001D, 32) + _opaque(seed + b"key", 32))),  # key_share
        )
    )
    hello = (
        struct.pack("!H", 0x0303)  # legacy_version
        + _opaque(seed + b"random", 32)
        + _vec(_opaque(seed + b"session", 32), 1)
        + _vec(struct.pack("!HHHH", 0x1301, 0x1302, 0x1303, 0xC02F))  # cipher_suites
        + b"\x01\x00"  # legacy_compression_methods: null
        + _vec(extensions)
    )
    return _record(0x16, b"\x01" + len(hello).to_bytes(3, "big") + hello)


def _post(path: str, body: bytes, content_type: str) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\n"
        f"Host: {XIAOMI_HOST}\r\n"
        f"User-Agent: {USER_AGENT}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: Keep-Alive\r\n\r\n"
    )
    return head.encode() + body


def _imei_md5() -> str:
    return hashlib.md5(IMEI.encode(), usedforsecurity=False).hexdigest()


def _activation(version: str) -> bytes:
    return (
        f"carrier=airtel&imei={IMEI}&imeiMd5={_imei_md5()}&phone=%2B919876543210"
        f"&simState=ready&miuiVersion={version}"
    ).encode()


def factory_capture() -> bytes:
    """The factory-fresh phone: activation with carrier, IMEI and number; then contact and SMS peer."""
    cap = _Capture()
    cap.dns(XIAOMI_HOST, XIAOMI_IP)
    contacts = json.dumps(
        {"deviceId": _imei_md5(), "contacts": [{"name": "A. V.", "phone": CONTACT}]}
    ).encode()
    sms = json.dumps({"deviceId": _imei_md5(), "event": "sms_received", "from": SMS_PEER}).encode()
    cap.http(
        XIAOMI_IP,
        [
            _post(
                "/pass/v3/activate?carrier=airtel",
                _activation("JHCCNBF43.0"),
                "application/x-www-form-urlencoded",
            ),
            _post("/cloud/contacts/upload", contacts, "application/json"),
            _post("/mipush/event", sms, "application/json"),
        ],
    )
    return cap.pcap()


# (host, server address, path, body, content type) of each HTTPS request a later run makes.
_Request = tuple[str, bytes, str, bytes, str]

_UPDATED: list[_Request] = [
    (
        XIAOMI_HOST,
        XIAOMI_SG_IP,
        "/pass/v3/activate?carrier=airtel",
        _activation("KXDMIBH45.0"),
        "application/x-www-form-urlencoded",
    ),
]
_OPTED_IN: list[_Request] = [
    *_UPDATED,
    (
        CLOUD_HOST,
        CLOUD_SG_IP,
        "/mic/sync/v2/device",
        json.dumps({"imsi": IMSI, "imei": IMEI, "phone": PHONE, "sync": ["gallery", "notes"]}).encode(),
        "application/json",
    ),
]


def _tls_capture(requests: list[_Request], start: float) -> bytes:
    """What a router sees of HTTPS requests: DNS, then a TLS connection per host, SNI in the clear."""
    cap = _Capture(start)
    hosts: dict[tuple[str, bytes], int] = {}
    for host, ip, *_rest in requests:
        hosts[(host, ip)] = hosts.get((host, ip), 0) + 1
    for (host, ip), count in hosts.items():
        cap.dns(host, ip)
        cap.tls(ip, host, count)
    return cap.pcap()


def _har(requests: list[_Request], start: float) -> bytes:
    """The same requests as an intercepting proxy records them, decrypted (HAR 1.2)."""
    entries = []
    for i, (host, ip, path, body, content_type) in enumerate(requests):
        when = datetime.fromtimestamp(start + 1 + i, UTC).isoformat(timespec="milliseconds")
        entries.append(
            {
                "startedDateTime": when.replace("+00:00", "Z"),
                "time": 120,
                "serverIPAddress": ".".join(str(b) for b in ip),
                "request": {
                    "method": "POST",
                    "url": f"https://{host}{path}",
                    "httpVersion": "HTTP/1.1",
                    "headers": [
                        {"name": "Host", "value": host},
                        {"name": "User-Agent", "value": USER_AGENT},
                        {"name": "Content-Type", "value": content_type},
                    ],
                    "queryString": [],
                    "cookies": [],
                    "headersSize": -1,
                    "bodySize": len(body),
                    "postData": {"mimeType": content_type, "text": body.decode()},
                },
                "response": {
                    "status": 200,
                    "statusText": "OK",
                    "httpVersion": "HTTP/1.1",
                    "headers": [],
                    "cookies": [],
                    "content": {"size": 10, "mimeType": "application/json", "text": '{"code":0}'},
                    "redirectURL": "",
                    "headersSize": -1,
                    "bodySize": 10,
                },
                "cache": {},
                "timings": {"send": 1, "wait": 110, "receive": 9},
            }
        )
    creator = {"name": "phonehome demo", "version": "1"}
    doc = {"log": {"version": "1.2", "creator": creator, "entries": entries}}
    return (json.dumps(doc, indent=1) + "\n").encode()


@dataclass(frozen=True)
class DemoRun:
    """One audit of the story: its files (name -> bytes), the policy it is judged by, and what it shows."""

    name: str
    title: str
    files: Callable[[], dict[str, bytes]]
    policy: str | None


RUNS: tuple[DemoRun, ...] = (
    DemoRun(
        "factory",
        "The factory-fresh phone, before any sign-in (no consent given)",
        lambda: {"factory.pcap": factory_capture()},
        None,
    ),
    DemoRun(
        "updated",
        "After the vendor's update (still no consent given)",
        lambda: {
            "updated.pcap": _tls_capture(_UPDATED, UPDATED_TIME),
            "updated.har": _har(_UPDATED, UPDATED_TIME),
        },
        None,
    ),
    DemoRun(
        "opted-in",
        "After the user opted in to cloud sync (policy: consented-cloud)",
        lambda: {
            "opted-in.pcap": _tls_capture(_OPTED_IN, OPTED_IN_TIME),
            "opted-in.har": _har(_OPTED_IN, OPTED_IN_TIME),
        },
        "consented-cloud",
    ),
)
PROFILE_NAME = "redmi-1s.toml"


def write(out: Path) -> tuple[Path, dict[str, list[Path]]]:
    """The profile and every run's captures, written into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    profile = out / PROFILE_NAME
    profile.write_text(PROFILE, encoding="utf-8")
    captures: dict[str, list[Path]] = {}
    for demo_run in RUNS:
        captures[demo_run.name] = []
        for name, data in demo_run.files().items():
            path = out / name
            path.write_bytes(data)
            captures[demo_run.name].append(path)
    return profile, captures


def write_run(out: Path, name: str, result: AuditResult) -> list[Path]:
    """Everything the demo writes about one audited run: its findings JSON and its HTML report."""
    from phonehome.report import html, json_report

    findings = out / f"{name}.json"
    findings.write_text(json_report.render(result), encoding="utf-8")
    page = out / f"{name}.html"
    page.write_text(html.render(result), encoding="utf-8")
    return [findings, page]


def audit_runs(out: Path) -> tuple[Path, dict[str, list[Path]], dict[str, AuditResult]]:
    """Write the demo's files and audit each run against its policy."""
    from phonehome.audit import audit
    from phonehome.policy import load_policy
    from phonehome.profile import load_profile

    profile_path, captures = write(out)
    profile = load_profile(profile_path)
    results = {}
    for demo_run in RUNS:
        policy = load_policy(demo_run.policy) if demo_run.policy else None
        results[demo_run.name] = audit([str(p) for p in captures[demo_run.name]], profile, policy=policy)
    return profile_path, captures, results


def compare(results: dict[str, AuditResult], before: str, after: str) -> DiffResult:
    from phonehome.diff import Side, diff

    return diff(
        *(
            Side(f"{name} run", tuple(results[name].findings), results[name].verdict)
            for name in (before, after)
        )
    )


def run(out: Path, stdout: TextIO) -> int:
    from rich.console import Console
    from rich.text import Text

    from phonehome.commands.diff import render as render_diff
    from phonehome.diff import render_json
    from phonehome.report import html

    console = Console(file=stdout)
    console.print(
        "[bold]phonehome demo[/bold]: a reconstruction of the 2014 Redmi 1S test in three runs "
        "(generated traffic, made-up identifiers)."
    )
    profile_path, captures, results = audit_runs(out)
    written = [profile_path]
    for demo_run in RUNS:
        result = results[demo_run.name]
        written += captures[demo_run.name]
        written += write_run(out, demo_run.name, result)
        console.print()
        console.print(Text(f"{demo_run.title}:", style="bold"))
        where = sorted(
            {
                f"{f.host or f.ip} ({f.ip}, {f.country or '??'} from {f.country_source})"
                for f in result.findings
            }
        )
        for line in where:
            console.print(Text(f"  to {line}"))
        style = "red" if result.violations else "green"
        console.print(Text(f"  Verdict: {result.verdict}", style=f"bold {style}"))
        console.print(Text(f"  {len(result.findings)} finding(s), {result.violations} violation(s)."))
    changes = compare(results, "factory", "updated")
    console.print()
    console.print(Text("What changed from the factory-fresh phone to the updated one:", style="bold"))
    render_diff(changes, console)
    diff_path = out / "diff-factory-updated.json"
    diff_path.write_text(render_json(changes), encoding="utf-8")
    diff_page = out / "diff-factory-updated.html"
    diff_page.write_text(html.render_diff(changes), encoding="utf-8")
    written += [diff_path, diff_page]
    console.print()
    console.print(f"Wrote {', '.join(str(p) for p in written)}.", markup=False)
    opted_in = " ".join(str(p) for p in captures["opted-in"])
    console.print(
        f"Audit it yourself: phonehome audit {opted_in} --device {profile_path} --policy consented-cloud",
        markup=False,
    )
    console.print(f"Compare: phonehome diff {out / 'factory.json'} {out / 'updated.json'}", markup=False)
    # The demo succeeded when every run told the story the published reports and the update notes describe.
    stopped = {c.identifier for c in changes.stopped}
    told = (
        results["factory"].violations > 0
        and results["updated"].violations > 0
        and results["opted-in"].findings
        and results["opted-in"].violations == 0
        and {"contact.phone", "message.peer"} <= stopped
        and not any(r.errors for r in results.values())
    )
    return 0 if told else 1
