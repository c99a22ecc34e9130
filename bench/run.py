"""``make bench``: phonehome's audit throughput beside tshark's on the same generated capture.

Not a test: it prints figures. Sizes can be changed with BENCH_MB (default 1024) and
BENCH_CONTACTS (default 10000). Generated files are kept in bench/out/ between runs.
"""

from __future__ import annotations

import os
import random
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gen import contacts, generate, profile_text

OUT = Path(__file__).resolve().parent / "out"
BIN = Path(sys.executable).parent


def timed(cmd: list[str]) -> tuple[float, int, int]:
    """Wall seconds, exit status and the child's peak RSS in MiB."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if proc.returncode not in (0, 1):
        sys.stderr.write(proc.stderr.decode(errors="replace")[-2000:])
        raise SystemExit(f"{cmd[0]} failed with status {proc.returncode}")
    return elapsed, proc.returncode, max(after, before) // 1024


def main() -> None:
    size_mb = int(os.environ.get("BENCH_MB", "1024"))
    n_contacts = int(os.environ.get("BENCH_CONTACTS", "10000"))
    OUT.mkdir(exist_ok=True)
    capture = OUT / f"phone-{size_mb}mb.pcap"
    profile = OUT / f"profile-{n_contacts}.toml"
    people = contacts(n_contacts, random.Random(1))
    if not profile.exists():
        profile.write_text(profile_text(people), encoding="utf-8")
    if not capture.exists() or capture.stat().st_size < size_mb << 20:
        t = time.perf_counter()
        generate(capture, size_mb << 20, people)
        print(f"generated {capture.name} in {time.perf_counter() - t:.1f} s")
    mb = capture.stat().st_size / (1 << 20)
    print(f"capture: {capture.name}, {mb:,.0f} MiB; profile: {n_contacts:,} contacts")

    audit = [
        str(BIN / "phonehome"),
        "audit",
        str(capture),
        "--device",
        str(profile),
        "--format",
        "json",
        "-o",
        str(OUT / "findings.json"),
        "--no-progress",
    ]
    ph_time, status, ph_rss = timed(audit)
    print(
        f"phonehome audit: {ph_time:7.1f} s  {mb / ph_time:7.1f} MiB/s  "
        f"peak RSS {ph_rss} MiB  (exit {status})"
    )

    tshark = shutil.which("tshark")
    if tshark is None:
        print("tshark: not installed; no ratio")
        return
    ts_cmd = [tshark, "-n", "-r", str(capture), "-T", "fields", "-e", "http.host"]
    ts_time, _, ts_rss = timed(ts_cmd)
    print(
        f"tshark -T fields -e http.host: {ts_time:7.1f} s  {mb / ts_time:7.1f} MiB/s  peak RSS {ts_rss} MiB"
    )
    print(f"ratio phonehome/tshark throughput: {ts_time / ph_time:.2f}x")


if __name__ == "__main__":
    main()
