"""Fleet audits: layouts and manifests, the summary, local processes, a real Dask cluster on loopback."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dpkt
import pytest

from phonehome.audit import Spool, audit
from phonehome.cli import Env, ExitStatus, main
from phonehome.errors import InputError
from phonehome.fleet import CaptureOutcome, FleetResult, load_fleet, run_fleet
from phonehome.policy import NOTHING, facets
from phonehome.profile import load_profile, luhn_check_digit
from phonehome.report import json_report

SERVER = bytes([42, 62, 48, 10])  # a public address, so findings carry a country
PHONE, RESOLVER = bytes([192, 168, 1, 23]), bytes([192, 168, 1, 1])
HOST = "api.example.com"


def imei(n: int) -> str:
    body = f"86512345678{n:03d}"
    return body + luhn_check_digit(body)


def profile_text(n: int) -> str:
    return (
        f'[device]\nname = "phone {n}"\nregion = "IN"\n'
        f'[identifiers]\nimei = "{imei(n)}"\nphone = "+9198765{n:05d}"\n'
    )


def _frame(src: bytes, dst: bytes, transport: dpkt.Packet, proto: int) -> bytes:
    ip = dpkt.ip.IP(src=src, dst=dst, p=proto, ttl=64, data=transport)
    return bytes(dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, type=0x0800, data=ip))


def capture(n: int, *, with_phone: bool, requests: int = 2) -> bytes:
    """Phone ``n`` resolving HOST, then sending its IMEI (and, when asked, its number) in HTTP requests."""
    frames = []
    query = dpkt.dns.DNS(id=n, qd=[dpkt.dns.DNS.Q(name=HOST)])
    answer = dpkt.dns.DNS(id=n, qr=1, qd=query.qd, an=[dpkt.dns.DNS.RR(name=HOST, type=1, ttl=60, ip=SERVER)])
    for src, dst, sport, dport, msg in (
        (PHONE, RESOLVER, 5353 + n, 53, query),
        (RESOLVER, PHONE, 53, 5353 + n, answer),
    ):
        payload = bytes(msg)
        frames.append(
            _frame(src, dst, dpkt.udp.UDP(sport=sport, dport=dport, ulen=8 + len(payload), data=payload), 17)
        )
    seq = {True: 1000, False: 9000}

    def seg(out: bool, flags: int, data: bytes = b"") -> None:
        ports = (40000 + n, 80) if out else (80, 40000 + n)
        tcp = dpkt.tcp.TCP(
            sport=ports[0], dport=ports[1], seq=seq[out], ack=seq[not out], flags=flags, data=data
        )
        seq[out] += len(data) + (1 if flags & 0x03 else 0)
        frames.append(_frame(PHONE if out else SERVER, SERVER if out else PHONE, tcp, 6))

    seg(True, 0x02)
    seg(False, 0x12)
    seg(True, 0x10)
    number = f"&tel=%2B9198765{n:05d}" if with_phone else ""
    for i in range(requests):
        request = f"GET /v1/hello?imei={imei(n)}{number}&i={i} HTTP/1.1\r\nHost: {HOST}\r\n\r\n"
        seg(True, 0x18, request.encode())
        seg(False, 0x18, b"HTTP/1.1 204 No Content\r\n\r\n")
    seg(True, 0x11)
    seg(False, 0x11)
    seg(True, 0x10)
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for i, frame in enumerate(frames):
        out.append(struct.pack("<IIII", 1_700_000_000 + i, 0, len(frame), len(frame)) + frame)
    return b"".join(out)


DEVICE_MAP = """\
[devices."redmi-*"]
model = "Redmi 1S"
profile = "profiles/{device}.toml"

[devices."pixel-*"]
model = "Pixel 7"
profile = "profiles/{device}.toml"
firmware = "TQ3A"
"""


def write_map(root: Path, devices: dict[str, int]) -> Path:
    (root / "profiles").mkdir(parents=True, exist_ok=True)
    lines = []
    for device, n in devices.items():
        (root / "profiles" / f"{device}.toml").write_text(profile_text(n), encoding="utf-8")
        model = "Redmi 1S" if device.startswith("redmi") else "Pixel 7"
        lines.append(f'[devices."{device}"]\nmodel = "{model}"\nprofile = "profiles/{device}.toml"\n')
    path = root / "devices.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


@pytest.fixture
def fleet_dir(tmp_path: Path) -> tuple[Path, Path]:
    """Two Redmi phones on firmware 1.0 (IMEI only) and 1.1 (IMEI and number), one Pixel."""
    data = tmp_path / "captures"
    layout = {
        ("redmi-a", "1.0"): capture(1, with_phone=False),
        ("redmi-a", "1.1"): capture(1, with_phone=True),
        ("redmi-b", "1.1"): capture(2, with_phone=True),
    }
    for (device, firmware), pcap in layout.items():
        (data / device / firmware).mkdir(parents=True)
        (data / device / firmware / "day1.pcap").write_bytes(pcap)
    (data / "pixel-c").mkdir()
    (data / "pixel-c" / "boot.pcap").write_bytes(capture(3, with_phone=False))
    (data / "pixel-c" / "notes.txt").write_text("not a capture\n", encoding="utf-8")
    device_map = write_map(tmp_path, {"redmi-a": 1, "redmi-b": 2, "pixel-c": 3})
    return data, device_map


def run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = main(list(args), Env(stdout=out, stderr=err, progress=False))
    return status, out.getvalue(), err.getvalue()


def by_capture(result: FleetResult) -> dict[str, CaptureOutcome]:
    return {o.task.path: o for o in result.outcomes}


def test_directory_layout_ties_each_capture_to_its_device(fleet_dir: tuple[Path, Path]) -> None:
    data, device_map = fleet_dir
    tasks, skipped = load_fleet(data, device_map)
    assert skipped == [str(data / "pixel-c" / "notes.txt")]
    seen = {
        (Path(t.path).relative_to(data.resolve()).as_posix(), t.device, t.model, t.firmware) for t in tasks
    }
    assert seen == {
        ("redmi-a/1.0/day1.pcap", "redmi-a", "Redmi 1S", "1.0"),
        ("redmi-a/1.1/day1.pcap", "redmi-a", "Redmi 1S", "1.1"),
        ("redmi-b/1.1/day1.pcap", "redmi-b", "Redmi 1S", "1.1"),
        ("pixel-c/boot.pcap", "pixel-c", "Pixel 7", None),
    }
    assert {Path(t.profile).name for t in tasks} == {"redmi-a.toml", "redmi-b.toml", "pixel-c.toml"}


def test_summary_says_what_leaves_which_models_and_what_firmware_changed(
    fleet_dir: tuple[Path, Path],
) -> None:
    data, device_map = fleet_dir
    tasks, _ = load_fleet(data, device_map)
    result = run_fleet(tasks, jobs=1)
    assert not result.errors
    summary = {s.identifier: s for s in result.identifiers}
    assert set(summary) == {"imei", "phone"}
    assert summary["imei"].models == ("Pixel 7", "Redmi 1S")
    assert summary["imei"].devices == 3 and summary["imei"].captures == 4
    assert summary["phone"].models == ("Redmi 1S",) and summary["phone"].devices == 2
    assert summary["imei"].destinations == (HOST,)
    assert summary["imei"].countries == ("CN",)
    # Firmware 1.1 of the Redmi started sending the phone number; the Pixel has one version only.
    assert len(result.changes) == 1
    change = result.changes[0]
    assert (change.model, change.before, change.after) == ("Redmi 1S", "1.0", "1.1")
    assert change.appeared == (f"phone -> {HOST}",) and change.disappeared == ()


def test_manifests_in_toml_and_csv_list_the_same_captures(
    fleet_dir: tuple[Path, Path], tmp_path: Path
) -> None:
    _data, device_map = fleet_dir
    rows = [("redmi-a/1.0/day1.pcap", "redmi-a", "1.0"), ("pixel-c/boot.pcap", "pixel-c", "")]
    toml = tmp_path / "fleet.toml"
    toml.write_text(
        "".join(
            f'[[capture]]\npath = "captures/{p}"\ndevice = "{d}"\n' + (f'firmware = "{f}"\n' if f else "")
            for p, d, f in rows
        ),
        encoding="utf-8",
    )
    csv_path = tmp_path / "fleet.csv"
    csv_path.write_text(
        "path,device,firmware\n" + "".join(f"captures/{p},{d},{f}\n" for p, d, f in rows), encoding="utf-8"
    )
    from_toml, _ = load_fleet(toml, device_map)
    from_csv, _ = load_fleet(csv_path, device_map)
    assert from_toml == from_csv
    assert [(Path(t.path).name, t.device, t.firmware) for t in from_csv] == [
        ("day1.pcap", "redmi-a", "1.0"),
        ("boot.pcap", "pixel-c", None),
    ]


def test_a_device_the_map_does_not_know_is_refused_before_any_audit(
    fleet_dir: tuple[Path, Path], tmp_path: Path
) -> None:
    data, _ = fleet_dir
    device_map = write_map(tmp_path / "other", {"redmi-a": 1})
    with pytest.raises(InputError, match=r"device .pixel-c. \(of .*boot.pcap\) matches no table"):
        load_fleet(data, device_map)
    bad = tmp_path / "bad.toml"
    bad.write_text('[devices."x"]\nmodel = "X"\n', encoding="utf-8")
    with pytest.raises(InputError) as err:
        load_fleet(data, bad)
    assert err.value.key == "devices.x.profile"


def test_glob_entries_and_default_firmware(tmp_path: Path) -> None:
    data = tmp_path / "captures"
    (data / "pixel-c").mkdir(parents=True)
    (data / "pixel-c" / "boot.pcap").write_bytes(capture(3, with_phone=False))
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "pixel-c.toml").write_text(profile_text(3), encoding="utf-8")
    (tmp_path / "devices.toml").write_text(DEVICE_MAP.replace("{device}", "pixel-c"), encoding="utf-8")
    tasks, _ = load_fleet(data, tmp_path / "devices.toml")
    assert [(t.model, t.firmware) for t in tasks] == [("Pixel 7", "TQ3A")]


def test_processes_give_the_serial_findings_and_the_cli_reports_them(fleet_dir: tuple[Path, Path]) -> None:
    data, device_map = fleet_dir
    tasks, _ = load_fleet(data, device_map)
    serial = run_fleet(tasks, jobs=1)
    parallel = run_fleet(tasks, jobs=2)
    assert [o.findings for o in parallel.outcomes] == [o.findings for o in serial.outcomes]
    assert sum(len(o.findings) for o in serial.outcomes) > 0
    status, out, _err = run(
        "fleet", str(data), "--device-map", str(device_map), "--format", "json", "-j", "2"
    )
    assert status == ExitStatus.LEAKS
    doc = json.loads(out)
    assert doc["schema"] == "phonehome/fleet/1"
    assert len(doc["captures"]) == 4 and len(doc["findings"]) == len(serial.findings)
    assert {(f["device"], f["model"]) for f in doc["findings"]} == {
        ("redmi-a", "Redmi 1S"),
        ("redmi-b", "Redmi 1S"),
        ("pixel-c", "Pixel 7"),
    }
    assert doc["firmware_changes"][0]["appeared"] == [f"phone -> {HOST}"]
    status, out, _err = run("fleet", str(data), "--device-map", str(device_map), "-j", "1")
    assert status == ExitStatus.LEAKS
    assert "Redmi 1S" in out and "1.0" in out and "phone -> " in out


def test_fleet_runs_go_to_the_history_store(fleet_dir: tuple[Path, Path], tmp_path: Path) -> None:
    from phonehome.store import open_store

    data, device_map = fleet_dir
    db = tmp_path / "history.sqlite"
    status, _out, err = run(
        "fleet", str(data), "--device-map", str(device_map), "-j", "1", "--store", str(db)
    )
    assert status == ExitStatus.LEAKS, err
    with open_store(str(db)) as store:
        runs = store.runs()
    assert len(runs) == 4


def test_audit_jobs_gives_the_serial_findings(fleet_dir: tuple[Path, Path], tmp_path: Path) -> None:
    data, _ = fleet_dir
    profile = tmp_path / "profiles" / "redmi-a.toml"
    captures = [str(p) for p in sorted(data.rglob("*.pcap"))]
    one = run("audit", *captures, "--device", str(profile), "--format", "json", "-j", "1")
    two = run("audit", *captures, "--device", str(profile), "--format", "json", "-j", "2")
    assert one[0] == two[0] == ExitStatus.LEAKS
    # The same text: the workers of -j 2 encode their findings as the serial report does.
    assert one[1] == two[1]
    assert len(json.loads(one[1])["findings"]) > 0
    files = [tmp_path / "one.json", tmp_path / "two.json"]
    for jobs, out in zip(["1", "2"], files, strict=True):
        run("audit", *captures, "--device", str(profile), "--format", "json", "-j", jobs, "-o", str(out))
    assert files[0].read_text() == files[1].read_text() == one[1]


def test_audit_jobs_workers_write_out_their_findings_and_the_report_splices_them(
    fleet_dir: tuple[Path, Path], tmp_path: Path
) -> None:
    data, _ = fleet_dir
    profile = load_profile(tmp_path / "profiles" / "redmi-a.toml")
    captures = [str(p) for p in sorted(data.rglob("*.pcap"))]
    serial = audit(captures, profile)
    expected = json_report.render(serial)
    spool = tmp_path / "spool"
    spool.mkdir()
    parallel = audit(captures, profile, jobs=2, spool=Spool(json_report.findings_text, str(spool)))
    # One file per input, in input order, holding the text of that input's findings.
    assert [count for count, _file in parallel.encoded] == [
        sum(f.source == c for f in serial.findings) for c in captures
    ]
    assert sorted(Path(file).parent for _count, file in parallel.encoded) == [spool] * len(captures)
    assert json_report.render(parallel) == expected
    out = io.BytesIO()
    json_report.write(parallel, out)
    assert out.getvalue().decode() == expected
    # The findings written out do not come back; what the verdict needs of them does.
    assert parallel.findings == [] and parallel.written == facets(serial.findings)
    assert (parallel.verdict, parallel.violations) == (serial.verdict, serial.violations) != (NOTHING, 0)
    # An input whose findings came back is encoded in its place among the files of the others.
    count, _file = parallel.encoded[1]
    parallel.encoded[1] = (count, None)
    parallel.findings[:] = [f for f in serial.findings if f.source == captures[1]]
    parallel.written.subtract(facets(parallel.findings))
    assert count and json_report.render(parallel) == expected
    # Findings added after the audit come last.
    parallel.findings.append(serial.findings[0])
    serial.findings.append(serial.findings[0])
    assert json_report.render(parallel) == json_report.render(serial)
    # A folder that cannot be written: the workers say so and send every finding back.
    failed = audit(
        captures, profile, jobs=2, spool=Spool(json_report.findings_text, str(tmp_path / "absent"))
    )
    serial.findings.pop()
    assert failed.findings == serial.findings and failed.written == Counter()
    assert failed.encoded == [(n, None) for n, _file in parallel.encoded]
    assert json_report.render(failed) == expected


def test_audit_jobs_removes_what_its_workers_wrote_out(
    fleet_dir: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, _ = fleet_dir
    profile = tmp_path / "profiles" / "redmi-a.toml"
    captures = [str(p) for p in sorted(data.rglob("*.pcap"))]
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    made: list[Path] = []
    make = tempfile.TemporaryDirectory

    def recorded(*args: Any, **kwargs: Any) -> tempfile.TemporaryDirectory[str]:
        folder = make(*args, **kwargs)
        made.append(Path(folder.name))
        return folder

    monkeypatch.setattr(tempfile, "TemporaryDirectory", recorded)
    out = tmp_path / "report.json"
    status, _out, _err = run(
        "audit", *captures, "--device", str(profile), "--format", "json", "-j", "2", "-o", str(out)
    )
    assert status == ExitStatus.LEAKS and json.loads(out.read_text())["findings"]
    assert [folder.parent for folder in made] == [temp]  # the workers' folder was there ...
    assert list(temp.iterdir()) == []  # ... and is gone
    assert run("audit", captures[0], "--device", str(profile), "-j", "0")[0] == ExitStatus.BAD_INPUT


# ---- a real Dask cluster on loopback ------------------------------------------------------------

DASK = shutil.which("dask", path=str(Path(sys.executable).parent))


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture
def dask_cluster(tmp_path: Path) -> Iterator[str]:
    """A scheduler and two single-threaded workers (no nanny: a killed worker stays dead)."""
    assert DASK is not None
    pytest.importorskip("distributed")
    info = tmp_path / "scheduler.json"
    log = (tmp_path / "dask.log").open("wb")
    common = ["--no-dashboard"]
    procs = [
        subprocess.Popen(
            [DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--scheduler-file", str(info), *common],
            stdout=log,
            stderr=log,
        )
    ]
    try:
        deadline = time.monotonic() + 30
        while not info.exists() or not info.read_text():
            assert time.monotonic() < deadline, "the Dask scheduler did not start"
            time.sleep(0.1)
        address = json.loads(info.read_text())["address"]
        for i in range(2):
            procs.append(
                subprocess.Popen(
                    [
                        DASK,
                        "worker",
                        address,
                        "--nthreads",
                        "1",
                        "--no-nanny",
                        "--host",
                        "127.0.0.1",
                        "--name",
                        f"w{i}",
                        *common,
                    ],
                    stdout=log,
                    stderr=log,
                )
            )
        yield address
    finally:
        _stop(procs[::-1])
        log.close()


@pytest.mark.skipif(DASK is None, reason="dask.distributed is not installed (phonehome[fleet])")
def test_dask_cluster_gives_the_serial_findings_and_loses_nothing_when_a_worker_dies(
    dask_cluster: str, tmp_path: Path
) -> None:
    from distributed import Client

    # Twelve captures of some hundreds of requests each: long enough that one is in flight when
    # a worker is killed.
    data = tmp_path / "captures"
    pcaps = {n: capture(n, with_phone=n % 2 == 0, requests=400) for n in (1, 2, 3)}
    devices = {}
    for i in range(12):
        n = i % 3 + 1
        device = f"redmi-{i:02d}"
        devices[device] = n
        (data / device / f"{i % 2}.0").mkdir(parents=True)
        (data / device / f"{i % 2}.0" / "c.pcap").write_bytes(pcaps[n])
    device_map = write_map(tmp_path, devices)
    tasks, _ = load_fleet(data, device_map)
    serial = run_fleet(tasks, jobs=1)
    assert all(o.findings for o in serial.outcomes)

    with Client(dask_cluster, timeout=30) as client:
        client.wait_for_workers(2, timeout=30)
        pids = client.run(os.getpid)
        box: list[FleetResult] = []
        runner = threading.Thread(
            target=lambda: box.append(run_fleet(tasks, cluster=dask_cluster, timeout=120))
        )
        runner.start()
        victim, in_flight = None, []
        deadline = time.monotonic() + 60
        while victim is None and time.monotonic() < deadline and runner.is_alive():
            for worker, keys in client.processing().items():
                running = [k for k in keys if str(k).startswith("phonehome-")]
                if running and len(box) == 0:
                    victim, in_flight = worker, running
                    break
            else:
                time.sleep(0.02)
        assert victim is not None, "no task was seen in flight"
        os.kill(pids[victim], signal.SIGKILL)
        runner.join(timeout=120)
        assert not runner.is_alive()
    assert in_flight
    (clustered,) = box
    assert [o.task for o in clustered.outcomes] == tasks
    assert [o.findings for o in clustered.outcomes] == [o.findings for o in serial.outcomes]
    assert [o.error for o in clustered.outcomes] == [None] * len(tasks)
    assert clustered.identifiers == serial.identifiers and clustered.changes == serial.changes


def test_each_device_is_judged_by_the_policy_its_map_entry_names(tmp_path: Path) -> None:
    data = tmp_path / "captures"
    for device, n in (("redmi-a", 1), ("pixel-c", 3)):
        (data / device / "1.0").mkdir(parents=True)
        (data / device / "1.0" / "c.pcap").write_bytes(capture(n, with_phone=False))
    device_map = write_map(tmp_path, {"redmi-a": 1, "pixel-c": 3})
    text = device_map.read_text(encoding="utf-8")
    # The Redmi's data may go to China (where the server is); the Pixel's only to India.
    text = text.replace('model = "Redmi 1S"', 'model = "Redmi 1S"\npolicy = "residency:CN"')
    text = text.replace('model = "Pixel 7"', 'model = "Pixel 7"\npolicy = "residency:IN"')
    device_map.write_text(text, encoding="utf-8")
    tasks, _ = load_fleet(data, device_map)
    result = run_fleet(tasks, jobs=1)
    verdicts = {(o.task.device, f.verdict) for o in result.outcomes for f in o.findings}
    assert verdicts == {("redmi-a", "allowed"), ("pixel-c", "violation")}
    status, _out, _err = run("fleet", str(data), "--device-map", str(device_map), "-j", "1")
    assert status == ExitStatus.LEAKS  # the Pixel's findings are violations
    bad = tmp_path / "bad-policy.toml"
    bad.write_text(text.replace("residency:IN", "no-such-preset"), encoding="utf-8")
    with pytest.raises(InputError):
        load_fleet(data, bad)
