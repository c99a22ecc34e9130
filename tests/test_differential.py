"""Differential runs: a value XOR-ed with a constant and base64-encoded is found as derived from the IMEI."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import random
from pathlib import Path

import pytest

from phonehome.cli import Env, main
from phonehome.differential import Run, compare, explain
from phonehome.profile import parse_profile
from phonehome.sources import read_input

IMEI_A, IMEI_B = "865123456789019", "356938035643809"
ANDROID_A, ANDROID_B = "b9e28776354d259e", "0f3a5c7e9b1d2468"
KEY = bytes.fromhex("5a17c3e9a4") * 3  # a 15-byte key stream no encoding list knows

PROFILE = """\
[device]
name = "{name}"
[identifiers]
imei = "{imei}"
android_id = "{android}"
carrier = "airtel"
"""


def _har(path: Path, imei: str, android: str, seed: int) -> Path:
    rng = random.Random(seed)
    entries = []
    token = base64.b64encode(bytes(x ^ y for x, y in zip(imei.encode(), KEY, strict=True))).decode()
    sealed = hmac.new(b"vendor secret", imei.encode(), "sha256").hexdigest()[:24]
    for n in range(4):
        query = [
            ("t", token),  # the XOR-ed IMEI
            ("n", f"{rng.getrandbits(64):016x}"),  # a nonce, new on every request
            ("ts", str(1_700_000_000 + seed * 1000 + n * 7)),
            ("v", "2.1.0"),
            ("app", "com.example.app"),
        ]
        body = {"h": hashlib.sha256(android.encode()).hexdigest(), "s": sealed, "seq": n, "carrier": "airtel"}
        for url, post in (
            ("http://api.vendor.example/v1/ping?" + "&".join(f"{k}={v}" for k, v in query), None),
            ("http://stats.other.example/collect", json.dumps(body)),
        ):
            request: dict[str, object] = {
                "method": "POST" if post else "GET",
                "url": url,
                "httpVersion": "HTTP/1.1",
                "headers": [{"name": "User-Agent", "value": "okhttp/3.12"}],
                "queryString": [],
                "cookies": [],
                "headersSize": -1,
                "bodySize": -1,
            }
            if post:
                request["postData"] = {"mimeType": "application/json", "text": post}
            entries.append(
                {
                    "startedDateTime": f"2024-01-0{seed % 9 + 1}T10:00:{10 + n:02d}.000Z",
                    "time": 1,
                    "request": request,
                    "response": {
                        "status": 200,
                        "statusText": "OK",
                        "httpVersion": "HTTP/1.1",
                        "headers": [],
                        "cookies": [],
                        "content": {"size": 0, "mimeType": "text/plain"},
                        "redirectURL": "",
                        "headersSize": -1,
                        "bodySize": 0,
                    },
                    "cache": {},
                    "timings": {"send": 0, "wait": 1, "receive": 0},
                }
            )
    doc = {"log": {"version": "1.2", "creator": {"name": "test", "version": "1"}, "entries": entries}}
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


@pytest.fixture
def runs(tmp_path: Path) -> dict[str, Path]:
    files = {
        "har_a": _har(tmp_path / "a.har", IMEI_A, ANDROID_A, 1),
        "har_b": _har(tmp_path / "b.har", IMEI_B, ANDROID_B, 2),
        "dev_a": tmp_path / "a.toml",
        "dev_b": tmp_path / "b.toml",
    }
    files["dev_a"].write_text(
        PROFILE.format(name="phone A", imei=IMEI_A, android=ANDROID_A), encoding="utf-8"
    )
    files["dev_b"].write_text(
        PROFILE.format(name="phone B", imei=IMEI_B, android=ANDROID_B), encoding="utf-8"
    )
    return files


def _run(label: str, har: Path, profile: Path) -> Run:
    run = Run(label, parse_profile(profile.read_text(), str(profile)))
    run.exchanges = [e for e in read_input(har)[1] if not hasattr(e, "damage")]  # type: ignore[misc]
    return run


def test_xor_with_a_constant_in_base64_is_derived_from_the_imei(runs: dict[str, Path]) -> None:
    result = compare(_run("A", runs["har_a"], runs["dev_a"]), _run("B", runs["har_b"], runs["dev_b"]))
    assert set(result.differing) == {"imei", "android_id"}
    by_field = {d.field: d for d in result.derived}
    xored = by_field["query:t"]
    assert xored.identifiers == ("imei",)
    assert xored.relation == "xor constant 0x5a17c3e9a4, base64"
    assert xored.description == "an identifier derived from imei (xor constant 0x5a17c3e9a4, base64)"
    assert (xored.samples_a, xored.samples_b) == (4, 4)
    assert xored.value_a != xored.value_b
    assert by_field["body:h"].identifiers == ("android_id",) and by_field["body:h"].relation == "sha256, hex"
    # A keyed MAC of the IMEI no relation explains: still derived, from one of the values that changed.
    sealed = by_field["body:s"]
    assert sealed.relation is None and set(sealed.identifiers) == {"imei", "android_id"}
    # The nonce, the timestamp and the sequence number change within a run: noise, not identifiers.
    noisy = {name for _endpoint, name in result.noise}
    assert {"query:n", "query:ts", "body:seq"} <= noisy
    assert set(by_field) == {"query:t", "body:h", "body:s"}
    assert result.constant >= 4  # v, app, carrier, path segments


def test_explain_covers_digests_and_plain_values_and_refuses_coincidences() -> None:
    assert explain(f"x{IMEI_A}y", f"x{IMEI_B}y", "imei", IMEI_A, IMEI_B, None) == "contains it"
    md5_a, md5_b = (hashlib.md5(v.encode()).digest() for v in (IMEI_A, IMEI_B))
    assert (
        explain(
            base64.b64encode(md5_a).decode(), base64.b64encode(md5_b).decode(), "imei", IMEI_A, IMEI_B, None
        )
        == "md5, base64"
    )
    # Two unrelated random values of the right length are not an XOR of the IMEI with one key.
    assert explain("q" * 20, "r" * 20, "imei", IMEI_A, IMEI_B, None) is None


def test_command_line_text_and_json(runs: dict[str, Path]) -> None:
    out, err = io.StringIO(), io.StringIO()
    args = [
        "differential",
        str(runs["har_a"]),
        str(runs["har_b"]),
        "--device-a",
        str(runs["dev_a"]),
        "--device-b",
        str(runs["dev_b"]),
    ]
    assert main(args, Env(stdout=out, stderr=err, progress=False)) == 1
    assert "an identifier derived from imei (xor constant 0x5a17c3e9a4, base64)" in out.getvalue()
    out = io.StringIO()
    args = [
        "differential",
        "--a",
        str(runs["har_a"]),
        "--b",
        str(runs["har_b"]),
        "--device-a",
        str(runs["dev_a"]),
        "--device-b",
        str(runs["dev_b"]),
        "--format",
        "json",
    ]
    assert main(args, Env(stdout=out, stderr=err, progress=False)) == 1
    doc = json.loads(out.getvalue())
    assert doc["schema"] == "phonehome/differential/1"
    derived = {d["field"]: d for d in doc["derived"]}
    assert derived["query:t"]["identifiers"] == ["imei"]
    # Same profile on both sides: nothing tells identifiers apart, and the exit status says clean.
    out = io.StringIO()
    same = [
        "differential",
        str(runs["har_a"]),
        str(runs["har_a"]),
        "--device-a",
        str(runs["dev_a"]),
        "--device-b",
        str(runs["dev_a"]),
    ]
    assert main(same, Env(stdout=out, stderr=err, progress=False)) == 0
    bad = [
        "differential",
        str(runs["har_a"]),
        "--device-a",
        str(runs["dev_a"]),
        "--device-b",
        str(runs["dev_b"]),
    ]
    assert main(bad, Env(stdout=io.StringIO(), stderr=err, progress=False)) == 2
