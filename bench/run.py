"""``make bench``: phonehome's throughput targets, each measured beside its target in one run.

Not a test: it prints figures, and a table of every target with what was measured and whether it
holds. All ratios are taken in the same run, on the same machine and files:

- single core: ``phonehome audit`` of the main capture (BENCH_MB MiB, default 1024) with a
  BENCH_CONTACTS-contact profile (default 10,000; every encoding on), in MB/s, and beside
  ``tshark -r FILE -T fields -e http.host -e http.request.uri`` on the same file;
- identifiers: the same audit of a quarter-size capture with 50,000 contacts and with 10;
- size: the CPU time per MB in the last three quarters of the main capture against its first
  quarter (linear when equal), from 16 MB segments of five runs (the audit notes its CPU time at
  each progress report; each part's 10th percentile); for information, the same from whole runs
  of a 1 MB cut, a quarter and the whole; and peak RSS; with BENCH_FULL=1 also a 4 GiB capture,
  the size the memory target names;
- processes: ``audit -j 2`` against ``-j 1`` on four captures of the main size;
- pcapng: the quarter-size capture written as pcapng by editcap (when installed), against the
  same packets in classic pcap (a figure, no target).

Each command runs BENCH_REPEAT times (default 3) and its fastest run counts, tshark's included;
the commands a ratio compares run in turn (a, b, a, b, ...), so that a slow spell of a shared
machine falls on both.
Profiles are compiled once before timing (phonehome caches them under ~/.cache/phonehome, as a
second audit with the same profile finds them), and that first compilation is reported apart.
Generated files are kept in bench/out/ between runs. BENCH_TLS_MB sizes the TLS decryption figure.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gen import contacts, generate, profile_text

OUT = Path(__file__).resolve().parent / "out"
BIN = Path(sys.executable).parent
MB = 1_000_000
# The generator's layout version: files of an older layout are made again.
LAYOUT = "v3"


@dataclass(frozen=True, slots=True)
class Run:
    wall: float  # seconds
    cpu: float  # user + system seconds of the command and the processes it waited for
    rss: int  # peak resident set of the largest of its processes, MB


# Each command is timed this many times and its fastest run kept (peak RSS: the largest of them):
# on a shared machine the speed a process gets varies from run to run, by half at times, and
# only ever downwards from what the code costs.
REPEAT = max(1, int(os.environ.get("BENCH_REPEAT", "3")))


def timed(cmd: list[str]) -> Run:
    """``cmd`` run :data:`REPEAT` times: the fastest, with the largest peak RSS seen."""
    return timed_together([cmd])[0]


def timed_rounds(cmds: list[list[str]], rounds: int = REPEAT) -> list[list[Run]]:
    """Commands to be compared, run in ``rounds`` rounds, each command once a round (a, b, a, b,
    ...), so that a slow spell of the machine falls on all of them rather than on whichever ran
    during it: for each command, its run of every round."""
    runs: list[list[Run]] = [[] for _ in cmds]
    for _ in range(rounds):
        for cmd, seen in zip(cmds, runs, strict=True):
            seen.append(_timed_once(cmd))
    return runs


def fastest(runs: list[Run]) -> Run:
    """The fastest of a command's runs, with the largest peak RSS seen in any of them."""
    best = min(runs, key=lambda r: r.wall)
    return Run(best.wall, best.cpu, max(r.rss for r in runs))


def timed_together(cmds: list[list[str]]) -> list[Run]:
    """:func:`timed_rounds`, each command's fastest run."""
    return [fastest(runs) for runs in timed_rounds(cmds)]


# Each command is started by a small Python process that measures it: a child started by this one
# would count this process's own resident set (the generated files' data) as its peak, since the
# memory a child has between fork and exec is part of its rusage. The launcher's is ~10 MB.
_LAUNCH = """
import os, subprocess, sys, time
start = time.perf_counter()
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
err = proc.stderr.read()
_pid, status, usage = os.wait4(proc.pid, 0)
elapsed = time.perf_counter() - start
sys.stderr.buffer.write(err[-2000:])
print(elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, os.waitstatus_to_exitcode(status))
"""


def _timed_once(cmd: list[str]) -> Run:
    """Run ``cmd`` and measure it; exit statuses 0 and 1 (no finding, findings) are success."""
    proc = subprocess.run([sys.executable, "-c", _LAUNCH, *cmd], capture_output=True, check=True)
    wall, cpu, rss_kib, status = proc.stdout.split()
    if int(status) not in (0, 1):
        sys.stderr.write(proc.stderr.decode(errors="replace"))
        raise SystemExit(f"{cmd[0]} failed with status {int(status)}")
    return Run(float(wall), float(cpu), int(rss_kib) * 1024 // MB)


def tls_stream(size: int) -> tuple[bytes, bytes, bytes]:
    """A TLS 1.3 (AES-128-GCM) client stream of ``size`` bytes of 16 KiB records: key log, client, server."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from phonehome.protocols.tlsrecords import hkdf_expand_label

    rnd = random.Random(2)
    client_random, secret = rnd.randbytes(32), rnd.randbytes(32)
    hello = b"\x03\x03" + client_random + b"\x00\x00\x02\x13\x01\x01\x00\x00\x00"
    server_hello = b"\x03\x03" + rnd.randbytes(32) + b"\x00\x13\x01\x00\x00\x06\x00\x2b\x00\x02\x03\x04"
    aead = AESGCM(hkdf_expand_label(secret, b"key", b"", 16, "sha256"))
    iv = int.from_bytes(hkdf_expand_label(secret, b"iv", b"", 12, "sha256"), "big")
    chunk = rnd.randbytes(1 << 14)
    records = []
    for seq in range(size >> 14):
        header = b"\x17\x03\x03" + ((1 << 14) + 17).to_bytes(2, "big")
        records.append(header + aead.encrypt((iv ^ seq).to_bytes(12, "big"), chunk + b"\x17", header))
    client = _handshake_record(b"\x01", hello) + b"".join(records)
    keylog = f"CLIENT_TRAFFIC_SECRET_0 {client_random.hex()} {secret.hex()}\n".encode()
    return keylog, client, _handshake_record(b"\x02", server_hello)


def _handshake_record(kind: bytes, body: bytes) -> bytes:
    message = kind + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x03" + len(message).to_bytes(2, "big") + message


def tls_throughput(size_mb: int = 64) -> None:
    """Decryption alone: a generated TLS 1.3 stream through the record layer, in MiB/s."""
    from phonehome.protocols.keylog import KeyStore, parse_keylog
    from phonehome.protocols.tlsrecords import CLIENT, SERVER, TlsDecryptor

    keylog, client, server = tls_stream(size_mb << 20)
    decryptor = TlsDecryptor(KeyStore(parse_keylog(keylog)[0]))
    start = time.perf_counter()
    decryptor.receive(SERVER, server)
    for pos in range(0, len(client), 1460):  # as TCP segments arrive
        decryptor.receive(CLIENT, client[pos : pos + 1460])
    elapsed = time.perf_counter() - start
    if decryptor.problems() or decryptor.decrypted_bytes != (size_mb << 20):
        raise SystemExit(f"TLS decryption failed: {decryptor.problems()}")
    print(f"TLS 1.3 AES-128-GCM decryption: {size_mb} MiB in {elapsed:.2f} s  {size_mb / elapsed:7.1f} MiB/s")


def capture(size_mb: int, people: list[tuple[str, str, str]]) -> Path:
    path = OUT / f"phone-{LAYOUT}-{size_mb}mb.pcap"
    if not path.exists() or path.stat().st_size < size_mb << 20:
        start = time.perf_counter()
        generate(path, size_mb << 20, people)
        print(f"generated {path.name} in {time.perf_counter() - start:.1f} s")
    return path


def profile(n: int) -> Path:
    path = OUT / f"profile-{n}.toml"
    if not path.exists():
        path.write_text(profile_text(contacts(n, random.Random(1))), encoding="utf-8")
    return path


def audit_cmd(captures: list[Path], device: Path, *extra: str) -> list[str]:
    out = ["--format", "json", "-o", str(OUT / "findings.json"), "--no-progress"]
    return [str(BIN / "phonehome"), "audit", *map(str, captures), "--device", str(device), *out, *extra]


def audit(captures: list[Path], device: Path, *extra: str, once: bool = False) -> Run:
    cmd = audit_cmd(captures, device, *extra)
    return _timed_once(cmd) if once else timed(cmd)


def megabytes(paths: list[Path]) -> float:
    return sum(p.stat().st_size for p in paths) / MB


class Table:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, str]] = []

    def add(self, name: str, measured: str, target: str, holds: bool | None) -> None:
        self.rows.append((name, measured, target, {True: "yes", False: "NO", None: "-"}[holds]))

    def print(self) -> None:
        widths = [
            max(len(r[i]) for r in [("target", "measured", "wanted", "holds"), *self.rows]) for i in range(4)
        ]
        for row in [("target", "measured", "wanted", "holds"), *self.rows]:
            print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))


def main() -> None:
    # Byte-compile phonehome's modules first, as pip does for an installed wheel: an editable
    # checkout under PYTHONDONTWRITEBYTECODE would otherwise compile them again in every run timed.
    import compileall

    compileall.compile_dir(Path(__file__).resolve().parents[1] / "src" / "phonehome", quiet=1)
    tls_throughput(int(os.environ.get("BENCH_TLS_MB", "64")))
    size_mb = int(os.environ.get("BENCH_MB", "1024"))
    n_contacts = int(os.environ.get("BENCH_CONTACTS", "10000"))
    full = os.environ.get("BENCH_FULL") == "1"
    OUT.mkdir(exist_ok=True)
    people = contacts(n_contacts, random.Random(1))  # the contacts the phone syncs are its own
    main_capture = capture(size_mb, people)
    quarter = capture(max(size_mb // 4, 16), people)
    device, few, many = profile(n_contacts), profile(10), profile(50_000)
    print(f"main capture {main_capture.name} ({megabytes([main_capture]):,.0f} MB), quarter {quarter.name}")
    print(
        f"sizes: main {size_mb} MiB"
        + (
            ", and 4096 MiB for memory (BENCH_FULL=1)"
            if full
            else "; the 4 GiB memory run needs BENCH_FULL=1"
        )
    )

    # Compile each profile once (Hyperscan database and needle tables are cached on disk).
    for prof in (device, few, many):
        first = audit([_small(quarter)], prof, once=True)
        print(f"first use of {prof.name} (compiles and caches it): {first.wall:.1f} s")

    # Wall time is what the targets name; CPU time is shown beside it, since on a shared machine
    # the wall clock also counts the time other processes held the cores.
    table = Table()
    mb = megabytes([main_capture])
    # phonehome and tshark alternate (see timed_together): the ratio compares the two on the
    # machine as it was over the same minutes.
    tshark = shutil.which("tshark")
    if tshark is not None:
        fields = ["-T", "fields", "-e", "http.host", "-e", "http.request.uri"]
        ts_cmd = [tshark, "-r", str(main_capture), *fields]
        main, ts = timed_together([audit_cmd([main_capture], device), ts_cmd])
    else:
        main = audit([main_capture], device)
    rate = mb / main.wall
    print(
        f"phonehome audit, {n_contacts:,} contacts: {main.wall:.1f} s ({main.cpu:.1f} s CPU), "
        f"{rate:.1f} MB/s, peak RSS {main.rss} MB"
    )
    table.add(
        f"single core, {n_contacts:,} contacts",
        f"{rate:.1f} MB/s (CPU: {mb / main.cpu:.1f})",
        ">= 150 MB/s",
        rate >= 150,
    )
    if tshark is not None:
        print(
            f"tshark -T fields -e http.host -e http.request.uri: {ts.wall:.1f} s ({ts.cpu:.1f} s CPU), "
            f"{mb / ts.wall:.1f} MB/s, peak RSS {ts.rss} MB"
        )
        ratio = ts.wall / main.wall
        measured = f"{ratio:.2f}x (CPU: {ts.cpu / main.cpu:.2f}x)"
        table.add("throughput vs tshark, same file", measured, ">= 8x", ratio >= 8)
    else:
        table.add("throughput vs tshark, same file", "tshark not installed", ">= 8x", None)

    quarter_mb = megabytes([quarter])
    few_run, many_run = timed_together([audit_cmd([quarter], few), audit_cmd([quarter], many)])
    print(f"{quarter.name}: 10 contacts {few_run.wall:.1f} s, 50,000 contacts {many_run.wall:.1f} s")
    ratio = many_run.wall / few_run.wall
    measured = f"{ratio:.2f}x (CPU: {many_run.cpu / few_run.cpu:.2f}x)"
    table.add("50,000 vs 10 contacts, time", measured, "<= 1.5x", ratio <= 1.5)

    # Linear in size: each added MB costs the same at the end of the main capture as at its start.
    # Measured inside runs of the whole capture: the audit (as the command runs it, in a process of
    # its own) notes its CPU time at each progress report, about once a MB, and each 16 MB segment's
    # cost per MB is taken (the first 8 MB, where caches fill, left out). This machine runs at one
    # of two speeds for tens of seconds at a time, a third apart, so that a quarter of a run can fall
    # in the slow one and the rest in the fast one; as everywhere here, the fast state is the code's
    # cost: the 10th percentile of the segments of five runs in the first quarter of the file is
    # compared with that of the segments after it. Comparing whole runs of different sizes instead
    # (below, for information) takes in the start-up, the report and the chance that a long run
    # catches a slow spell a short one missed.
    early, late = [], []
    for _ in range(5):
        for start, end, cost in segments(main_capture, device):
            if start >= 8 * MB:
                (early if end <= main_capture.stat().st_size // 4 else late).append(cost)
    low, high = (statistics.quantiles(costs, n=10)[0] for costs in (early, late))
    ratio = high / low
    print(
        f"{n_contacts:,} contacts, CPU per MB within runs of {mb:,.0f} MB, 10th percentile of 16 MB "
        f"segments: {low * 1000:.2f} ms in its first quarter ({len(early)} segments), {high * 1000:.2f} ms "
        f"after ({len(late)}); medians {statistics.median(early) * 1000:.2f} and "
        f"{statistics.median(late) * 1000:.2f} ms"
    )
    table.add(
        "CPU per added MB, large vs small", f"{ratio:.2f}x (within runs)", "<= 1.1x (linear)", ratio <= 1.1
    )
    # For information: whole runs of three sizes, in turn, each size's fastest of five rounds.
    small = _small(quarter)
    s_runs, q_runs, w_runs = timed_rounds(
        [audit_cmd([small], device), audit_cmd([quarter], device), audit_cmd([main_capture], device)],
        max(REPEAT, 5),
    )
    q_run = fastest(q_runs)
    small_mb = megabytes([small])

    def slopes(small_cpu: float, quarter_cpu: float, main_cpu: float) -> tuple[float, float]:
        low = (quarter_cpu - small_cpu) / (quarter_mb - small_mb)
        return low, (main_cpu - quarter_cpu) / (mb - quarter_mb)

    rounds = sorted(
        hi / lo
        for lo, hi in map(slopes, (s.cpu for s in s_runs), (q.cpu for q in q_runs), (w.cpu for w in w_runs))
    )
    low, high = slopes(*(min(r.cpu for r in runs) for runs in (s_runs, q_runs, w_runs)))
    print(
        f"whole runs, CPU per added MB from {small_mb:,.0f} MB to {quarter_mb:,.0f} MB, "
        f"then to {mb:,.0f} MB: "
        f"{low * 1000:.2f} ms, then {high * 1000:.2f} ms (fastest runs: {high / low:.2f}x; "
        f"rounds {rounds[0]:.2f}-{rounds[-1]:.2f}x)"
    )
    # The same packets in pcapng (Wireshark's format), where editcap is at hand to write them.
    editcap = shutil.which("editcap")
    if editcap is not None:
        ng = OUT / f"{quarter.stem}.pcapng"
        if not ng.exists() or ng.stat().st_mtime < quarter.stat().st_mtime:
            subprocess.run([editcap, "-F", "pcapng", str(quarter), str(ng)], check=True)
        ng_run = audit([ng], device)
        print(f"{ng.name}: {ng_run.wall:.1f} s ({megabytes([ng]) / ng_run.wall:.1f} MB/s)")
        table.add("pcapng vs pcap, same packets, time", f"{ng_run.wall / q_run.wall:.2f}x", "-", None)
    table.add(f"peak RSS, {quarter_mb:,.0f} MB capture", f"{q_run.rss} MB", "flat", None)
    table.add(f"peak RSS, {mb:,.0f} MB capture", f"{main.rss} MB", "< 400 MB", main.rss < 400)
    if full:
        big = capture(4096, people)
        big_run = audit([big], device)
        big_mb = megabytes([big])
        print(
            f"{big.name}: {big_run.wall:.1f} s, {big_mb / big_run.wall:.1f} MB/s, peak RSS {big_run.rss} MB"
        )
        table.add(f"peak RSS, {big_mb:,.0f} MB capture", f"{big_run.rss} MB", "< 400 MB", big_run.rss < 400)
    else:
        table.add("peak RSS, 4 GB capture", "not run (BENCH_FULL=1)", "< 400 MB", None)

    # Four inputs: the main capture under four names (links), large enough that the start-up
    # every run pays (imports, profile, attribution data) is small beside the work shared out.
    inputs = []
    for i in range(4):
        link = OUT / f"multi-{i}.pcap"
        link.unlink(missing_ok=True)
        link.symlink_to(main_capture.name)
        inputs.append(link)
    one, two = timed_together([audit_cmd(inputs, device, "-j", "1"), audit_cmd(inputs, device, "-j", "2")])
    print(
        f"four captures of {mb:,.0f} MB: -j 1 {one.wall:.1f} s ({one.cpu:.1f} s CPU), "
        f"-j 2 {two.wall:.1f} s ({two.cpu:.1f} s CPU)"
    )
    ratio = one.wall / two.wall
    table.add("2 processes vs 1, four captures", f"{ratio:.2f}x", ">= 1.7x", ratio >= 1.7)
    print(f"load average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())} (2 cores)")
    print()
    table.print()


# Run by segments(): the audit as `phonehome audit` runs it (its GC settings included), noting the
# CPU time at each progress report; prints the (offset, CPU seconds) pairs.
_SEGMENTS = """
import json, sys, time
from phonehome.audit import audit
from phonehome.commands.audit import few_collections
from phonehome.profile import load_profile
profile = load_profile(sys.argv[2])
with few_collections():
    marks = [(0, time.process_time())]
    note = lambda at: marks.append((at, time.process_time()))
    audit([sys.argv[1]], profile, progress=lambda path, size: note)
print(json.dumps(marks))
"""


def segments(capture: Path, device: Path, width: int = 16 * MB) -> list[tuple[int, int, float]]:
    """One audit of ``capture``: (start, end, CPU seconds per MB) of each segment of about ``width``
    bytes, from its progress reports."""
    out = subprocess.run(
        [sys.executable, "-c", _SEGMENTS, str(capture), str(device)], capture_output=True, check=True
    )
    marks = json.loads(out.stdout)
    found = []
    start, start_cpu = marks[0]
    for at, cpu in marks[1:]:
        if at - start >= width:
            found.append((start, at, (cpu - start_cpu) / ((at - start) / MB)))
            start, start_cpu = at, cpu
    return found


def _small(source: Path) -> Path:
    """A small capture cut from ``source`` (whole records only), to compile a profile on."""
    path = OUT / f"warm-{LAYOUT}.pcap"
    if not path.exists():
        with open(source, "rb") as fh:
            data = bytearray(fh.read(24))
            while len(data) < 1 << 20:
                head = fh.read(16)
                size = int.from_bytes(head[8:12], "little")
                data += head + fh.read(size)
        path.write_bytes(bytes(data))
    return path


if __name__ == "__main__":
    main()
