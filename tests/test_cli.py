"""End to end through the command line, in-process: demo, audit, exit statuses, bad input, corpus."""

from __future__ import annotations

import io
import ipaddress
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from factories import CORPUS, NO_CORPUS
from phonehome.attribute.geo import find_mmdb
from phonehome.cli import Env, ExitStatus, main
from phonehome.demo import factory_capture

PROFILE = """\
[device]
name = "test phone"
region = "IN"
[identifiers]
imei = "865123456789019"
phone = "+919876543210"
carrier = "airtel"
android_id = "b9e28776354d259e"
"""


def run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = main(list(args), Env(stdout=out, stderr=err, progress=False))
    return status, out.getvalue(), err.getvalue()


@pytest.fixture
def profile(tmp_path: Path) -> Path:
    path = tmp_path / "phone.toml"
    path.write_text(PROFILE, encoding="utf-8")
    return path


def test_demo_shows_the_redmi_findings(tmp_path: Path) -> None:
    status, out, _err = run("demo", "--out", str(tmp_path))
    assert status == 0
    assert "reconstruction" in out
    doc = json.loads((tmp_path / "factory.json").read_text())
    assert doc["schema"] == "phonehome/findings/1"
    seen = {f["identifier"] for f in doc["findings"]}
    assert {"imei", "phone", "carrier", "contact.phone", "message.peer"} <= seen
    for f in doc["findings"]:
        assert f["host"] == "api.account.xiaomi.com"
        assert ipaddress.ip_address(f["ip"]) in ipaddress.ip_network("42.62.48.0/24")
        assert f["country"] == "CN" and f["country_source"]
        assert f["encrypted"] is False and f["transport"] == "tcp"
        assert f["url"].startswith("http://api.account.xiaomi.com/")
        assert "«" in f["evidence"]


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_demo_capture_opens_in_tshark(tmp_path: Path) -> None:
    pcap = tmp_path / "demo.pcap"
    pcap.write_bytes(factory_capture())
    out = subprocess.run(
        ["tshark", "-n", "-r", str(pcap), "-T", "fields", "-e", "http.host", "-e", "dns.qry.name"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "api.account.xiaomi.com" in out
    assert out.count("api.account.xiaomi.com") >= 4  # DNS query and answer, three requests


def test_json_document_and_exit_status_for_leaks(tmp_path: Path, profile: Path) -> None:
    pcap = tmp_path / "c.pcap"
    pcap.write_bytes(factory_capture())
    status, out, _ = run("audit", str(pcap), "--device", str(profile), "--format", "json")
    assert status == ExitStatus.LEAKS
    doc = json.loads(out)
    assert set(doc) >= {"schema", "inputs", "findings", "warnings"}
    assert doc["inputs"][0]["format"] == "pcap"
    required = {
        "identifier",
        "category",
        "encoding",
        "where",
        "host",
        "ip",
        "port",
        "url",
        "country",
        "transport",
        "encrypted",
        "time",
        "flow",
        "evidence",
    }
    assert all(required <= set(f) for f in doc["findings"])
    encodings = {(f["identifier"], f["encoding"], f["where"]) for f in doc["findings"]}
    assert ("imei", "md5", "body") in encodings
    assert ("phone", "url", "body") in encodings
    assert ("carrier", "plain", "query") in encodings


def test_an_audit_without_key_logs_compression_or_tracker_lists_imports_none_of_their_libraries(
    tmp_path: Path, profile: Path
) -> None:
    # cryptography (TLS and QUIC decryption), regex (Exodus signatures), brotli and zstandard
    # (bodies in those codings) cost about 40 ms of start-up together: only runs that need them
    # import them.
    pcap = tmp_path / "c.pcap"
    pcap.write_bytes(factory_capture())
    script = (
        "import sys\n"
        "from phonehome.cli import main\n"
        f"status = main(['audit', {str(pcap)!r}, '--device', {str(profile)!r}, '--format', 'json', "
        f"'-o', {str(tmp_path / 'out.json')!r}, '--no-progress'])\n"
        "libraries = ('cryptography', 'regex', 'brotli', 'zstandard')\n"
        "print(status, sorted(m for m in libraries if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.split() == [str(int(ExitStatus.LEAKS)), "[]"]
    assert json.loads((tmp_path / "out.json").read_text())["findings"]


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_broken_geolocation_database_found_on_the_machine_is_skipped_with_a_warning(
    tmp_path: Path, profile: Path, monkeypatch: pytest.MonkeyPatch, jobs: str
) -> None:
    home = tmp_path / "home"
    broken = home / ".local" / "share" / "GeoIP" / "GeoLite2-Country.mmdb"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"not a MaxMind database")
    monkeypatch.setenv("HOME", str(home))
    if find_mmdb() != str(broken):
        pytest.skip("this machine has a geolocation database of its own, found first")
    pcap = tmp_path / "c.pcap"
    pcap.write_bytes(factory_capture())
    status, out, _ = run(
        "audit", str(pcap), str(pcap), "--device", str(profile), "--format", "json", "-j", jobs
    )
    assert status == ExitStatus.LEAKS
    doc = json.loads(out)
    (warning,) = [w for w in doc["warnings"] if w["source"] == str(broken)]
    assert warning["message"].startswith(
        "geolocation database skipped, countries come from the bundled tables"
    )
    assert {f["country_source"].split()[0] for f in doc["findings"]} <= {"geolite2", "registry", "private"}


def test_clean_capture_exits_zero(tmp_path: Path) -> None:
    pcap = tmp_path / "c.pcap"
    pcap.write_bytes(factory_capture())
    other = tmp_path / "other.toml"
    other.write_text('[identifiers]\nimei = "356938035643809"\ncarrier = "vodafone"\n', encoding="utf-8")
    status, out, _ = run("audit", str(pcap), "--device", str(other))
    assert status == ExitStatus.CLEAN
    assert "No declared identifier" in out


def test_text_output_is_grouped_by_destination(tmp_path: Path, profile: Path) -> None:
    pcap = tmp_path / "c.pcap"
    pcap.write_bytes(factory_capture())
    report = tmp_path / "report.txt"
    status, _, _ = run("audit", str(pcap), "--device", str(profile), "-o", str(report))
    text = report.read_text()
    assert status == 1
    assert "api.account.xiaomi.com (42.62.48.171, CN, cleartext)" in text
    assert "imei" in text and "md5" in text


def test_bad_profile_names_file_line_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[device]\nname = "x"\n[identifiers]\nimei = "865123456789012"\n', encoding="utf-8")
    pcap = tmp_path / "c.pcap"
    pcap.write_bytes(factory_capture())
    status, out, err = run("audit", str(pcap), "--device", str(bad))
    assert status == ExitStatus.BAD_INPUT
    assert out == ""
    assert str(bad) in err and "line 4" in err and "imei" in err
    assert err.count("\n") == 1


def test_truncated_capture_gives_one_line_and_the_findings_before_the_cut(
    tmp_path: Path, profile: Path
) -> None:
    data = factory_capture()
    cut = data.index(b"/mipush/event") + 20  # inside the last request's packet
    record = 24  # the pcap record the cut falls in: walk the record headers
    while record + 16 + int.from_bytes(data[record + 8 : record + 12], "little") <= cut:
        record += 16 + int.from_bytes(data[record + 8 : record + 12], "little")
    pcap = tmp_path / "cut.pcap"
    pcap.write_bytes(data[:cut])
    status, out, err = run("audit", str(pcap), "--device", str(profile), "--format", "json")
    assert status == ExitStatus.BAD_INPUT
    doc = json.loads(out)
    assert {"imei", "phone", "carrier"} <= {f["identifier"] for f in doc["findings"]}
    assert err.count("\n") == 1 and err.startswith(f"phonehome: {pcap}, offset ")
    assert "truncated record" in err
    assert f"offset {record}:" in err
    assert doc["inputs"][0]["error"] in err


def test_not_a_capture_is_refused_by_content(tmp_path: Path, profile: Path) -> None:
    junk = tmp_path / "capture.pcap"
    junk.write_bytes(b"this is not a capture at all\n" * 10)
    status, _, err = run("audit", str(junk), "--device", str(profile))
    assert status == ExitStatus.BAD_INPUT
    assert str(junk) in err and "offset 0" in err


def test_usage_error_is_status_2() -> None:
    status, _, err = run("audit")
    assert status == ExitStatus.BAD_INPUT
    assert "required" in err or "arguments" in err


CAPTURES = sorted(
    p for p in CORPUS.rglob("*") if p.is_file() and p.suffix in {".pcap", ".pcapng", ".har", ".mitm"}
)


@pytest.mark.skipif(not CORPUS.exists(), reason=NO_CORPUS)
@pytest.mark.parametrize("capture", CAPTURES, ids=lambda p: str(p.relative_to(CORPUS)))
def test_every_corpus_capture_is_read_without_a_crash(capture: Path, profile: Path) -> None:
    status, out, err = run("audit", str(capture), "--device", str(profile), "--format", "json")
    assert status in (0, 1, 2)
    assert "Traceback" not in err
    if capture.suffix in {".pcap", ".pcapng", ".har"}:
        doc = json.loads(out)
        assert doc["inputs"][0]["format"] in {"pcap", "pcapng", "har"}
    else:
        assert err.count("\n") <= 1


@pytest.mark.skipif(not CORPUS.exists(), reason=NO_CORPUS)
def test_made_up_identifiers_find_nothing_in_any_real_capture(tmp_path: Path) -> None:
    """Look-alikes of every shape, against all real traffic: a detector that invents leaks fails here."""
    fake = tmp_path / "fake.toml"
    fake.write_text(
        """[device]
region = "US"
[identifiers]
imei = "356938035643809"
imsi = "310150123456789"
phone = "+12025550143"
android_id = "9f3b2c1d4e5a6b7c"
advertising_id = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"
wifi_mac = "3c:22:fb:10:20:30"
carrier = "Verizon Wireless"
email = "nobody.here@example.net"
""",
        encoding="utf-8",
    )
    paths = [str(p) for p in CAPTURES if p.suffix in {".pcap", ".pcapng", ".har"}]
    status, out, _ = run("audit", *paths, "--device", str(fake), "--format", "json")
    doc = json.loads(out)
    assert doc["findings"] == []
    assert status in (0, 2)  # 2 only because the fuzzed captures are damaged


@pytest.mark.skipif(not CORPUS.exists(), reason=NO_CORPUS)
def test_real_device_id_in_a_real_capture(tmp_path: Path) -> None:
    """ocs.pcap: a real Android app sends a device id to its analytics SDK in a query."""
    prof = tmp_path / "ocs.toml"
    prof.write_text('[identifiers]\ndevice_id = "f2c993d6218f5e22fe284b2e90c82f3b"\n', encoding="utf-8")
    status, out, _ = run(
        "audit", str(CORPUS / "pcap/ndpi/ocs.pcap"), "--device", str(prof), "--format", "json"
    )
    doc = json.loads(out)
    assert status == 1
    hits = {(f["host"], f["where"], f["encoding"]) for f in doc["findings"]}
    assert ("api.eu01.capptain.com", "query", "plain") in hits


@pytest.mark.skipif(not CORPUS.exists(), reason=NO_CORPUS)
def test_real_android_requests_carrying_the_advertising_id(tmp_path: Path) -> None:
    """NoMoAds: real requests of Android 7.1 apps. Exactly those carrying the ad ID are found."""
    entries, carrying = [], 0
    ad_id = "7263697a-cb1e-4c6f-a641-c2bfe1683295"
    for name in ("test_even.json", "test_uneven.json"):
        for req in json.loads((CORPUS / "json/nomoads" / name).read_text()).values():
            scheme = "https" if req["dst_port"] == 443 else "http"
            entries.append(
                {
                    "startedDateTime": "2019-02-21T18:01:04.258Z",
                    "serverIPAddress": req["dst_ip"],
                    "request": {
                        "method": req["method"],
                        "url": f"{scheme}://{req['host']}{req['uri']}",
                        "headers": [{"name": k, "value": v} for k, v in req["headers"].items()],
                    },
                }
            )
            carrying += ad_id in req["uri"]
    har = tmp_path / "nomoads.har"
    har.write_text(json.dumps({"log": {"version": "1.2", "entries": entries}}), encoding="utf-8")
    prof = tmp_path / "nexus6.toml"
    prof.write_text(f'[identifiers]\nadvertising_id = "{ad_id}"\n', encoding="utf-8")
    status, out, _ = run("audit", str(har), "--device", str(prof), "--format", "json")
    doc = json.loads(out)
    assert status == 1 and carrying == 4
    assert len({f["flow"] for f in doc["findings"]}) == carrying
    assert {f["where"] for f in doc["findings"]} == {"query"}
    assert {f["host"] for f in doc["findings"]} <= {
        "publisher-config.unityads.unity3d.com",
        "auction.unityads.unity3d.com",
    }


def test_fallback_engine_gives_the_same_findings(tmp_path: Path, profile: Path) -> None:
    pcap = tmp_path / "c.pcap"
    pcap.write_bytes(factory_capture())
    docs = []
    for engine in ("auto", "aho-corasick"):
        _, out, _ = run("audit", str(pcap), "--device", str(profile), "--format", "json", "--engine", engine)
        doc = json.loads(out)
        docs.append(
            sorted((f["identifier"], f["encoding"], f["where"], f["evidence"]) for f in doc["findings"])
        )
    assert docs[0] == docs[1] and docs[0]


def test_help_returns_instead_of_exiting(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"], Env(stdout=io.StringIO(), stderr=io.StringIO())) == 0
    assert "audit" in capsys.readouterr().out


def test_bad_keylog_fails_before_any_capture_naming_file_and_line(tmp_path: Path, profile: Path) -> None:
    keylog = tmp_path / "keys.log"
    keylog.write_text("# keys\nCLIENT_RANDOM 00 11\n", encoding="utf-8")
    absent = str(tmp_path / "absent.pcap")
    status, out, err = run("audit", absent, "--device", str(profile), "--keylog", str(keylog))
    assert status == ExitStatus.BAD_INPUT
    assert out == ""
    assert str(keylog) in err and "line 2" in err


@pytest.mark.skipif(not CORPUS.is_dir(), reason=NO_CORPUS)
def test_keylog_decrypts_and_findings_say_tls(tmp_path: Path) -> None:
    device = tmp_path / "ping.toml"
    device.write_text('[device]\nname = "p"\n[identifiers]\ncarrier = "ping"\n', encoding="utf-8")
    folder = CORPUS / "tls"
    pcap, keylog = folder / "tls12-illustrated.pcap", folder / "tls12-illustrated.keylog"
    status, out, _err = run("audit", str(pcap), "--device", str(device), "--format", "json")
    assert status == ExitStatus.CLEAN and json.loads(out)["findings"] == []
    status, out, _err = run(
        "audit", str(pcap), "--device", str(device), "--format", "json", "--keylog", str(keylog)
    )
    assert status == ExitStatus.LEAKS
    (finding,) = json.loads(out)["findings"]
    assert finding["encrypted"] is True
    assert finding["tls_version"] == "TLS 1.2"
    assert finding["tls_cipher"] == "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"


def test_the_collector_is_set_aside_during_an_audit_and_restored_after() -> None:
    import gc

    from phonehome.commands.audit import few_collections

    before = gc.get_threshold()
    kept = [object() for _ in range(10)]  # noqa: F841 - alive while frozen
    started: list[int] = []

    def record(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started.append(info["generation"])

    with few_collections():
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold()[0] == 100_000
        made = [[i] for i in range(50_000)]  # an audit's objects, young when it ends
        gc.callbacks.append(record)
    try:
        # The way out starts no collection of them, though the threshold is 700 again.
        assert started == []
    finally:
        gc.callbacks.remove(record)
    assert len(made) == 50_000
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
