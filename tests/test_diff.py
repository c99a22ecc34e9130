"""Run-to-run diff: sides from findings JSON, captures or stored runs; grouped by identifier and host."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from phonehome.cli import Env, ExitStatus, main
from phonehome.demo import audit_runs, write_run
from phonehome.diff import Side, diff, finding_from_dict, leak_key, load_side
from phonehome.errors import InputError
from phonehome.report.json_report import finding_dict


def run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = main(list(args), Env(stdout=out, stderr=err, progress=False))
    return status, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's three runs, audited once: profile, captures and findings JSON in one folder."""
    out = tmp_path_factory.mktemp("story")
    _profile, _captures, results = audit_runs(out)
    for name, result in results.items():
        write_run(out, name, result)
    return out


def _ids(changes: list[dict[str, object]]) -> set[object]:
    return {c["identifier"] for c in changes}


def test_factory_to_updated_from_findings_json(story: Path) -> None:
    status, out, _ = run("diff", str(story / "factory.json"), str(story / "updated.json"), "--format", "json")
    doc = json.loads(out)
    assert status == ExitStatus.LEAKS  # the updated phone still sends without consent
    assert doc["schema"] == "phonehome/diff/1"
    assert _ids(doc["stopped"]) == {"contact.phone", "message.peer"}
    assert doc["started"] == []
    assert _ids(doc["persisted"]) == {"imei", "phone", "carrier"}
    for change in doc["stopped"] + doc["persisted"]:
        assert {"identifier", "host", "country", "encoding", "verdict"} <= set(change)
        assert change["host"] == "api.account.xiaomi.com"
    imei = next(c for c in doc["persisted"] if c["identifier"] == "imei")
    assert (imei["before"]["country"], imei["before"]["encrypted"]) == ("CN", False)
    assert (imei["after"]["country"], imei["after"]["encrypted"], imei["country"]) == ("SG", True, "SG")
    assert imei["before"]["encoding"] == imei["after"]["encoding"] == "md5, plain"
    assert doc["before"]["verdict"].endswith("in China without consent.")


def test_captures_on_one_side_give_the_same_diff(story: Path) -> None:
    after = f"{story / 'updated.pcap'},{story / 'updated.har'}"
    profile = str(story / "redmi-1s.toml")
    _, from_json, _ = run(
        "diff", str(story / "factory.json"), str(story / "updated.json"), "--format", "json"
    )
    status, from_captures, _ = run(
        "diff", str(story / "factory.json"), after, "--device", profile, "--format", "json"
    )
    assert status == ExitStatus.LEAKS
    a, b = json.loads(from_json), json.loads(from_captures)
    assert a["stopped"] == b["stopped"] and a["persisted"] == b["persisted"] and a["started"] == b["started"]
    status, _, err = run("diff", str(story / "factory.json"), after)
    assert status == ExitStatus.BAD_INPUT and "needs --device" in err


def test_opt_in_started_the_cloud_and_a_policy_rejudges_both_sides(story: Path) -> None:
    status, out, _ = run(
        "diff", str(story / "updated.json"), str(story / "opted-in.json"), "--format", "json"
    )
    doc = json.loads(out)
    assert status == ExitStatus.CLEAN  # the opted-in run was judged by consented-cloud
    assert {(c["identifier"], c["host"]) for c in doc["started"]} == {
        ("imei", "api.micloud.xiaomi.net"),
        ("imsi", "api.micloud.xiaomi.net"),
        ("phone", "api.micloud.xiaomi.net"),
    }
    changed = {c["identifier"]: (c["before"]["verdict"], c["after"]["verdict"]) for c in doc["persisted"]}
    assert changed == {k: ("violation", "allowed") for k in ("imei", "phone", "carrier")}
    status, out, _ = run(
        "diff",
        str(story / "updated.json"),
        str(story / "opted-in.json"),
        "--policy",
        "strict",
        "--format",
        "json",
    )
    doc = json.loads(out)
    assert status == ExitStatus.LEAKS
    assert {c["verdict"] for c in doc["started"] + doc["persisted"]} == {"violation"}


def test_text_report_lists_the_three_groups(story: Path, tmp_path: Path) -> None:
    report = tmp_path / "diff.txt"
    run("diff", str(story / "factory.json"), str(story / "updated.json"), "-o", str(report))
    text = report.read_text()
    assert "Stopped (2)" in text and "Started (0)" in text and "Persisted (3)" in text
    assert "plain, cleartext, CN, violation" in text and "2 stopped, 0 started, 3 persisted." in text


def test_html_report_shows_the_groups_and_redacts_with_the_profile(story: Path, tmp_path: Path) -> None:
    page = tmp_path / "diff.html"
    args = ["diff", str(story / "factory.json"), str(story / "updated.json"), "--format", "html"]
    status, _out, _err = run(*args, "-o", str(page))
    assert status == ExitStatus.LEAKS
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>") and "Stopped" in text and "Persisted" in text
    assert "865123456789019" in text or "contact.phone" in text
    status, _out, _err = run(*args, "--redact", "--device", str(story / "redmi-1s.toml"), "-o", str(page))
    assert status == ExitStatus.LEAKS
    assert "865123456789019" not in page.read_text()
    status, _out, err = run("diff", str(story / "factory.json"), str(story / "updated.json"), "--redact")
    assert status == ExitStatus.BAD_INPUT and "--format html" in err


def test_identity_is_identifier_and_host_and_order_does_not_matter(story: Path) -> None:
    doc = json.loads((story / "factory.json").read_text())
    found = tuple(finding_from_dict(f, "x", "f") for f in doc["findings"])
    forward = diff(Side("a", found), Side("b", found[::-1]))
    assert forward.stopped == forward.started == ()
    assert len(forward.persisted) == len({leak_key(f) for f in found}) == 5
    assert [finding_dict(f) for f in found] == doc["findings"]  # the JSON round-trips


@pytest.mark.parametrize(
    ("edit", "key", "message"),
    [
        (lambda d: d.update(schema="other/1"), "schema", "not a phonehome findings document"),
        (lambda d: d.update(findings={}), "findings", "must be a list"),
        (lambda d: d["findings"][1].pop("identifier"), "findings[1]", "no 'identifier'"),
        (lambda d: d["findings"][2].update(port="80"), "findings[2].port", "wrong type"),
        (lambda d: d["findings"][0].update(encrypted=1), "findings[0].encrypted", "wrong type"),
        (lambda d: d["findings"][0].update(verdict="ok"), "findings[0].verdict", "'allowed' or 'violation'"),
    ],
)
def test_a_broken_findings_document_names_the_key(
    story: Path, tmp_path: Path, edit: Callable[[dict[str, Any]], object], key: str, message: str
) -> None:
    doc = json.loads((story / "factory.json").read_text())
    edit(doc)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(InputError) as caught:
        load_side(
            str(bad),
            profile=lambda: pytest.fail("no profile needed"),
            policy=None,
            store=lambda: pytest.fail(),
        )
    assert caught.value.key == key and message in caught.value.message and caught.value.source == str(bad)
