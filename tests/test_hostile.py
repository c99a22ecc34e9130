"""Hostile input end to end: every corpus file, and damaged variants of it, through ``phonehome audit``.

A leak auditor reads traffic its subjects wrote, so a capture may be shaped to break it. Whatever
the bytes, the audit ends in time with status 0, 1 or 2, prints at most one line per error on
standard error (never a traceback), and its report carries no raw control character.

The variants are built with a fixed seed: truncations at random offsets, bit flips, and absurd
values written into the length fields a parser trusts (pcap record lengths, pcapng block lengths,
IPv4 total length, TCP data offset, HTTP Content-Length and chunk sizes, JSON nesting).
"""

from __future__ import annotations

import io
import json
import os
import random
import re
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

import pytest

from factories import CORPUS, NO_CORPUS
from phonehome.cli import main
from phonehome.commands import Env

SEED = 20240611
VARIANTS = 12  # per corpus file, on top of the file itself
TIME_BOUND = 10.0  # seconds one audit may take
SUFFIXES = (".pcap", ".pcapng", ".har", ".mitm", ".json")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")

PROFILE = """\
[device]
name = "hostile input"
region = "IN"

[identifiers]
imei = "865123456789019"
phone = "+919876543210"
android_id = "b9e28776354d259e"
advertising_id = "5ac6a0ff-8d18-47bc-a902-2812cf0c251e"
"""


# ---- damage: each takes the file and a random source, returns the damaged bytes ----------------------


def truncate(data: bytes, rng: random.Random) -> bytes:
    return data[: rng.randrange(len(data))]


def flip_bits(data: bytes, rng: random.Random) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 16)):
        i = rng.randrange(len(buf))
        buf[i] ^= 1 << rng.randrange(8)
    return bytes(buf)


def _pcap_records(data: bytes) -> Iterator[tuple[int, str]]:
    """File offsets of the record headers of a classic pcap, with its byte order."""
    magic = data[:4]
    order = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    pos = 24
    while pos + 16 <= len(data):
        yield pos, order
        pos += 16 + struct.unpack_from(order + "I", data, pos + 8)[0]


def _pcapng_blocks(data: bytes) -> Iterator[tuple[int, str]]:
    order = "<" if data[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
    pos = 0
    while pos + 12 <= len(data):
        yield pos, order
        length = struct.unpack_from(order + "I", data, pos + 4)[0]
        if length < 12:
            return
        pos += length


_ABSURD_U32 = (0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, 0, 1, 0xFFFFFFF0, 1 << 24)


def absurd_lengths(data: bytes, rng: random.Random) -> bytes:
    """An absurd value in one length field the format's parsers rely on."""
    buf = bytearray(data)
    if data[:4] == b"\x0a\x0d\x0d\x0a":
        pos, order = rng.choice(list(_pcapng_blocks(data)) or [(0, "<")])
        field = rng.choice((4, 8, 12, 20))  # block length, then the first body words (lengths in EPBs)
        struct.pack_into(order + "I", buf, min(pos + field, len(buf) - 4), rng.choice(_ABSURD_U32))
    elif data[:4] in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d"):
        records = list(_pcap_records(data))
        if records:
            pos, order = rng.choice(records)
            field = rng.choice((8, 12))  # captured length, original length
            struct.pack_into(order + "I", buf, pos + field, rng.choice(_ABSURD_U32))
    # Whatever the container, the protocols inside have their own lengths.
    for pattern, replacement in (
        (rb"Content-Length: *\d+", rng.choice((b"Content-Length: 99999999999999", b"Content-Length: -1"))),
        (rb"\r\n[0-9a-fA-F]{1,6}\r\n", b"\r\nffffffffffffffff\r\n"),
        (rb'"(?:text|size|bodySize)": *"?', b'"text": ' + b"[" * 5000),
    ):
        hits = list(re.finditer(pattern, bytes(buf)))
        if hits:
            m = rng.choice(hits)
            buf[m.start() : m.end()] = replacement
    ipv4 = [m.start() for m in re.finditer(rb"\x08\x00\x45", bytes(buf))]
    if ipv4:
        at = rng.choice(ipv4) + 2  # the IPv4 header after the Ethernet type
        if rng.random() < 0.5 and at + 4 <= len(buf):
            buf[at + 2 : at + 4] = rng.choice((b"\xff\xff", b"\x00\x00", b"\x00\x14"))  # total length
        elif at + 33 <= len(buf) and buf[at + 9] == 6:
            buf[at + 32] = rng.choice((0x00, 0x10, 0xF0, 0xFF))  # TCP data offset (and reserved bits)
    return bytes(buf)


DAMAGE: tuple[Callable[[bytes, random.Random], bytes], ...] = (truncate, flip_bits, absurd_lengths)


def corpus_files() -> list[Path]:
    if not CORPUS.is_dir():
        return []
    return sorted(p for p in CORPUS.rglob("*") if p.suffix in SUFFIXES and p.is_file())


def cases() -> list[tuple[str, Path, int]]:
    """(test id, corpus file, variant number); variant 0 is the file as it is."""
    return [(f"{p.relative_to(CORPUS)}#{n}", p, n) for p in corpus_files() for n in range(VARIANTS + 1)]


def variant(path: Path, n: int) -> bytes:
    data = path.read_bytes()
    if n == 0 or not data:
        return data
    rng = random.Random(f"{SEED}:{path.relative_to(CORPUS)}:{n}")
    damage = DAMAGE[(n - 1) % len(DAMAGE)] if n <= len(DAMAGE) else rng.choice(DAMAGE)
    return damage(data, rng)


class Hang(Exception):
    pass


def _alarm(_signum: int, _frame: FrameType | None) -> None:
    raise Hang(f"audit ran over {TIME_BOUND} s")


@pytest.fixture(scope="module")
def profile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("hostile") / "phone.toml"
    path.write_text(PROFILE, encoding="utf-8")
    return path


def audit(capture: Path, profile: Path, *extra: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, TIME_BOUND)
    try:
        status = main(
            ["audit", str(capture), "--device", str(profile), *extra], Env(out, err, progress=False)
        )
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    return status, out.getvalue(), err.getvalue()


@pytest.mark.skipif(not CORPUS.is_dir(), reason=NO_CORPUS)
@pytest.mark.parametrize(("path", "n"), [c[1:] for c in cases()], ids=[c[0] for c in cases()])
def test_audit_survives(path: Path, n: int, profile: Path, tmp_path: Path) -> None:
    capture = tmp_path / path.name
    capture.write_bytes(variant(path, n))
    status, out, err = audit(capture, profile)
    assert status in (0, 1, 2), err
    lines = err.splitlines()
    assert all(line.startswith("phonehome: ") for line in lines), err
    assert "Traceback" not in err
    # One line per error, and only inputs that could not be read to their end have one.
    assert len(lines) <= 1, err
    assert (status == 2) == bool(lines), (status, err)
    assert not _CONTROL.search(out), "raw control character in the terminal report"


def test_variants_are_damaged() -> None:
    data = bytes(range(256)) * 8
    rng = random.Random(SEED)
    assert len(truncate(data, rng)) < len(data)
    assert flip_bits(data, rng) != data
    pcap = (
        struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1) + struct.pack("<IIII", 0, 0, 4, 4) + b"abcd"
    )
    damaged = absurd_lengths(pcap, random.Random(1))
    assert damaged[:24] == pcap[:24]
    assert struct.unpack_from("<II", damaged, 32) != (4, 4)
    http = b"POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\nabcd"
    assert b"Content-Length: 4\r" not in absurd_lengths(http, random.Random(2))


# ---- an interrupted audit still reports what it read ---------------------------------------------------


def _busy_capture(path: Path, requests: int = 4000) -> None:
    """A capture of ``requests`` HTTP requests, each in its own flow, each carrying the IMEI."""
    import dpkt

    with path.open("wb") as fh:
        writer = dpkt.pcap.Writer(fh)
        for i in range(requests):
            body = b"GET /c?imei=865123456789019&n=%d HTTP/1.1\r\nHost: t.example\r\n\r\n" % i
            tcp = dpkt.tcp.TCP(sport=1024 + i % 60000, dport=80, seq=i, flags=dpkt.tcp.TH_ACK, data=body)
            ip = dpkt.ip.IP(
                src=b"\x0a\x00\x00\x02", dst=bytes([93, 184, i >> 8 & 255, i & 255]), p=6, data=tcp
            )
            writer.writepkt(bytes(dpkt.ethernet.Ethernet(type=0x0800, data=ip)), ts=1.0e9 + i)


def _cpu_seconds(pid: int) -> float:
    """CPU time of ``pid`` and of its child processes (the workers of ``-j``)."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # a process that ended meanwhile
        if stat.parent.name == str(pid) or fields[1] == str(pid):
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def _interrupted_audit(profile: Path, tmp_path: Path, *options: str) -> tuple[int, str]:
    """Start an audit of far more than it can read in a moment, SIGTERM it once under way."""
    capture = tmp_path / "busy.pcap"
    _busy_capture(capture)
    copies = 200  # the same file again and again: far more work than the time before the signal
    cmd = [
        sys.executable,
        "-c",
        "from phonehome.cli import entry; entry()",
        "audit",
        *[str(capture)] * copies,
    ]
    cmd += ["--device", str(profile), "--no-progress", *options]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # CPU time, not wall time: the audit is well under way whatever else the machine is doing.
        deadline = time.monotonic() + 60
        while proc.poll() is None and _cpu_seconds(proc.pid) < 2.0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, "the audit ended before it could be interrupted"
        proc.send_signal(signal.SIGTERM)
        _stdout, stderr = proc.communicate(timeout=120)  # a hang guard, not a speed test
    finally:
        proc.kill()
    assert "Traceback" not in stderr
    assert stderr.splitlines()[-1].startswith("phonehome: interrupted"), stderr
    return proc.returncode, stderr


NEEDS_PROC = pytest.mark.skipif(
    not Path("/proc/self/stat").exists(), reason="needs /proc to see the audit's progress"
)


@NEEDS_PROC
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_sigterm_writes_the_findings_so_far_marked_incomplete(
    profile: Path, tmp_path: Path, jobs: str
) -> None:
    out = tmp_path / "findings.json"
    status, stderr = _interrupted_audit(profile, tmp_path, "--format", "json", "-o", str(out), "-j", jobs)
    assert status == 130, stderr
    document = json.loads(out.read_text())
    assert document["incomplete"] is True
    assert 0 < len(document["inputs"]) < 200
    assert document["findings"], "the findings read before the signal are kept"
    assert {f["identifier"] for f in document["findings"]} == {"imei"}


@NEEDS_PROC
def test_sigterm_text_report_says_incomplete(profile: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.txt"
    status, stderr = _interrupted_audit(profile, tmp_path, "-o", str(out))
    assert status == 130, stderr
    report = out.read_text()
    assert "INCOMPLETE: interrupted" in report
    assert "imei" in report


def test_damage_mid_capture_is_reported_and_both_sides_of_it_audited(profile: Path, tmp_path: Path) -> None:
    capture = tmp_path / "damaged.pcap"
    _busy_capture(capture, requests=40)
    data = bytearray(capture.read_bytes())
    records = list(_pcap_records(bytes(data)))
    damaged_at = records[20][0]
    struct.pack_into("<I", data, damaged_at + 8, 0xFFFFFFF0)  # an absurd captured length
    capture.write_bytes(bytes(data))
    out = tmp_path / "findings.json"
    status, _stdout, err = audit(capture, profile, "--format", "json", "-o", str(out))
    assert status == 2
    assert err.startswith("phonehome: ") and str(damaged_at) in err, err
    document = json.loads(out.read_text())
    damage = [w for w in document["warnings"] if w["offset"] == damaged_at]
    assert damage, document["warnings"]
    numbers = {int(f["url"].rsplit("n=", 1)[1]) for f in document["findings"]}
    # Everything before the bad record, and everything after the reader found its footing again.
    assert set(range(20)) <= numbers
    assert set(range(22, 40)) <= numbers


def test_sigterm_is_an_interrupt_only_while_the_audit_runs() -> None:
    from phonehome.commands.audit import sigterm_interrupts

    before = signal.getsignal(signal.SIGTERM)
    with sigterm_interrupts(), pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the signal arrives at once; never reached
    assert signal.getsignal(signal.SIGTERM) == before
