"""The demo: a reconstruction of the 2014 Redmi 1S test, generated deterministically, then audited.

This is NOT the original capture (which was never published). It replays what the published
reports described: before any cloud sign-in, a factory-fresh Redmi 1S sent its carrier name,
IMEI and own number to api.account.xiaomi.com, then the number of a newly added contact and the
number an SMS came from, over plain HTTP to servers in Beijing (42.62.48.0/24). Identifiers are
made up; request paths and field names are illustrative.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import TextIO

import dpkt

DEMO_TIME = 1407664800.0  # 2014-08-10 10:00:00 UTC
PHONE_MAC = bytes.fromhex("021a11f0aab3")
ROUTER_MAC = bytes.fromhex("021a11000001")
PHONE_IP = bytes([192, 168, 1, 23])
RESOLVER_IP = bytes([192, 168, 1, 1])
XIAOMI_HOST = "api.account.xiaomi.com"
XIAOMI_IP = bytes([42, 62, 48, 171])

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
PHONE = "+919876543210"
CONTACT = "+919811122233"
SMS_PEER = "+919822233344"


class _Capture:
    """Builds a deterministic Ethernet capture, one TCP or UDP exchange at a time."""

    def __init__(self) -> None:
        self.frames: list[tuple[float, bytes]] = []
        self.time = DEMO_TIME
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

    def http(self, server: bytes, requests: list[bytes], mss: int = 536) -> None:
        """One TCP connection carrying ``requests``, each answered with a short 200 response."""
        self.port += 1
        sport, cseq, sseq = self.port, 1_000_000 + self.port * 7919, 3_000_000

        def seg(out: bool, flags: int, data: bytes = b"") -> None:
            nonlocal cseq, sseq
            if out:
                tcp = dpkt.tcp.TCP(
                    sport=sport, dport=80, seq=cseq, ack=sseq, flags=flags, win=65535, data=data
                )
                cseq += len(data) + (1 if flags & (dpkt.tcp.TH_SYN | dpkt.tcp.TH_FIN) else 0)
                self._frame(self._ip(PHONE_IP, server, dpkt.ip.IP_PROTO_TCP, tcp), True)
            else:
                tcp = dpkt.tcp.TCP(
                    sport=80, dport=sport, seq=sseq, ack=cseq, flags=flags, win=65535, data=data
                )
                sseq += len(data) + (1 if flags & (dpkt.tcp.TH_SYN | dpkt.tcp.TH_FIN) else 0)
                self._frame(self._ip(server, PHONE_IP, dpkt.ip.IP_PROTO_TCP, tcp), False)

        ack, psh = dpkt.tcp.TH_ACK, dpkt.tcp.TH_PUSH | dpkt.tcp.TH_ACK
        seg(True, dpkt.tcp.TH_SYN)
        seg(False, dpkt.tcp.TH_SYN | ack)
        seg(True, ack)
        for request in requests:
            for i in range(0, len(request), mss):
                seg(True, psh, request[i : i + mss])
            body = b'{"code":0}'
            seg(
                False,
                psh,
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                % (len(body), body),
            )
        seg(True, dpkt.tcp.TH_FIN | ack)
        seg(False, dpkt.tcp.TH_FIN | ack)
        seg(True, ack)

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


def _post(path: str, body: bytes, content_type: str) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\n"
        f"Host: {XIAOMI_HOST}\r\n"
        "User-Agent: Dalvik/1.6.0 (Linux; U; Android 4.3; 2014011 MIUI/JHCCNBF43.0)\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: Keep-Alive\r\n\r\n"
    )
    return head.encode() + body


def factory_capture() -> bytes:
    """The factory-fresh phone: activation with carrier, IMEI and number; then contact and SMS peer."""
    cap = _Capture()
    cap.dns(XIAOMI_HOST, XIAOMI_IP)
    imei_md5 = hashlib.md5(IMEI.encode(), usedforsecurity=False).hexdigest()
    activation = (
        f"carrier=airtel&imei={IMEI}&imeiMd5={imei_md5}&phone=%2B919876543210"
        "&simState=ready&miuiVersion=JHCCNBF43.0"
    ).encode()
    contacts = json.dumps({"deviceId": imei_md5, "contacts": [{"name": "A. V.", "phone": CONTACT}]}).encode()
    sms = json.dumps({"deviceId": imei_md5, "event": "sms_received", "from": SMS_PEER}).encode()
    cap.http(
        XIAOMI_IP,
        [
            _post("/pass/v3/activate?carrier=airtel", activation, "application/x-www-form-urlencoded"),
            _post("/cloud/contacts/upload", contacts, "application/json"),
            _post("/mipush/event", sms, "application/json"),
        ],
    )
    return cap.pcap()


def write(out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    profile = out / "redmi-1s.toml"
    capture = out / "redmi-1s-factory.pcap"
    profile.write_text(PROFILE, encoding="utf-8")
    capture.write_bytes(factory_capture())
    return profile, capture


def run(out: Path, stdout: TextIO) -> int:
    from rich.console import Console

    from phonehome.audit import audit
    from phonehome.profile import load_profile
    from phonehome.report import json_report, text

    profile_path, capture_path = write(out)
    console = Console(file=stdout)
    console.print(
        "[bold]phonehome demo[/bold]: a reconstruction of the 2014 Redmi 1S test "
        "(generated traffic, made-up identifiers)."
    )
    result = audit([str(capture_path)], load_profile(profile_path))
    text.render(result, console)
    findings = out / "findings.json"
    findings.write_text(json_report.render(result), encoding="utf-8")
    console.print(f"Wrote {profile_path}, {capture_path} and {findings}.", markup=False)
    console.print(f"Audit it yourself: phonehome audit {capture_path} --device {profile_path}", markup=False)
    # The demo succeeded when the audit ran and found what the published test saw.
    return 0 if result.findings and not result.errors else 1
