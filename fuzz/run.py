"""Run the fuzz targets of :mod:`targets` for a bounded time each, and keep what they find.

    python fuzz/run.py [TARGET...] --seconds N      fuzz each target (all by default) for N seconds
    python fuzz/run.py --replay [TARGET...]         re-run every saved crash: which still fail
    python fuzz/run.py --summary                    totals of every run so far, per target

Each target runs in its own worker process: coverage-guided under atheris (libFuzzer) when it is
installed, otherwise a mutational loop seeded from the same corpus (byte flips, insertions,
deletions, truncations, splices, absurd length fields). A hang (over ``--timeout`` seconds on one
input) or memory growth past ``--rss-mb`` counts as a crash, as does any exception other than
``InputError``. A crashing input is saved to ``fuzz/crashes/<target>/`` with the place it failed
(``signatures.json``); the worker is restarted and fuzzing goes on until the time is spent.
Every run appends its totals to ``fuzz/runs.jsonl``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import re
import resource
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

from targets import TARGETS, Target, seeds  # noqa: E402

from phonehome.errors import InputError  # noqa: E402

CRASHES = HERE / "crashes"
WORK = HERE / "corpus"  # the growing corpus of each target (seeds plus what the fuzzer keeps)
RUNS = HERE / "runs.jsonl"
_SIGNATURE = "last-signature.json"


class Hang(Exception):
    """One input ran past the per-input time limit."""


def signature(exc: BaseException) -> dict[str, str]:
    """Where an exception came from: its type and the deepest frame inside phonehome."""
    # The runner's own frames (the alarm handler of a hang) say nothing about where the target was.
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename != __file__]
    inside = [f for f in frames if "/phonehome/" in f.filename] or frames
    last = inside[-1] if inside else None
    where = f"{Path(last.filename).name}:{last.lineno} in {last.name}" if last else "?"
    return {"key": f"{type(exc).__name__} at {where}", "message": str(exc)[:300]}


def _guarded(run: Callable[[bytes], None]) -> Callable[[bytes], None]:
    def one_input(data: bytes) -> None:
        with contextlib.suppress(InputError):
            run(data)

    return one_input


# ---- workers (one process per target run) -------------------------------------------------------------


def _worker_atheris(name: str, seconds: int, args: argparse.Namespace) -> int:
    import pkgutil

    import atheris  # type: ignore[import-not-found]

    with atheris.instrument_imports(include=["phonehome"]):
        import phonehome

        for module in pkgutil.walk_packages(phonehome.__path__, "phonehome."):
            __import__(module.name)
    target = TARGETS[name]
    one = _guarded(target.run)
    crash_dir = CRASHES / name

    def test_one_input(data: bytes) -> None:
        try:
            one(data)
        except BaseException as exc:
            (crash_dir / _SIGNATURE).write_text(json.dumps(signature(exc)))
            raise

    argv = [
        sys.argv[0],
        f"-max_total_time={seconds}",
        f"-timeout={args.timeout}",
        f"-rss_limit_mb={args.rss_mb}",
        f"-max_len={target.max_len}",
        f"-artifact_prefix={crash_dir}/",
        "-print_final_stats=1",
        str(WORK / name),
    ]
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()
    return 0


_ABSURD = (
    b"\xff\xff\xff\xff",
    b"\x7f\xff\xff\xff",
    b"\x80\x00\x00\x00",
    b"\x00\x00\x00\x00",
    b"\xff\xff",
    b"\x00\x00",
    b"\xff",
    b"999999999999",
    b"-1",
    b"\r\n",
    b"%",
    b"\\u",
    b"[" * 64,
)


def _mutate(rng: random.Random, data: bytes, pool: list[bytes], max_len: int) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        op = rng.randrange(7)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf:  # flip one bit
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1:  # insert random bytes
            buf[pos:pos] = rng.randbytes(rng.randint(1, 8))
        elif op == 2 and buf:  # delete a run
            del buf[pos : pos + rng.randint(1, 32)]
        elif op == 3:  # truncate
            del buf[pos:]
        elif op == 4:  # overwrite with an absurd value (length fields, counts)
            value = rng.choice(_ABSURD)
            buf[pos : pos + len(value)] = value
        elif op == 5 and pool:  # splice in a piece of another input
            other = rng.choice(pool)
            start = rng.randrange(len(other) + 1)
            buf[pos:pos] = other[start : start + rng.randint(1, 256)]
        elif op == 6 and buf:  # duplicate a run
            start = rng.randrange(len(buf))
            buf[pos:pos] = buf[start : start + rng.randint(1, 64)]
    return bytes(buf[:max_len])


def _worker_mutate(name: str, seconds: int, args: argparse.Namespace) -> int:
    limit = args.rss_mb << 20
    resource.setrlimit(resource.RLIMIT_AS, (limit * 2, limit * 2))  # address space, not RSS: headroom

    def alarm(_signum: int, _frame: object) -> None:
        raise Hang(f"one input ran over {args.timeout} s")

    signal.signal(signal.SIGALRM, alarm)
    target = TARGETS[name]
    one = _guarded(target.run)
    pool = [p.read_bytes() for p in sorted((WORK / name).iterdir()) if p.is_file()] or [b""]
    rng = random.Random(args.seed if args.seed is not None else os.getpid())
    deadline = time.monotonic() + seconds
    runs = 0
    for data in pool:  # every seed once, unmutated
        runs += _one(name, one, data, args.timeout)
    while time.monotonic() < deadline:
        data = _mutate(rng, rng.choice(pool), pool, target.max_len)
        runs += _one(name, one, data, args.timeout)
        if runs % 5000 == 0:
            print(f"#{runs}\tpulse", flush=True)
    print(f"stat::number_of_executed_units: {runs}", flush=True)
    return 0


def _one(name: str, one: Callable[[bytes], None], data: bytes, timeout: int) -> int:
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        one(data)
    except BaseException as exc:
        signal.setitimer(signal.ITIMER_REAL, 0)
        if isinstance(exc, KeyboardInterrupt):
            raise
        sig = signature(exc)
        if sig["key"] not in _known(name):  # one saved input per place of failure
            path = CRASHES / name / f"crash-{hashlib.sha1(data).hexdigest()}"
            path.write_bytes(data)
            _record_crash(name, path, sig)
            print(f"Test unit written to {path} new", flush=True)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    return 1


# ---- the runner ---------------------------------------------------------------------------------------


def _known(name: str) -> dict[str, dict[str, str]]:
    path = CRASHES / name / "signatures.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _record_crash(name: str, artifact: Path, sig: dict[str, str] | None = None) -> bool:
    """File ``artifact`` under its signature; True when the signature is new."""
    sig_path = CRASHES / name / _SIGNATURE
    if sig is not None:
        pass
    elif artifact.name.startswith(("timeout-", "slow-unit-")):
        sig = {"key": "hang (over the per-input time limit)", "message": ""}
    elif artifact.name.startswith("oom-"):
        sig = {"key": "memory over the limit", "message": ""}
    elif sig_path.exists():
        sig = json.loads(sig_path.read_text())
        sig_path.unlink()
    else:
        sig = {"key": "crash without a Python exception", "message": ""}
    known = _known(name)
    new = sig["key"] not in known
    if new:
        known[sig["key"]] = {"artifact": artifact.name, "message": sig["message"]}
        (CRASHES / name / "signatures.json").write_text(json.dumps(known, indent=1) + "\n")
    return new


def _prepare(name: str, target: Target) -> int:
    work = WORK / name
    work.mkdir(parents=True, exist_ok=True)
    (CRASHES / name).mkdir(parents=True, exist_ok=True)
    count = 0
    for data in seeds(target):
        path = work / hashlib.sha1(data).hexdigest()
        if not path.exists():
            path.write_bytes(data)
        count += 1
    return count


def _engine(choice: str) -> str:
    if choice != "auto":
        return choice
    try:
        import atheris  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        return "mutate"
    return "atheris"


def fuzz_target(name: str, seconds: int, args: argparse.Namespace) -> dict[str, object]:
    target = TARGETS[name]
    nseeds = _prepare(name, target)
    engine = _engine(args.engine)
    started = time.monotonic()
    deadline = started + seconds
    execs = 0
    found: list[str] = []
    restarts = 0
    while True:
        left = int(deadline - time.monotonic())
        if left < 2:
            break
        cmd = [sys.executable, __file__, "--worker", name, "--seconds", str(left), "--engine", engine]
        cmd += ["--timeout", str(args.timeout), "--rss-mb", str(args.rss_mb)]
        if args.seed is not None:
            cmd += ["--seed", str(args.seed + restarts)]
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
        )
        last_count = 0
        final: int | None = None
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                if m := re.match(r"#(\d+)\s", line):
                    last_count = int(m.group(1))
                elif m := re.match(r"stat::number_of_executed_units:\s*(\d+)", line):
                    final = int(m.group(1))
                elif m := re.search(r"Test unit written to (\S+)( new)?", line):
                    artifact = Path(m.group(1))
                    new = bool(m.group(2)) if engine != "atheris" else _record_crash(name, artifact)
                    if new:
                        found.append(_last_key(name, artifact))
                    if args.verbose:
                        print(f"  {name}: crash saved to {artifact}", flush=True)
                elif args.verbose and ("Uncaught Python exception" in line or "Error" in line):
                    print(f"  {name}: {line.rstrip()}", flush=True)
        finally:
            proc.wait()
        execs += final if final is not None else last_count
        restarts += 1
        if proc.returncode == 0:
            break
    elapsed = time.monotonic() - started
    unique = sorted(set(found))
    record = {
        "target": name,
        "engine": engine,
        "seconds": round(elapsed, 1),
        "executions": execs,
        "seeds": nseeds,
        "crashes": unique,
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    with RUNS.open("a") as fh:
        fh.write(json.dumps(record) + "\n")
    return record


def _last_key(name: str, artifact: Path) -> str:
    for key, info in _known(name).items():
        if info["artifact"] == artifact.name:
            return key
    return f"(known) {artifact.name}"


def replay(names: list[str]) -> int:
    """Re-run every saved crash of ``names``; 1 if any still fails."""
    failing = 0
    for name in names:
        one = _guarded(TARGETS[name].run)
        for key, info in _known(name).items():
            data = (CRASHES / name / info["artifact"]).read_bytes()
            try:
                one(data)
                state = "fixed"
            except BaseException as exc:
                state = f"FAILS: {signature(exc)['key']}"
                failing += 1
            print(f"{name:12} {state:40} {key}")
    return 1 if failing else 0


def summary() -> int:
    totals: dict[str, dict[str, float]] = {}
    crashes: dict[str, set[str]] = {}
    if RUNS.exists():
        for line in RUNS.read_text().splitlines():
            run = json.loads(line)
            t = totals.setdefault(run["target"], {"seconds": 0.0, "executions": 0, "runs": 0})
            t["seconds"] += run["seconds"]
            t["executions"] += run["executions"]
            t["runs"] += 1
            crashes.setdefault(run["target"], set()).update(run["crashes"])
    print(f"{'target':12} {'seconds':>8} {'executions':>11} {'runs':>5} {'crashes':>8}")
    for name in TARGETS:
        t = totals.get(name, {"seconds": 0, "executions": 0, "runs": 0})
        known = len(_known(name))
        print(f"{name:12} {t['seconds']:8.0f} {t['executions']:11.0f} {t['runs']:5.0f} {known:8}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("targets", nargs="*", metavar="TARGET", help=f"default: all of {', '.join(TARGETS)}")
    p.add_argument("--seconds", type=int, default=60, help="fuzzing time per target (default 60)")
    p.add_argument("--engine", choices=("auto", "atheris", "mutate"), default="auto")
    p.add_argument("--timeout", type=int, default=10, help="seconds one input may take (default 10)")
    p.add_argument("--rss-mb", type=int, default=2048, help="memory one worker may use (default 2048)")
    p.add_argument("--seed", type=int, help="random seed of the mutational engine")
    p.add_argument("--replay", action="store_true", help="re-run the saved crashes instead of fuzzing")
    p.add_argument("--summary", action="store_true", help="print the totals of every run so far")
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("--worker", metavar="TARGET", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    unknown = [t for t in args.targets if t not in TARGETS]
    if unknown:
        p.error(f"unknown target(s) {', '.join(unknown)}; known: {', '.join(TARGETS)}")
    names = args.targets or list(TARGETS)
    if args.worker:
        worker = _worker_atheris if args.engine == "atheris" else _worker_mutate
        return worker(args.worker, args.seconds, args)
    if args.summary:
        return summary()
    if args.replay:
        return replay(names)
    failed = False
    for name in names:
        record = fuzz_target(name, args.seconds, args)
        crashes = record["crashes"]
        failed = failed or bool(crashes)
        print(
            f"{name:12} {record['engine']:8} {record['seconds']:7.0f} s {record['executions']:10} execs "
            f"{len(crashes)} new crash(es)" + "".join(f"\n    {c}" for c in crashes),  # type: ignore[arg-type]
            flush=True,
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
