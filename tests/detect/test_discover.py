"""Suspected identifiers: precision and recall on the labelled corpus, and each rule on its own."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pytest

from detect.labelled import Labelled, generated, real
from factories import CORPUS, NO_CORPUS, exchange
from phonehome.cli import Env, main
from phonehome.detect.discover import Discoverer, fields, key_verdict
from phonehome.model import WHERE_BODY, WHERE_COOKIE, WHERE_PATH, WHERE_QUERY, header_where
from phonehome.profile import Profile, parse_profile

EMPTY = Profile("test", "test", "IN", ())


def _score(lab: Labelled, profile: Profile = EMPTY) -> tuple[int, int, int, int]:
    """(true positives, false positives, false negatives, negatives) on distinct values."""
    discoverer = Discoverer(profile)
    for ex in lab.exchanges:
        discoverer.observe(ex)
    predicted = {s.value for s in discoverer.suspects()}
    candidates = {f.value for ex in lab.exchanges for f in fields(ex) if len(f.value) >= 8}
    negatives = (candidates | lab.negatives) - lab.positives - lab.unlabelled
    tp = len(predicted & lab.positives)
    fp = len(predicted - lab.positives - lab.unlabelled)
    fn = len(lab.positives - predicted)
    return tp, fp, fn, len(negatives)


@pytest.mark.skipif(not CORPUS.is_dir(), reason=NO_CORPUS)
def test_precision_and_recall_on_the_labelled_corpus() -> None:
    parts = {"real": real(CORPUS), "generated A": generated(2016), "generated B": generated(2017)}
    totals = [0, 0, 0, 0]
    for name, lab in parts.items():
        tp, fp, fn, negatives = _score(lab)
        print(f"{name}: {len(lab.positives)} identifiers, {negatives} look-alikes: tp={tp} fp={fp} fn={fn}")
        totals = [a + b for a, b in zip(totals, (tp, fp, fn, negatives), strict=True)]
    tp, fp, fn, negatives = totals
    precision = tp / (tp + fp)
    recall = tp / (tp + fn)
    print(
        f"suspected identifiers: precision {precision:.3f}, recall {recall:.3f} ({tp + fn} identifiers, "
        f"{negatives} look-alikes)"
    )
    assert negatives >= tp + fn  # at least as many look-alikes as identifiers
    assert precision >= 0.95
    assert recall >= 0.90


@pytest.mark.skipif(not CORPUS.is_dir(), reason=NO_CORPUS)
def test_real_identifiers_carry_their_reasons_and_hosts() -> None:
    lab = real(CORPUS)
    discoverer = Discoverer(EMPTY)
    for ex in lab.exchanges:
        discoverer.observe(ex)
    by_value = {s.value: s for s in discoverer.suspects()}
    ad = by_value["7263697a-cb1e-4c6f-a641-c2bfe1683295"]
    assert ad.key == "advertisingTrackingId" and ad.shape == "uuid"
    assert set(ad.hosts) == {"publisher-config.unityads.unity3d.com", "auction.unityads.unity3d.com"}
    assert any("advertisingTrackingId" in r for r in ad.reasons) and 0.5 <= ad.confidence <= 1
    capptain = by_value["f2c993d6218f5e22fe284b2e90c82f3b"]
    assert capptain.key == "deviceid" and capptain.hosts == ("api.eu01.capptain.com",)
    assert "cb5a8c9f85eda84ee55a0224f126d6098122211a" not in by_value  # the Crashlytics API key


def test_fields_come_from_every_place_a_request_carries_values() -> None:
    ex = exchange(
        (WHERE_PATH, b"/users/8f1e2c3d4b5a6978/profile"),
        (WHERE_QUERY, b"a=1&device_id=abc123def456"),
        (header_where("X-Install-Id"), b"0f8fad5b-d9cb-469f-a165-70867728950e"),
        (header_where("authorization"), b"Sentry sentry_key=ca31cefc4a50, sentry_client=java"),
        (WHERE_COOKIE, b"uid=7d1f0a9b"),
        (WHERE_BODY, b'{"user": {"email": "a@b.org", "ids": ["x1", 35]}, "n": "{\\"k\\": \\"v1v2v3v4\\"}"}'),
        (WHERE_BODY, b'<r><param name="imei" value="865123456789019"/></r>'),
    )
    got = {(f.where, f.key, f.value) for f in fields(ex)}
    assert ("path", "users", "8f1e2c3d4b5a6978") in got
    assert ("query", "device_id", "abc123def456") in got
    assert ("header:x-install-id", "x-install-id", "0f8fad5b-d9cb-469f-a165-70867728950e") in got
    assert ("header:authorization", "sentry_key", "ca31cefc4a50") in got
    assert ("cookie", "uid", "7d1f0a9b") in got
    assert ("body", "email", "a@b.org") in got and ("body", "ids", "35") in got
    assert ("body", "k", "v1v2v3v4") in got  # JSON inside a JSON string
    assert ("body", "imei", "865123456789019") in got


@pytest.mark.parametrize(
    ("key", "matched", "hashed", "not_id"),
    [
        ("advertisingTrackingId", "advertisingtrackingid", False, False),
        ("x-crashlytics-installation-id", "installationid", False, False),
        ("device_id_md5", "deviceid", True, False),
        ("threadId", None, False, False),
        ("x-crashlytics-api-key", None, False, True),
        ("request_id", None, False, True),
        ("icon_hash", None, True, True),
    ],
)
def test_key_names(key: str, matched: str | None, hashed: bool, not_id: bool) -> None:
    assert key_verdict(key) == (matched, hashed, not_id)


def _suspects(
    *requests: tuple[str, bytes], profile: Profile = EMPTY
) -> dict[str, tuple[float, tuple[str, ...]]]:
    discoverer = Discoverer(profile)
    for index, (host, query) in enumerate(requests):
        ex = exchange((WHERE_QUERY, query), host=host)
        discoverer.observe(ex.__class__(**{**{s: getattr(ex, s) for s in ex.__slots__}, "flow": f"f{index}"}))
    return {s.value: (s.confidence, s.reasons) for s in discoverer.suspects()}


def test_shape_alone_flags_strong_shapes_and_not_weak_ones() -> None:
    found = _suspects(
        (
            "a.example",
            b"x=865123456789019&y=89911012000032045140&z=owner@example.org"
            b"&w=00:1a:11:f0:aa:b3&v=3f2b9c1e-55aa-4c1e-9d7e-1b2c3d4e5f60",
        )
    )
    assert {"865123456789019", "owner@example.org", "00:1a:11:f0:aa:b3"} <= set(found)
    assert "3f2b9c1e-55aa-4c1e-9d7e-1b2c3d4e5f60" not in found  # a lone UUID may be anything
    assert "865123456789018" not in _suspects(("a.example", b"x=865123456789018"))  # Luhn fails


def test_persistence_across_organisations_raises_confidence() -> None:
    uuid = b"3f2b9c1e-55aa-4c1e-9d7e-1b2c3d4e5f60"
    found = _suspects(("a.adnet.com", b"q=" + uuid), ("b.metrics.io", b"p=" + uuid))
    confidence, reasons = found[uuid.decode()]
    assert confidence >= 0.5 and any("2 unrelated organisations" in r for r in reasons)


def test_nonces_timestamps_versions_and_declared_values_are_not_suspects() -> None:
    requests = [
        ("api.example.com", f"request_id={n:032x}&ts=1550772064&v=10.3.1&imei=865123456789019".encode())
        for n in (0x5EED1234ABCD9876, 0x1234ABCD5EED5678, 0x9ABC5EED12347777)
    ]
    profile = parse_profile('[identifiers]\nimei = "865123456789019"\n', "p.toml")
    found = _suspects(*requests, profile=profile)
    assert found == {}
    # Without the profile, the IMEI is a suspect; the nonce, timestamp and version still are not.
    assert set(_suspects(*requests)) == {"865123456789019"}


def test_hashed_identifier_under_an_id_key() -> None:
    digest = hashlib.sha1(b"b9e28776354d259e").hexdigest()
    found = _suspects(("a.example", f"android_id_sha1={digest}".encode()))
    assert any("(hashed)" in r for r in found[digest][1])


@pytest.mark.skipif(not CORPUS.is_dir(), reason=NO_CORPUS)
def test_audit_discover_writes_a_suspected_list_beside_findings(tmp_path: Path) -> None:
    profile = tmp_path / "phone.toml"
    profile.write_text('[identifiers]\nimei = "865123456789019"\n', encoding="utf-8")
    capture = str(CORPUS / "pcap" / "ndpi" / "ocs.pcap")
    out, err = io.StringIO(), io.StringIO()
    args = ["audit", capture, "--device", str(profile), "--discover", "--format", "json"]
    main(args, Env(stdout=out, stderr=err, progress=False))
    doc = json.loads(out.getvalue())
    assert doc["findings"] == []
    (suspect,) = [s for s in doc["suspected"] if s["value"] == "f2c993d6218f5e22fe284b2e90c82f3b"]
    assert suspect["key"] == "deviceid" and suspect["hosts"] == ["api.eu01.capptain.com"]
    assert 0.5 <= suspect["confidence"] <= 1 and suspect["reasons"]
    out = io.StringIO()
    main(
        ["audit", capture, "--device", str(profile), "--discover"],
        Env(stdout=out, stderr=err, progress=False),
    )
    assert "Suspected identifiers" in out.getvalue() and "deviceid" in out.getvalue()
    out = io.StringIO()
    main(
        ["audit", capture, "--device", str(profile), "--format", "json"],
        Env(stdout=out, stderr=err, progress=False),
    )
    assert "suspected" not in json.loads(out.getvalue())


def test_hostile_bodies_give_no_crash_and_bounded_work() -> None:
    import gzip

    bodies = [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a": "' + b"[" * 50_000 + b'"}',
        gzip.compress(
            b'{"imei": "865123456789019", "pad": "' + b"0" * (4 << 20) + b'", "b": "356938035643809"}'
        ),
        b"\x1f\x8b\x08garbage",
        b"<a><b>" * 10_000,
        bytes(range(256)) * 64,
    ]
    discoverer = Discoverer(EMPTY)
    for body in bodies:
        discoverer.observe(exchange((WHERE_BODY, body)))
    # The body is read to its first MiB: the IMEI before it is found (as a bare token, the JSON being
    # cut short), the one after it is not.
    assert [s.value for s in discoverer.suspects()] == ["865123456789019"]
