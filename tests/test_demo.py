"""The demo tells the whole story: factory, updated, opted-in; verdicts, countries with sources, the diff."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import dpkt
import pytest

from phonehome.cli import Env, main
from phonehome.demo import RUNS, client_hello


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, str, Path]:
    out_dir = tmp_path_factory.mktemp("demo")
    out, err = io.StringIO(), io.StringIO()
    status = main(["demo", "--out", str(out_dir)], Env(stdout=out, stderr=err, progress=False))
    return status, out.getvalue(), out_dir


def _doc(out_dir: Path, name: str) -> Any:
    return json.loads((out_dir / f"{name}.json").read_text())


def test_the_three_verdicts(demo: tuple[int, str, Path]) -> None:
    status, out, out_dir = demo
    assert status == 0
    verdicts = {name: _doc(out_dir, name)["verdict"] for name in ("factory", "updated", "opted-in")}
    factory, updated, opted_in = verdicts["factory"], verdicts["updated"], verdicts["opted-in"]
    assert factory["violations"] == 9 and factory["policy"] is None
    assert factory["sentence"] == (
        "Sent your IMEI, your phone number, your carrier's name, a contact's phone number and the number of "
        "someone who texted you in clear text to Xiaomi (api.account.xiaomi.com) in China without consent."
    )
    assert updated["sentence"] == (
        "Sent your IMEI, your phone number and your carrier's name encrypted to Xiaomi "
        "(api.account.xiaomi.com) in Singapore without consent."
    )
    assert opted_in["violations"] == 0 and opted_in["policy"] == "consented-cloud"
    assert opted_in["sentence"].startswith("Sent your IMEI, your IMSI")
    assert opted_in["sentence"].endswith("in Singapore, as your policy allows.")
    for sentence in (factory["sentence"], updated["sentence"], opted_in["sentence"]):
        assert " ".join(sentence.split()) in " ".join(out.split())


def test_an_html_report_per_run_and_for_the_diff(demo: tuple[int, str, Path]) -> None:
    _status, _out, out_dir = demo
    for name in ("factory", "updated", "opted-in", "diff-factory-updated"):
        page = (out_dir / f"{name}.html").read_text(encoding="utf-8")
        assert page.startswith("<!DOCTYPE html>") and "Content-Security-Policy" in page
    assert "in China without consent" in (out_dir / "factory.html").read_text(encoding="utf-8")


def test_countries_with_their_sources(demo: tuple[int, str, Path]) -> None:
    _status, _out, out_dir = demo
    for name, country, transport in (
        ("factory", "CN", False),
        ("updated", "SG", True),
        ("opted-in", "SG", True),
    ):
        findings = _doc(out_dir, name)["findings"]
        assert findings
        for f in findings:
            assert f["country"] == country and f["country_source"], f
            assert f["encrypted"] is transport and f["owner"] == "Xiaomi"
    updated = _doc(out_dir, "updated")["findings"]
    assert {f["identifier"] for f in updated} == {"imei", "phone", "carrier"}


def test_the_diff_lists_contact_and_sms_numbers_as_stopped(demo: tuple[int, str, Path]) -> None:
    _status, out, out_dir = demo
    doc = json.loads((out_dir / "diff-factory-updated.json").read_text())
    assert {c["identifier"] for c in doc["stopped"]} == {"contact.phone", "message.peer"}
    assert {c["identifier"] for c in doc["persisted"]} == {"imei", "phone", "carrier"}
    assert "Stopped (2)" in out and "2 stopped, 0 started, 3 persisted." in out


def test_every_file_is_written(demo: tuple[int, str, Path]) -> None:
    _status, _out, out_dir = demo
    names = {p.name for p in out_dir.iterdir()}
    assert {"redmi-1s.toml", "diff-factory-updated.json"} <= names
    for demo_run in RUNS:
        assert f"{demo_run.name}.json" in names and f"{demo_run.name}.pcap" in names


def test_the_tcp_segments_acknowledge_only_with_ack_set(demo: tuple[int, str, Path]) -> None:
    _status, _out, out_dir = demo
    for demo_run in RUNS:
        with open(out_dir / f"{demo_run.name}.pcap", "rb") as fh:
            segments = [dpkt.ethernet.Ethernet(frame).data.data for _ts, frame in dpkt.pcap.Reader(fh)]
        tcp = [s for s in segments if isinstance(s, dpkt.tcp.TCP)]
        assert tcp and any(s.flags == dpkt.tcp.TH_SYN for s in tcp)
        assert all(s.ack == 0 for s in tcp if not s.flags & dpkt.tcp.TH_ACK)
        assert all(s.ack != 0 for s in tcp if s.flags & dpkt.tcp.TH_ACK)


def test_the_client_hello_is_well_formed() -> None:
    record = client_hello("api.account.xiaomi.com", b"seed")
    assert record[:3] == b"\x16\x03\x03" and int.from_bytes(record[3:5], "big") == len(record) - 5
    assert record[5] == 1 and int.from_bytes(record[6:9], "big") == len(record) - 9
    assert b"api.account.xiaomi.com" in record


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_the_updated_capture_opens_in_tshark(demo: tuple[int, str, Path]) -> None:
    _status, _out, out_dir = demo
    fields = subprocess.run(
        [
            "tshark",
            "-n",
            "-r",
            str(out_dir / "opted-in.pcap"),
            "-T",
            "fields",
            "-e",
            "tls.handshake.extensions_server_name",
            "-e",
            "ip.dst",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "api.account.xiaomi.com\t54.169.43.109" in fields
    assert "api.micloud.xiaomi.net\t54.169.43.110" in fields
