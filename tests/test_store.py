"""The history store, on SQLite and on a real PostgreSQL server started for the session."""

from __future__ import annotations

import glob
import hashlib
import io
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from phonehome.audit import audit
from phonehome.cli import Env, ExitStatus, main
from phonehome.demo import PROFILE, factory_capture
from phonehome.errors import InputError
from phonehome.policy import load_policy
from phonehome.profile import load_profile
from phonehome.store import open_store


def _initdb() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return found[-1] if found else shutil.which("initdb")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """A throwaway PostgreSQL on a unix socket in a temporary folder, or PHONEHOME_TEST_PG."""
    given = os.environ.get("PHONEHOME_TEST_PG")
    if given:
        yield given
        return
    initdb = _initdb()
    if initdb is None:
        pytest.skip(
            "PostgreSQL is not installed (apt-get install postgresql) and PHONEHOME_TEST_PG is not set"
        )
    bindir = Path(initdb).parent
    home = Path(tempfile.mkdtemp(prefix="phonehome-pg-"))
    # The server refuses to run as root; run it as an unprivileged user in a folder that user owns.
    user = ["runuser", "-u", "nobody", "--"] if os.geteuid() == 0 else []
    if user:
        shutil.chown(home, "nobody")
    data = home / "db"
    try:
        subprocess.run(
            [
                *user,
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-A",
                "trust",
                "-U",
                "phonehome",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
        )
        options = f"-k {home} -c listen_addresses='' -c fsync=off -c full_page_writes=off"
        subprocess.run(
            [
                *user,
                str(bindir / "pg_ctl"),
                "-D",
                str(data),
                "-o",
                options,
                "-l",
                str(home / "log"),
                "-w",
                "start",
            ],
            check=True,
            capture_output=True,
        )
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(home, ignore_errors=True)
        pytest.skip(f"could not start PostgreSQL: {exc.stderr.decode(errors='replace').strip()[-300:]}")
    try:
        yield f"postgresql://phonehome@/postgres?host={home}"
    finally:
        subprocess.run(
            [*user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True
        )
        shutil.rmtree(home, ignore_errors=True)


_COUNTER = itertools.count()


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty history database of each kind."""
    if request.param == "sqlite":
        return str(tmp_path / "history.db")
    import psycopg

    server: str = request.getfixturevalue("pg_server")
    name = f"phonehome_test_{os.getpid()}_{next(_COUNTER)}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return server.replace("/postgres?", f"/{name}?")


@pytest.fixture
def demo(tmp_path: Path) -> tuple[Path, Path]:
    profile = tmp_path / "phone.toml"
    profile.write_text(PROFILE, encoding="utf-8")
    capture = tmp_path / "factory.pcap"
    capture.write_bytes(factory_capture())
    return profile, capture


def run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = main(list(args), Env(stdout=out, stderr=err, progress=False))
    return status, out.getvalue(), err.getvalue()


def test_a_run_comes_back_as_it_was_written(db: str, demo: tuple[Path, Path]) -> None:
    profile, capture = demo
    result = audit([str(capture)], load_profile(profile), policy=load_policy("strict"))
    result.findings[0] = replace(result.findings[0], extra={"note": "kept"})
    with open_store(db) as store:
        first = store.save(result, started="2024-01-01T00:00:00+00:00", finished="2024-01-01T00:00:01+00:00")
        second = store.save(result, started="2024-01-02T00:00:00+00:00", finished="2024-01-02T00:00:01+00:00")
        assert second == first + 1
    with open_store(db) as store:  # reopened: the schema is found, not created again
        summaries = store.runs()
        stored = store.run(first)
    assert [s.id for s in summaries] == [first, second]
    summary = summaries[0]
    assert (summary.device, summary.policy, summary.verdict) == (
        result.profile.name,
        "strict",
        result.verdict,
    )
    assert (summary.inputs, summary.findings, summary.violations, summary.complete) == (1, 9, 9, True)
    assert stored.findings == tuple(result.findings)
    assert stored.findings[0].extra == {"note": "kept"}
    assert [type(getattr(stored.findings[0], n)) for n in ("encrypted", "time", "port")] == [bool, float, int]
    assert stored.inputs[0]["sha256"] == hashlib.sha256(capture.read_bytes()).hexdigest()
    assert stored.inputs[0]["format"] == "pcap" and stored.inputs[0]["bytes"] == capture.stat().st_size


def test_a_failed_write_leaves_no_half_run(db: str, demo: tuple[Path, Path]) -> None:
    profile, capture = demo
    result = audit([str(capture)], load_profile(profile))
    result.findings[5] = replace(result.findings[5], verdict="maybe")  # refused by the findings CHECK
    with open_store(db) as store:
        with pytest.raises(store.errors):
            store.save(result, started="s", finished="f")
        assert store.runs() == []
        result.findings[5] = replace(result.findings[5], verdict="violation")
        assert store.run(store.save(result, started="s", finished="f")).findings == tuple(result.findings)


def test_an_interrupted_audit_stores_nothing(db: str, demo: tuple[Path, Path], tmp_path: Path) -> None:
    """A HAR arriving through a pipe that never ends: the audit is interrupted mid-read by SIGINT."""
    profile, _capture = demo
    fifo = tmp_path / "slow.har"
    os.mkfifo(fifo)

    def writer() -> None:
        with open(fifo, "wb") as pipe:
            pipe.write(b'{"log": {"version": "1.2", "entries": [')
            pipe.flush()
            time.sleep(0.5)  # the reader is blocked waiting for the rest by now
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)

    # Python's own Ctrl-C handler, whatever this process inherited: a shell starts background jobs
    # with SIGINT ignored, and an ignored signal would leave the reader waiting on the pipe.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    thread = threading.Thread(target=writer)
    thread.start()
    try:
        status, out, err = run("audit", str(fifo), "--device", str(profile), "--store", db)
    finally:
        thread.join()
        signal.signal(signal.SIGINT, previous)
    assert status == ExitStatus.INTERRUPTED and "interrupted" in err and "INCOMPLETE" in out
    status, out, _ = run("history", "--store", db, "--format", "json")
    assert status == 0 and json.loads(out)["runs"] == []


def test_history_lists_runs_and_diff_names_them(db: str, demo: tuple[Path, Path], tmp_path: Path) -> None:
    profile, capture = demo
    other = tmp_path / "quiet.pcap"
    other.write_bytes(factory_capture()[:24])  # a valid pcap with no packets
    assert run("audit", str(capture), "--device", str(profile), "--store", db)[0] == ExitStatus.LEAKS
    status, _, err = run("audit", str(other), "--device", str(profile), "--store", db, "--policy", "strict")
    assert status == ExitStatus.CLEAN and "stored as run:2" in err
    status, out, _ = run("history", "--store", db, "--format", "json")
    runs = json.loads(out)["runs"]
    assert [(r["id"], r["findings"], r["violations"], r["policy"]) for r in runs] == [
        (1, 9, 9, None),
        (2, 0, 0, "strict"),
    ]
    assert runs[1]["verdict"] == "Nothing you declared left the phone."
    listing = tmp_path / "history.txt"
    status, _, _ = run("history", "--store", db, "-o", str(listing))
    out = listing.read_text()
    assert (
        status == 0
        and "run:1" in out
        and "run:2" in out
        and "Sent your IMEI, your phone number" in out
        and "Nothing you declared left the phone." in out
    )
    status, out, _ = run("diff", "run:1", "run:2", "--store", db, "--format", "json")
    doc = json.loads(out)
    assert status == ExitStatus.CLEAN and doc["started"] == [] and doc["persisted"] == []
    assert {c["identifier"] for c in doc["stopped"]} == {
        "imei",
        "phone",
        "carrier",
        "contact.phone",
        "message.peer",
    }
    status, _, err = run("diff", "run:1", "run:7", "--store", db)
    assert status == ExitStatus.BAD_INPUT and "no run 7" in err


def test_bad_store_locations_are_refused_at_start(tmp_path: Path, demo: tuple[Path, Path]) -> None:
    profile, capture = demo
    with pytest.raises(InputError, match="not a folder"):
        open_store(str(tmp_path))
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(InputError, match="cannot open history database"):
        open_store(str(junk))
    # Port 9 on loopback: nothing listens there. The password never appears in the message.
    status, out, err = run(
        "audit", str(capture), "--device", str(profile), "--store", "postgresql://u:secret@127.0.0.1:9/x"
    )
    assert status == ExitStatus.BAD_INPUT and out == ""
    assert "secret" not in err and "postgresql://u:***@127.0.0.1:9/x" in err and "cannot connect" in err
