"""Generate a large, realistic-shaped phone capture and a 10,000-contact profile for benchmarks.

One "session" of a few hundred flows is built with dpkt (DNS, TLS with encrypted records, HTTP
requests carrying identifiers in query, headers, form, JSON, base64 and digest forms, HTTP
responses with bodies), then repeated with fresh client ports and timestamps until the file
reaches the size asked for. Deterministic for a given seed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import re
import struct
from collections.abc import Callable
from pathlib import Path

import dpkt

PHONE_IP = bytes([10, 0, 0, 23])
MAC_A, MAC_B = bytes.fromhex("021a11f0aab3"), bytes.fromhex("021a11000001")
IMEI = "865123456789019"
ANDROID_ID = "b9e28776354d259e"
ADID = "5ac6a0ff-8d18-47bc-a902-2812cf0c251e"


def contacts(n: int, rng: random.Random) -> list[tuple[str, str, str]]:
    first = [
        "Asha",
        "Ravi",
        "Meera",
        "Arjun",
        "Kiran",
        "Sunil",
        "Priya",
        "Neha",
        "Vikram",
        "Anil",
        "Divya",
        "Rahul",
    ]
    last = [
        "Verma",
        "Sharma",
        "Iyer",
        "Reddy",
        "Khan",
        "Das",
        "Patel",
        "Singh",
        "Nair",
        "Gupta",
        "Rao",
        "Bose",
    ]
    out = []
    for i in range(n):
        name = f"{rng.choice(first)} {rng.choice(last)} {i}"
        phone = f"+9198{i:08d}"
        email = f"person{i}@example.org"
        out.append((name, phone, email))
    return out


def profile_text(people: list[tuple[str, str, str]]) -> str:
    lines = [
        "[device]",
        'name = "bench phone"',
        'region = "IN"',
        "",
        "[identifiers]",
        f'imei = "{IMEI}"',
        'imsi = "404101234567890"',
        'phone = "+919876543210"',
        'carrier = "airtel"',
        f'android_id = "{ANDROID_ID}"',
        f'advertising_id = "{ADID}"',
        'wifi_mac = "02:1a:11:f0:aa:b3"',
        "",
    ]
    for name, phone, email in people:
        lines += ["[[contacts]]", f'name = "{name}"', f'phone = "{phone}"', f'email = "{email}"', ""]
    return "\n".join(lines)


class _Builder:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.frames: list[tuple[bytes, int, int]] = []  # frame, client port offset (or -1), direction

    def _eth(self, ip: dpkt.ip.IP) -> bytes:
        return bytes(dpkt.ethernet.Ethernet(src=MAC_A, dst=MAC_B, type=dpkt.ethernet.ETH_TYPE_IP, data=ip))

    def tcp(
        self, server: bytes, dport: int, sport: int, client_msgs: list[bytes], server_msgs: list[bytes]
    ) -> None:
        cseq, sseq = self.rng.randrange(1 << 32), self.rng.randrange(1 << 32)

        def seg(out: bool, flags: int, data: bytes = b"") -> None:
            nonlocal cseq, sseq
            if out:
                t = dpkt.tcp.TCP(
                    sport=sport, dport=dport, seq=cseq, ack=sseq, flags=flags, win=65535, data=data
                )
                ip = dpkt.ip.IP(src=PHONE_IP, dst=server, p=6, ttl=64, data=t)
                cseq = (cseq + len(data) + (1 if flags & 3 else 0)) & 0xFFFFFFFF
                self.frames.append((self._eth(ip), 34, 0))
            else:
                t = dpkt.tcp.TCP(
                    sport=dport, dport=sport, seq=sseq, ack=cseq, flags=flags, win=65535, data=data
                )
                ip = dpkt.ip.IP(src=server, dst=PHONE_IP, p=6, ttl=60, data=t)
                sseq = (sseq + len(data) + (1 if flags & 3 else 0)) & 0xFFFFFFFF
                self.frames.append((self._eth(ip), 36, 1))

        seg(True, 0x02)
        seg(False, 0x12)
        seg(True, 0x10)
        for i in range(max(len(client_msgs), len(server_msgs))):
            for msg, out in ((client_msgs, True), (server_msgs, False)):
                if i < len(msg):
                    data = msg[i]
                    for j in range(0, len(data), 1448):
                        seg(out, 0x18, data[j : j + 1448])
        seg(True, 0x11)
        seg(False, 0x11)
        seg(True, 0x10)

    def udp(self, server: bytes, sport: int, payload: bytes, reply: bytes) -> None:
        u = dpkt.udp.UDP(sport=sport, dport=53, ulen=8 + len(payload), data=payload)
        self.frames.append((self._eth(dpkt.ip.IP(src=PHONE_IP, dst=server, p=17, data=u)), 34, 0))
        u = dpkt.udp.UDP(sport=53, dport=sport, ulen=8 + len(reply), data=reply)
        self.frames.append((self._eth(dpkt.ip.IP(src=server, dst=PHONE_IP, p=17, data=u)), 36, 1))


def _tls_records(rng: random.Random, host: str, size: int) -> tuple[list[bytes], list[bytes]]:
    sni = host.encode()
    ext = struct.pack("!HHHBH", 0, len(sni) + 5, len(sni) + 3, 0, len(sni)) + sni
    body = (
        b"\x03\x03"
        + rng.randbytes(32)
        + b"\x00"
        + b"\x00\x02\x13\x01"
        + b"\x01\x00"
        + struct.pack("!H", len(ext))
        + ext
    )
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    hello = b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs

    def rec(n: int) -> bytes:
        return b"\x17\x03\x03" + struct.pack("!H", n) + rng.randbytes(n)

    client = [hello, rec(600)]
    server = [b"\x16\x03\x03\x00\x7a" + rng.randbytes(0x7A)] + [
        rec(min(16384, size - i)) for i in range(0, size, 16384)
    ]
    return client, server


def _http_requests(rng: random.Random, people: list[tuple[str, str, str]]) -> list[bytes]:
    md5 = hashlib.md5(IMEI.encode()).hexdigest()
    sha_aid = hashlib.sha1(ANDROID_ID.encode()).hexdigest()
    who = rng.choice(people)
    bodies = [
        ("GET", f"/v1/config?device={ANDROID_ID}&imei_md5={md5}&lang=en", b"", None),
        (
            "POST",
            "/track",
            json.dumps({"adid": ADID, "event": "open", "ts": 1700000000, "aid": sha_aid}).encode(),
            "application/json",
        ),
        (
            "POST",
            "/sync",
            f"name={who[0].replace(' ', '+')}&tel=%2B{who[1][1:]}&v=3".encode(),
            "application/x-www-form-urlencoded",
        ),
        ("POST", "/b", b"payload=" + base64.b64encode(json.dumps({"imei": IMEI}).encode()), "text/plain"),
        ("GET", "/static/app.js?v=12345", b"", None),
        ("POST", "/log", json.dumps({"msg": "x" * 2000, "n": list(range(100))}).encode(), "application/json"),
    ]
    out = []
    for method, path, body, ctype in bodies:
        head = f"{method} {path} HTTP/1.1\r\nHost: api{rng.randrange(9)}.example.net\r\n"
        head += "User-Agent: okhttp/4.9.0\r\n"
        head += f"Cookie: sid={rng.randbytes(8).hex()}\r\nAccept-Encoding: gzip\r\n"
        if ctype:
            head += f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
        out.append(head.encode() + b"\r\n" + body)
    return out


def build_session(rng: random.Random, people: list[tuple[str, str, str]]) -> list[tuple[bytes, int, int]]:
    b = _Builder(rng)
    port = 20000
    for i in range(40):
        port += 1
        server = bytes([93, 184, 216, (i % 200) + 1])
        host = f"cdn{i}.example.com"
        q = dpkt.dns.DNS(id=i, qd=[dpkt.dns.DNS.Q(name=host)])
        r = dpkt.dns.DNS(id=i, qr=1, qd=q.qd, an=[dpkt.dns.DNS.RR(name=host, type=1, ttl=60, ip=server)])
        b.udp(bytes([10, 0, 0, 1]), port, bytes(q), bytes(r))
        port += 1
        c, s = _tls_records(rng, host, rng.randrange(20_000, 120_000))
        b.tcp(server, 443, port, c, s)
        port += 1
        reqs = _http_requests(rng, people)
        resp_body = rng.randbytes(rng.randrange(2_000, 40_000))
        resp = (
            b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: %d\r\n\r\n" % len(resp_body)
            + resp_body
        )
        b.tcp(server, 80, port, reqs, [resp] * len(reqs))
    return b.frames


# Fields of the phone's requests that change from one repetition of the session to the next, as
# they do in real traffic (session cookies, timestamps, which contact is synced, log lines), so
# that no two repetitions send the same bytes. Each is rewritten in place, at the same length.
_VARYING = {
    "cookie": re.compile(rb"sid=([0-9a-f]{16})"),
    "ts": re.compile(rb'"ts": (\d{10})'),
    "contact": re.compile(rb"tel=%2B9198(\d{8})"),
    "log": re.compile(rb'"msg": "(x{8})'),
}


# kind -> new value of that field: (random source, running count, number of contacts) -> text.
_NEW_VALUE: dict[str, Callable[[random.Random, int, int], str]] = {
    "cookie": lambda rng, _n, _people: rng.randbytes(8).hex(),
    "ts": lambda _rng, n, _people: str(1_700_000_000 + n),
    "contact": lambda _rng, n, people: f"{n * 7919 % people:08d}",
    "log": lambda _rng, n, _people: f"{n % 10**8:08d}",
}


def _varying_fields(frame: bytes) -> list[tuple[int, int, str]]:
    return [(m.start(1), m.end(1), kind) for kind, rx in _VARYING.items() for m in rx.finditer(frame)]


def generate(path: Path, size: int, people: list[tuple[str, str, str]], seed: int = 7) -> int:
    rng = random.Random(seed)
    session = build_session(rng, people)
    fields = [_varying_fields(frame) if direction == 0 else [] for frame, _port_at, direction in session]
    written = 0
    ts = 1_700_000_000.0
    rep = 0
    n = 0
    with open(path, "wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        written = 24
        while written < size:
            base = 1024 + (rep * 131) % 40000  # fresh client ports each repetition
            for (frame, port_at, _direction), varying in zip(session, fields, strict=True):
                buf = bytearray(frame)
                port = int.from_bytes(buf[port_at : port_at + 2], "big")
                if port >= 20000:
                    buf[port_at : port_at + 2] = ((port - 20000 + base) % 64000 + 1024).to_bytes(2, "big")
                for start, end, kind in varying:
                    n += 1
                    buf[start:end] = _NEW_VALUE[kind](rng, n, len(people)).encode()
                ts += 0.0005
                sec = int(ts)
                fh.write(struct.pack("<IIII", sec, int((ts - sec) * 1e6), len(buf), len(buf)))
                fh.write(buf)
                written += 16 + len(buf)
            rep += 1
    return written
