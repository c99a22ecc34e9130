"""mitmproxy flow files: tnetstring framing (whole, byte by byte, truncated, hostile), flows to exchanges."""

from __future__ import annotations

import gzip
import io
import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from factories import CORPUS, NO_CORPUS, SAMPLES
from phonehome.audit import Auditor
from phonehome.cli import Env, main
from phonehome.model import Exchange, Notice, Part
from phonehome.profile import Profile
from phonehome.sources import read_input, sniff
from phonehome.sources.mitmflow import Damage, Record, TnetReader, read_mitm, sniff_mitm

mitmproxy = pytest.importorskip("mitmproxy", reason="mitmproxy (the live extra) is not installed")
from mitmproxy import http, tcp, websocket  # noqa: E402
from mitmproxy import io as mitm_io  # noqa: E402
from mitmproxy.io import tnetstring  # noqa: E402
from mitmproxy.test import tflow  # noqa: E402

FLOWS = CORPUS / "flows" / "mitmproxy"
HARS = CORPUS / "har" / "mitmproxy"
IMEI = SAMPLES["imei"].value
ANDROID_ID = SAMPLES["android_id"].value


def events(data: bytes, step: int | None = None) -> list[Record | Damage]:
    reader = TnetReader()
    out: list[Record | Damage] = []
    pieces = [data] if step is None else [data[i : i + step] for i in range(0, len(data), step)]
    for piece in pieces:
        reader.feed(piece)
        out.extend(reader.events())
    reader.close()
    out.extend(reader.events())
    return out


def write_flows(path: Path, *flows: object) -> Path:
    with path.open("wb") as fh:
        writer = mitm_io.FlowWriter(fh)
        for f in flows:
            writer.add(f)
    return path


def exchanges(path: Path) -> tuple[list[Exchange], list[Notice]]:
    got = list(read_mitm(str(path)))
    return [e for e in got if isinstance(e, Exchange)], [n for n in got if isinstance(n, Notice)]


def profile() -> Profile:
    return Profile(
        "test phone", "test.toml", "IN", (SAMPLES["imei"], SAMPLES["android_id"], SAMPLES["email"])
    )


# -- framing ---------------------------------------------------------------------------------------

tnet_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**18), 10**18)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.binary(max_size=40)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=30,
)


@settings(max_examples=200, deadline=None)
@given(st.lists(tnet_values, min_size=1, max_size=4), st.integers(1, 17))
def test_reader_gives_what_mitmproxy_wrote_whole_and_in_pieces(values: list[object], step: int) -> None:
    data = b"".join(tnetstring.dumps(v) for v in values)
    offsets = []
    pos = 0
    for v in values:
        offsets.append(pos)
        pos += len(tnetstring.dumps(v))
    for got in (events(data), events(data, step), events(data, 1)):
        assert [e.value for e in got if isinstance(e, Record)] == values
        assert [e.offset for e in got if isinstance(e, Record)] == offsets
        assert not [e for e in got if isinstance(e, Damage)]


def test_truncation_is_fatal_damage_at_the_record_start() -> None:
    first, second = tnetstring.dumps({"a": b"x" * 10}), tnetstring.dumps({"b": [1, 2.5, None, True]})
    data = first + second
    for cut in (len(first) + 1, len(first) + 4, len(data) - 1):
        got = events(data[:cut])
        assert [e.value for e in got if isinstance(e, Record)] == [{"a": b"x" * 10}]
        damage = [e for e in got if isinstance(e, Damage)]
        assert len(damage) == 1 and damage[0].fatal and damage[0].offset == len(first)
        assert "ends inside a record" in damage[0].message


@pytest.mark.parametrize(
    ("data", "fatal", "text"),
    [
        (b"12x:abc", True, "bad length prefix"),
        (b"9999999999999:", True, "bad length prefix"),
        (b"99999999999:abc", True, "over the"),
        (b"3:abc?", False, "unknown type tag"),
        (b"5:1:a,x}", False, "bad length prefix"),
        (b"6:1:a,0:}", False, "past the end"),
        (b"4:1:a,}", False, "without a value"),
        (b"9:3:123#0:~}", False, "key is not a string"),
        (b"3:1e5#", False, "invalid integer"),
        (b"3:yes!", False, "invalid boolean"),
        (b"1:x~", False, "null with a payload"),
        (b"70:" + b"9" * 70 + b"#", False, "longer than"),
        (b"3:\xff\xfe\x00^", False, "invalid float"),
    ],
)
def test_hostile_records(data: bytes, fatal: bool, text: str) -> None:
    got = events(data + tnetstring.dumps({"next": 1}))
    damage = [e for e in got if isinstance(e, Damage)]
    assert damage and damage[0].fatal is fatal and text in damage[0].message
    records = [e.value for e in got if isinstance(e, Record)]
    # An intact frame with a bad value is skipped and the next record still read.
    assert records == ([] if fatal else [{"next": 1}])


def test_nesting_is_bounded() -> None:
    value: object = {}
    for _ in range(100):
        value = [value]
    got = events(tnetstring.dumps(value))
    assert len(got) == 1 and isinstance(got[0], Damage) and "nested too deeply" in got[0].message


def test_sniffing_by_content(tmp_path: Path) -> None:
    flows = write_flows(tmp_path / "capture.bin", tflow.tflow())
    assert sniff(str(flows)) == "mitm"
    assert sniff_mitm(b'{"log": {}}') is False
    assert sniff_mitm(b"\xd4\xc3\xb2\xa1") is False


# -- flows to exchanges ------------------------------------------------------------------------------


def test_http_flow_parts_match_http1_with_content_coding_undone(tmp_path: Path) -> None:
    body = json.dumps({"imei": IMEI, "id": ANDROID_ID}).encode()
    req = http.Request.make(
        "POST",
        f"https://api.example.com/v1/ping?imei={IMEI}",
        body,  # stored gzip-compressed, as the Content-Encoding says
        {"Content-Encoding": "gzip", "Content-Type": "application/json", "Cookie": f"a=1; aid={ANDROID_ID}"},
    )
    assert req.raw_content is not None and gzip.decompress(req.raw_content) == body
    f = tflow.tflow(req=req)
    f.request.http_version = "HTTP/2.0"
    f.request.authority = "api.example.com"
    f.request.headers.pop("Host", None)
    [got], notices = exchanges(write_flows(tmp_path / "f.mitm", f))
    assert not notices
    assert got.protocol == "http" and got.method == "POST" and got.encrypted
    assert got.host == "api.example.com" and got.server_port == 443 and got.name_source == "mitm"
    assert got.url == f"https://api.example.com/v1/ping?imei={IMEI}"
    assert Part("query", f"imei={IMEI}".encode()) in got.parts
    assert Part("header:host", b"api.example.com") in got.parts  # from :authority
    assert Part("cookie", f"aid={ANDROID_ID}".encode()) in got.parts
    assert Part("body", body, "application/json") in got.parts
    found = Auditor(profile()).findings(got, [])
    assert {(x.identifier, x.where) for x in found} >= {
        ("imei", "query"),
        ("imei", "body"),
        ("android_id", "cookie"),
        ("android_id", "body"),
    }


def test_websocket_and_tcp_messages_from_the_client_only(tmp_path: Path) -> None:
    ws = tflow.twebsocketflow(messages=False)
    assert ws.websocket is not None
    ws.websocket.messages = [
        websocket.WebSocketMessage(1, True, f'{{"imei":"{IMEI}"}}'.encode(), 1700000000.5),
        websocket.WebSocketMessage(1, False, f"echo {ANDROID_ID}".encode(), 1700000001.0),
        websocket.WebSocketMessage(2, True, b"\x00" + ANDROID_ID.encode(), 1700000002.0),
    ]
    t = tflow.ttcpflow(messages=False)
    t.messages = [tcp.TCPMessage(True, f"HELO {IMEI}".encode(), 5.0), tcp.TCPMessage(False, b"250 ok", 6.0)]
    got, notices = exchanges(write_flows(tmp_path / "f.mitm", ws, t))
    assert not notices
    kinds = [(e.protocol, e.parts[-1].data if e.protocol != "http" else None, e.time) for e in got]
    assert kinds[1:] == [
        ("websocket", f'{{"imei":"{IMEI}"}}'.encode(), 1700000000.5),
        ("websocket", b"\x00" + ANDROID_ID.encode(), 1700000002.0),
        ("raw", f"HELO {IMEI}".encode(), 5.0),
    ]
    assert kinds[0][0] == "http" and got[-1].transport == "tcp"


def test_streamed_body_is_reported_unscanned(tmp_path: Path) -> None:
    f = tflow.tflow(req=http.Request.make("POST", f"http://example.com/up?imei={IMEI}", b""))
    f.request.data.content = None  # what mitmproxy stores for a streamed body
    [got], notices = exchanges(write_flows(tmp_path / "f.mitm", f))
    assert [n.message for n in notices] == [
        "request body was not recorded (streamed); only the target and headers scanned"
    ]
    assert not [p for p in got.parts if p.where == "body"]
    assert Part("query", f"imei={IMEI}".encode()) in got.parts


def test_audit_command_reads_flow_files(tmp_path: Path) -> None:
    f = tflow.tflow(req=http.Request.make("GET", f"http://example.com/?imei={IMEI}"))
    flows = write_flows(tmp_path / "f.mitm", f)
    phone = tmp_path / "phone.toml"
    phone.write_text(f'[device]\nname = "p"\n[identifiers]\nimei = "{IMEI}"\n', encoding="utf-8")
    out = io.StringIO()
    status = main(
        ["audit", str(flows), "--device", str(phone), "--format", "json"], Env(out, io.StringIO(), False)
    )
    doc = json.loads(out.getvalue())
    assert status == 1 and doc["inputs"][0]["format"] == "mitm"
    assert [(x["identifier"], x["where"], x["host"]) for x in doc["findings"]] == [
        ("imei", "query", "example.com")
    ]


# -- the real flow files -----------------------------------------------------------------------------


@pytest.mark.skipif(not FLOWS.is_dir(), reason=NO_CORPUS)
@pytest.mark.parametrize(
    "name",
    ["successful_log", "error_log", "incomplete_log", "event_stream", "websocket", "corrupted_gzip_body"],
)
def test_corpus_flows_match_mitmproxys_own_har_export(name: str) -> None:
    flows, notices = exchanges(FLOWS / f"{name}.mitm")
    assert not [n for n in notices if n.damage]
    assert flows and all(e.name_source == "mitm" and e.flow.startswith("mitm ") for e in flows)
    _, har_events = read_input(HARS / f"flows-{name}.har")
    har = [e for e in har_events if isinstance(e, Exchange)]
    assert len(flows) == len(har)
    for mine, theirs in zip(flows, har, strict=True):
        for field in ("protocol", "method", "url", "host", "server_port", "encrypted"):
            assert getattr(mine, field) == getattr(theirs, field), field
        assert math.isclose(mine.time, theirs.time, abs_tol=1e-3)
        assert not theirs.server_ip or mine.server_ip == theirs.server_ip
        # mitmproxy's HAR export leaves out HTTP/2's :authority, which the flow keeps as Host.
        extra = [p for p in mine.parts if p not in theirs.parts]
        assert all(p.where == "header:host" for p in extra)
        assert [p for p in mine.parts if p not in extra] == list(theirs.parts)


@pytest.mark.skipif(not FLOWS.is_dir(), reason=NO_CORPUS)
def test_corpus_websocket_sends_and_versions() -> None:
    flows, _ = exchanges(FLOWS / "websocket.mitm")
    sends = [e for e in flows if e.protocol == "websocket"]
    assert sends and all(e.host == "demo.piesocket.com" and e.tls_version == "TLS 1.3" for e in sends)


@pytest.mark.skipif(not FLOWS.is_dir(), reason=NO_CORPUS)
def test_truncated_corpus_file_keeps_what_came_before(tmp_path: Path) -> None:
    data = (FLOWS / "incomplete_log.mitm").read_bytes()
    starts = [e.offset for e in events(data) if isinstance(e, Record)]
    whole, _ = exchanges(FLOWS / "incomplete_log.mitm")
    assert len(starts) == 4 and len(whole) == 4
    for index, start in enumerate(starts[1:], 1):
        for cut in (start + 2, start + 300):
            path = tmp_path / f"cut-{cut}.mitm"
            path.write_bytes(data[:cut])
            got, notices = exchanges(path)
            assert got == [replace_source(e, str(path)) for e in whole[:index]]
            damage = [n for n in notices if n.damage]
            assert len(damage) == 1 and damage[0].offset == start
            assert "ends inside a record" in damage[0].message


def replace_source(e: Exchange, source: str) -> Exchange:
    from dataclasses import replace

    return replace(e, source=source)
