"""HAR input: golden cases on real exports, crafted documents for each quirk, and fuzzing."""

from __future__ import annotations

import base64
import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phonehome.errors import InputError
from phonehome.model import Exchange, Notice, Part
from phonehome.sources.har import MAX_DEPTH, parse_har, read_har, sniff_har

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"
HAR_DIR = CORPUS / "har" / "mitmproxy"
EXPECTED_DIR = CORPUS / "har" / "mitmproxy-expected"
needs_corpus = pytest.mark.skipif(not HAR_DIR.is_dir(), reason=f"HAR corpus not found at {HAR_DIR}")

GOLDEN = ["charles", "chrome", "firefox", "safari", "insomnia", "with-bom", "postdata", "head-content-length"]
FLOWS = [
    "flows-corrupted_gzip_body",
    "flows-error_log",
    "flows-event_stream",
    "flows-incomplete_log",
    "flows-successful_log",
    "flows-websocket",
]
DEFAULT_PORT = {"http": 80, "https": 443}


# -- helpers -------------------------------------------------------------------------------------


def har(*entries: object) -> bytes:
    return json.dumps({"log": {"version": "1.2", "entries": list(entries)}}).encode()


def entry(url: str = "https://api.example.com/v1/track?id=42", **request: object) -> dict[str, Any]:
    return {
        "startedDateTime": "2024-01-02T03:04:05.500Z",
        "request": {"method": "POST", "url": url, "headers": [], "cookies": [], **request},
    }


def run(data: bytes) -> tuple[list[Exchange], list[Notice]]:
    out = list(parse_har(data, "t.har"))
    exchanges = [x for x in out if isinstance(x, Exchange)]
    notices = [x for x in out if isinstance(x, Notice)]
    assert len(exchanges) + len(notices) == len(out)
    return exchanges, notices


def one(data: bytes) -> Exchange:
    exchanges, notices = run(data)
    assert notices == []
    assert len(exchanges) == 1
    return exchanges[0]


def where(exchange: Exchange, place: str) -> list[bytes]:
    return [p.data for p in exchange.parts if p.where == place]


def har_entries(name: str) -> list[dict[str, Any]]:
    raw = (HAR_DIR / f"{name}.har").read_bytes().removeprefix(b"\xef\xbb\xbf")
    entries: list[dict[str, Any]] = json.loads(raw)["log"]["entries"]
    return entries


# -- golden: real exports against mitmproxy's reading of the same files ----------------------------


@needs_corpus
@pytest.mark.parametrize("name", GOLDEN)
def test_golden_requests_match_mitmproxy(name: str) -> None:
    flows = json.loads((EXPECTED_DIR / f"{name}.json").read_text())
    exchanges, notices = run((HAR_DIR / f"{name}.har").read_bytes())
    assert notices == []
    assert len(exchanges) == len(flows)
    for exchange, flow in zip(exchanges, flows, strict=True):
        req = flow["request"]
        port = "" if req["port"] == DEFAULT_PORT[req["scheme"]] else f":{req['port']}"
        url = f"{req['scheme']}://{req['host']}{port}{req['path']}"
        assert (exchange.method, exchange.url, exchange.host) == (req["method"], url, req["host"])
        assert exchange.server_port == req["port"]
        assert exchange.encrypted == (req["scheme"] == "https")
        assert exchange.time == pytest.approx(req["timestamp_start"], abs=1e-3)
        address = flow["server_conn"]["address"]
        assert exchange.server_ip == (address[0] if address else "")
        assert (exchange.protocol, exchange.transport, exchange.client_ip, exchange.client_port) == (
            "http",
            "tcp",
            "",
            0,
        )


@needs_corpus
@pytest.mark.parametrize("name", ["postdata", "with-bom"])
def test_golden_post_body_reaches_a_body_part(name: str) -> None:
    (exchange,) = run((HAR_DIR / f"{name}.har").read_bytes())[0]
    (body,) = [p for p in exchange.parts if p.where == "body"]
    assert body.data == har_entries(name)[0]["request"]["postData"]["text"].encode()
    assert b'"pageViewId":1689428126308' in body.data
    assert body.content_type == "text/plain;charset=UTF-8"
    # Chrome exports HTTP/2 pseudo-headers; they are not scanned as headers, :authority is the Host.
    assert not any(p.where.startswith("header::") for p in exchange.parts)
    assert where(exchange, "header:host") == [b"signal-metrics-collector-beta.s-onetag.com"]
    assert exchange.flow == "har#0 conn 159834"


@needs_corpus
def test_golden_bom_file_reads_like_the_plain_one() -> None:
    plain = run((HAR_DIR / "postdata.har").read_bytes())
    bom = run((HAR_DIR / "with-bom.har").read_bytes())
    assert plain == bom


@needs_corpus
@pytest.mark.parametrize("name", FLOWS)
def test_golden_mitmproxy_exports(name: str) -> None:
    exchanges, notices = run((HAR_DIR / f"{name}.har").read_bytes())
    assert notices == []
    http = [x for x in exchanges if x.protocol == "http"]
    entries = har_entries(name)
    assert [(x.method, x.url) for x in http] == [
        (e["request"]["method"], e["request"]["url"]) for e in entries
    ]
    for exchange, raw in zip(http, entries, strict=True):
        post = raw["request"].get("postData")
        if post and post["text"]:
            assert where(exchange, "body") == [post["text"].encode()]


@needs_corpus
def test_golden_websocket_sent_messages() -> None:
    exchanges, _ = run((HAR_DIR / "flows-websocket.har").read_bytes())
    sent = [x for x in exchanges if x.protocol == "websocket"]
    assert [x.parts for x in sent] == [(Part("raw", b"foo"),), (Part("raw", b"bar"),)]
    assert {(x.flow, x.host, x.server_port, x.encrypted) for x in sent} == {
        ("har#2", "demo.piesocket.com", 443, True)
    }
    assert [x.time for x in sent] == [1693314240.7948081, 1693314244.039395]


@needs_corpus
def test_golden_cookie_header_not_doubled_by_cookie_list() -> None:
    # Chrome writes both a cookie header and the parsed cookie list: each cookie is scanned once.
    exchanges, _ = run((HAR_DIR / "chrome.har").read_bytes())
    cookies = where(exchanges[2], "cookie")
    assert len(cookies) == len(har_entries("chrome")[2]["request"]["cookies"]) == 21


@needs_corpus
@pytest.mark.parametrize(
    "path", sorted(HAR_DIR.glob("*.har")) if HAR_DIR.is_dir() else [], ids=lambda p: p.name
)
def test_golden_files_sniff_as_har(path: Path) -> None:
    assert sniff_har(path.read_bytes()[:4096])
    assert list(read_har(str(path))) == list(parse_har(path.read_bytes(), str(path)))


# -- sniffing ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "head",
    [
        b'{"log": {"version": "1.2"',
        b'\xef\xbb\xbf\r\n\t {\n"log"\n:\n{',
        b'{"_comment": "exported", "n": 3, "log": {',
        b'{"log":{"entries":[',
    ],
)
def test_sniff_accepts(head: bytes) -> None:
    assert sniff_har(head)


@pytest.mark.parametrize(
    "head",
    [
        b"",
        b"\xd4\xc3\xb2\xa1\x02\x00\x04\x00",  # pcap
        b'[{"log": {}}]',
        b'{"logs": {"entries": []}}',
        b'{"meta": {"log": {}}, "x": 1}',
        b'{"log": "text"}',
        b'x{"log": {',
    ],
)
def test_sniff_rejects(head: bytes) -> None:
    assert not sniff_har(head)


# -- request bodies -----------------------------------------------------------------------------------


def test_base64_post_data_is_decoded() -> None:
    raw = b"\x00\x01imei=356938035643809\xff"
    post = {
        "mimeType": "application/octet-stream",
        "text": base64.b64encode(raw).decode(),
        "encoding": "base64",
    }
    exchange = one(har(entry(postData=post)))
    assert exchange.parts[-1] == Part("body", raw, "application/octet-stream")


def test_bad_base64_is_scanned_as_text_with_a_notice() -> None:
    post = {"mimeType": "text/plain", "text": "imei=356938035643809!", "encoding": "base64"}
    exchanges, notices = run(har(entry(postData=post)))
    assert where(exchanges[0], "body") == [b"imei=356938035643809!"]
    assert [(n.flow, "base64" in n.message) for n in notices] == [("har#0", True)]


def test_params_only_post_data_is_urlencoded() -> None:
    post = {
        "mimeType": "application/x-www-form-urlencoded",
        "params": [
            {"name": "imei", "value": "356938035643809"},
            {"name": "msisdn", "value": "+44 7700 900123"},
        ],
    }
    exchange = one(har(entry(postData=post)))
    assert where(exchange, "body") == [b"imei=356938035643809&msisdn=%2B44+7700+900123"]
    assert exchange.parts[-1].content_type == "application/x-www-form-urlencoded"


def test_params_only_multipart_is_rebuilt_and_split() -> None:
    post = {
        "mimeType": "multipart/form-data; boundary=XyZ",
        "params": [
            {"name": "imei", "value": "356938035643809"},
            {"name": "log", "value": "a,b", "fileName": "log.csv", "contentType": "text/csv"},
        ],
    }
    headers = [{"name": "Content-Type", "value": "multipart/form-data; boundary=XyZ"}]
    exchange = one(har(entry(postData=post, headers=headers)))
    bodies = [p for p in exchange.parts if p.where == "body"]
    assert Part("body", b"356938035643809", None) in bodies
    assert Part("body", b"a,b", "text/csv") in bodies
    assert any(b'filename="log.csv"' in p.data for p in bodies)


def test_text_wins_over_params() -> None:
    post = {"mimeType": "x", "text": "a=1", "params": [{"name": "a", "value": "2"}]}
    assert where(one(har(entry(postData=post))), "body") == [b"a=1"]


def test_no_post_data_means_no_body() -> None:
    for post in (None, {"mimeType": "", "text": "", "params": []}):
        assert where(one(har(entry(postData=post))), "body") == []


# -- headers, cookies, pseudo-headers ------------------------------------------------------------------


def test_cookie_list_without_header_becomes_cookie_parts() -> None:
    cookies = [{"name": "uid", "value": "u-123", "path": "/"}, {"name": "adid", "value": "38400000-8cf0"}]
    exchange = one(har(entry(cookies=cookies)))
    assert where(exchange, "cookie") == [b"uid=u-123", b"adid=38400000-8cf0"]


def test_cookie_header_wins_over_cookie_list() -> None:
    headers = [{"name": "Cookie", "value": "uid=u-123"}]
    exchange = one(har(entry(headers=headers, cookies=[{"name": "uid", "value": "u-123"}])))
    assert where(exchange, "cookie") == [b"uid=u-123"]


def test_pseudo_headers_are_dropped_and_authority_is_the_host() -> None:
    headers = [
        {"name": ":authority", "value": "api.example.com"},
        {"name": ":method", "value": "POST"},
        {"name": ":path", "value": "/v1/track?id=42"},
        {"name": ":scheme", "value": "https"},
        {"name": "x-device-id", "value": "abc"},
    ]
    exchange = one(har(entry(headers=headers)))
    assert [p.where for p in exchange.parts] == ["path", "query", "header:host", "header:x-device-id"]
    assert where(exchange, "header:host") == [b"api.example.com"]
    assert where(exchange, "query") == [b"id=42"]


def test_host_header_is_not_replaced_by_authority() -> None:
    headers = [{"name": ":authority", "value": "a.example"}, {"name": "Host", "value": "b.example"}]
    assert where(one(har(entry(headers=headers))), "header:host") == [b"b.example"]


def test_query_string_list_used_when_url_has_no_query() -> None:
    query = [{"name": "aaid", "value": "cdda802e-fb9c"}]
    exchange = one(har(entry("http://t.example/p", queryString=query)))
    assert where(exchange, "query") == [b"aaid=cdda802e-fb9c"]
    assert (exchange.server_port, exchange.encrypted) == (80, False)


# -- entry fields ----------------------------------------------------------------------------------


def test_entry_fields() -> None:
    item = entry("https://API.Example.com:8443/v1/x#frag", headers=[{"name": "User-Agent", "value": "ua"}])
    item["serverIPAddress"] = "[2001:db8::1]"
    item["connection"] = "4321"
    (exchange,), (notice,) = run(har({}, item))  # the first entry has no request
    assert notice.flow == "har#0"
    assert exchange.flow == "har#1 conn 4321"
    assert (exchange.host, exchange.server_ip, exchange.server_port) == (
        "api.example.com",
        "2001:db8::1",
        8443,
    )
    assert (exchange.method, exchange.url) == ("POST", "https://API.Example.com:8443/v1/x#frag")
    assert exchange.time == 1704164645.5
    assert where(exchange, "path") == [b"/v1/x"]


def test_integer_connection_id() -> None:
    item = entry()
    item["connection"] = 7
    assert one(har(item)).flow == "har#0 conn 7"


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        ("2023-03-30T00:00:54.250Z", 1680134454.25),
        ("2023-03-29T16:58:59.303-07:00", 1680134339.303),
        ("2024-11-14T14:59:42.210687+00:00", 1731596382.210687),
        ("2023-03-30T00:00:54Z", 1680134454.0),
        ("2023-03-30T00:00:54.123456789z", 1680134454.123456),
        ("2023-03-30T02:00:54+0200", 1680134454.0),
        ("2023-03-30T00:00:54", 1680134454.0),  # no offset: taken as UTC
    ],
)
def test_started_date_time(stamp: str, expected: float) -> None:
    item = entry()
    item["startedDateTime"] = stamp
    assert one(har(item)).time == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("stamp", [None, "", "yesterday", 1680134454, "2023-13-45T00:00:00Z", [1]])
def test_bad_started_date_time_is_zero_with_a_notice(stamp: object) -> None:
    item = entry()
    item["startedDateTime"] = stamp
    exchanges, notices = run(har(item))
    assert exchanges[0].time == 0.0
    assert len(notices) == 1
    assert notices[0].flow == "har#0"


def test_websocket_url_splits_and_is_encrypted() -> None:
    exchange = one(har(entry("wss://push.example.net/socket?token=t1")))
    assert where(exchange, "path") == [b"/socket"]
    assert where(exchange, "query") == [b"token=t1"]
    assert (exchange.encrypted, exchange.server_port) == (True, 443)


def test_local_urls_are_skipped_with_a_notice() -> None:
    exchanges, notices = run(har(entry("data:text/plain,hi"), entry()))
    assert [x.flow for x in exchanges] == ["har#1"]
    assert [n.flow for n in notices] == ["har#0"]


# -- websocket messages --------------------------------------------------------------------------------


def test_websocket_sent_messages() -> None:
    item = entry("wss://push.example.net/socket", method="GET")
    item["_webSocketMessages"] = [
        {"type": "send", "time": 1700000000.5, "opcode": 1, "data": '{"imei":"356938035643809"}'},
        {"type": "receive", "time": 1700000001.0, "opcode": 1, "data": "server says"},
        {
            "type": "send",
            "time": 1700000002.0,
            "opcode": 2,
            "data": base64.b64encode(b"\x00\x9fbin").decode(),
        },
    ]
    http, text, binary = one_of_each = run(har(item))[0]
    assert len(one_of_each) == 3
    assert http.protocol == "http"
    assert (text.protocol, text.parts, text.time) == (
        "websocket",
        (Part("raw", b'{"imei":"356938035643809"}'),),
        1700000000.5,
    )
    assert binary.parts == (Part("raw", b"\x00\x9fbin"),)
    assert (binary.flow, binary.host, binary.transport, binary.method) == (
        "har#0",
        "push.example.net",
        "tcp",
        None,
    )


def test_malformed_websocket_messages_give_a_notice() -> None:
    item = entry("wss://push.example.net/socket")
    item["_webSocketMessages"] = [5, {"type": "send", "data": None}, {"type": "send", "data": "ok"}]
    exchanges, notices = run(har(item))
    assert [x.parts for x in exchanges if x.protocol == "websocket"] == [(Part("raw", b"ok"),)]
    assert len(notices) == 1


# -- damaged entries -------------------------------------------------------------------------------


def test_broken_entries_give_notices_and_the_rest_is_read() -> None:
    data = har(
        entry("https://a.example/1"),
        "not an entry",
        {"startedDateTime": "2024-01-01T00:00:00Z"},
        {"request": {"url": 17}},
        entry("https://b.example/2", headers=[{"name": "ok", "value": "v"}, {"name": 1}, "x"]),
        entry("https://c.example/3", postData="oops", cookies={"a": 1}),
        {"request": {"url": "http://[::1/"}},
        entry("https://d.example:99999/4"),
    )
    exchanges, notices = run(data)
    assert [x.host for x in exchanges] == ["a.example", "b.example", "c.example", "d.example"]
    assert sorted({n.flow for n in notices if n.flow}) == [
        "har#1",
        "har#2",
        "har#3",
        "har#4",
        "har#5",
        "har#6",
        "har#7",
    ]
    assert where(exchanges[1], "header:ok") == [b"v"]
    assert exchanges[3].server_port == 443


def test_notices_name_the_entry() -> None:
    _, notices = run(har(entry(), {"nothing": True}))
    assert [str(n) for n in notices] == ["t.har, flow har#1: entry has no request object; skipped"]


# -- whole-document errors -------------------------------------------------------------------------------


def test_invalid_json_names_byte_offset_and_line() -> None:
    data = '{"log": {"entries": [\n  {"comment": "ééé" oops}]}}'.encode()
    with pytest.raises(InputError) as caught:
        list(parse_har(data, "bad.har"))
    err = caught.value
    assert (err.source, err.offset, err.line) == ("bad.har", data.index(b"oops"), 2)
    assert str(err).startswith("bad.har, line 2, offset ")


def test_invalid_json_offset_counts_the_bom() -> None:
    with pytest.raises(InputError) as caught:
        list(parse_har(b"\xef\xbb\xbf{,", "bad.har"))
    assert caught.value.offset == 4


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"[]",
        b'{"log": []}',
        b'{"log": {"version": "1.2"}}',
        b'{"log": {"entries": {}}}',
        b'{"log": {"entries": []}} trailing',
        b'{"log": {"entries": [' + b"9" * 5000 + b"]}}",
        b"\x00\x01\x02",
    ],
)
def test_not_a_har_raises_input_error(data: bytes) -> None:
    with pytest.raises(InputError) as caught:
        list(parse_har(data, "x.har"))
    assert caught.value.source == "x.har"


def test_bom_is_accepted() -> None:
    assert one(b"\xef\xbb\xbf \n" + har(entry())).host == "api.example.com"


def test_invalid_utf8_is_kept_with_a_notice() -> None:
    data = har(entry(headers=[{"name": "x-name", "value": "@@"}])).replace(b"@@", b"caf\xe9")
    exchanges, notices = run(data)
    assert where(exchanges[0], "header:x-name") == [b"caf\xe9"]
    assert len(notices) == 1
    assert notices[0].offset == data.index(b"\xe9")


def test_json_escaped_lone_surrogate_does_not_crash() -> None:
    data = har(entry(headers=[{"name": "x", "value": "\ud800\udc80"}]))
    assert len(where(one(data), "header:x")[0]) == 4


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 100_000])
def test_deep_nesting_is_refused(depth: int) -> None:
    bomb = b'{"log": {"entries": [], "x": ' + b"[" * depth + b"]" * depth + b"}}"
    with pytest.raises(InputError, match="nested"):
        list(parse_har(bomb, "bomb.har"))


def test_unclosed_nesting_bomb_is_an_input_error() -> None:
    with pytest.raises(InputError):
        list(parse_har(b"[" * 1_000_000, "bomb.har"))


def test_nesting_within_the_bound_is_read() -> None:
    depth = MAX_DEPTH - 10
    item = entry()
    item["_extra"] = json.loads("[" * depth + "]" * depth)
    assert one(har(item)).host == "api.example.com"


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    assert one(har(entry(postData={"text": "[" * 10_000 + '\\"{'}))).host == "api.example.com"


# -- reading files ---------------------------------------------------------------------------------


def test_read_har(tmp_path: Path) -> None:
    path = tmp_path / "a.har"
    path.write_bytes(har(entry()))
    (exchange,) = read_har(str(path))
    assert isinstance(exchange, Exchange)
    assert exchange.source == str(path)


def test_read_har_refuses_files_over_the_bound(tmp_path: Path) -> None:
    path = tmp_path / "big.har"
    path.write_bytes(har(entry()))
    with pytest.raises(InputError, match="limit") as caught:
        read_har(str(path), max_size=64)
    assert caught.value.source == str(path)


def test_read_har_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError) as caught:
        read_har(str(tmp_path / "absent.har"))
    assert caught.value.source == str(tmp_path / "absent.har")


# -- properties ------------------------------------------------------------------------------------

JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def _fields(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with any subset of ``fields``, each mostly plausible, sometimes any JSON value."""
    return st.fixed_dictionaries({}, optional={name: _mostly(value) for name, value in fields.items()})


def _mostly(value: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(value, value, value, JSONISH)


_TEXT = st.text(st.characters(exclude_categories=()), max_size=12)  # lone surrogates too
_PAIRS = st.lists(_fields(name=_TEXT, value=_TEXT, fileName=_TEXT, contentType=_TEXT) | JSONISH, max_size=4)
_URL = st.sampled_from(
    [
        "https://a.example/p?q=1",
        "http://[::1]:8080/",
        "wss://w.example/s",
        "ws://x:0/",
        "/rel",
        "data:,x",
        "h://[x",
    ]
) | st.text(max_size=30)
_MIME = st.sampled_from(
    ["multipart/form-data; boundary=b", "multipart/mixed", "application/x-www-form-urlencoded"]
)
_POST = _fields(mimeType=_MIME | _TEXT, text=st.text(), encoding=st.just("base64"), params=_PAIRS)
_REQUEST = st.fixed_dictionaries(
    {"url": _URL},
    optional={
        "method": st.sampled_from(["GET", "POST"]) | JSONISH,
        "headers": _mostly(_PAIRS),
        "cookies": _mostly(_PAIRS),
        "queryString": _mostly(_PAIRS),
        "postData": _mostly(_POST),
    },
)
_WS = st.lists(
    _mostly(
        _fields(
            type=st.sampled_from(["send", "receive"]),
            time=st.floats(),
            opcode=st.sampled_from([1, 2]),
            data=_TEXT,
        )
    ),
    max_size=3,
)
_ENTRY = st.fixed_dictionaries(
    {"request": _mostly(_REQUEST)},
    optional={
        "startedDateTime": _mostly(st.sampled_from(["2024-01-01T00:00:00Z", "2024-02-30T00:00:00+01:00"])),
        "serverIPAddress": _mostly(st.sampled_from(["[::1]", "10.0.0.1", "["])),
        "connection": _mostly(st.sampled_from(["12", 12, " "])),
        "_webSocketMessages": _mostly(_WS),
    },
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_mostly(_ENTRY), max_size=4))
def test_arbitrary_entry_values_never_crash(entries: list[Any]) -> None:
    data = json.dumps({"log": {"entries": entries}}).encode()
    try:
        out = list(parse_har(data, "fuzz.har"))
    except InputError:
        return
    for item in out:
        assert isinstance(item, Exchange | Notice)
        if isinstance(item, Exchange):
            assert all(isinstance(p.data, bytes) for p in item.parts)
            assert item.flow.startswith("har#")


@settings(max_examples=300, deadline=None)
@given(_mostly(_POST), _mostly(_PAIRS), _mostly(_WS))
def test_arbitrary_body_headers_and_messages_on_a_good_entry(post: Any, headers: Any, messages: Any) -> None:
    item = entry("wss://w.example/s", postData=post, headers=headers)
    item["_webSocketMessages"] = messages
    exchanges, _ = run(har(item))
    assert exchanges[0].protocol == "http"
    sent = (
        [m for m in messages if isinstance(m, dict) and m.get("type") == "send"]
        if isinstance(messages, list)
        else []
    )
    well_formed = [m for m in sent if isinstance(m.get("data"), str)]
    assert len(exchanges) == 1 + len(well_formed)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_input_error(data: bytes) -> None:
    with contextlib.suppress(InputError):
        list(parse_har(data, "fuzz.har"))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=40), st.integers(min_value=0))
def test_damaged_real_document_raises_only_input_error(junk: bytes, at: int) -> None:
    data = har(entry(), entry("wss://w.example/"))
    cut = at % (len(data) + 1)
    with contextlib.suppress(InputError):
        list(parse_har(data[:cut] + junk + data[cut:], "fuzz.har"))


@pytest.mark.parametrize("cut", [0.5, 0.75, 0.99])
def test_truncated_har_keeps_the_whole_entries_and_reports_the_damage(cut: float) -> None:
    data = har(entry("http://a.example/1"), entry("http://b.example/2"), entry("http://c.example/3"))
    at = data.index(b"c.example") if cut == 0.99 else int(len(data) * cut)
    exchanges, notices = run(data[:at])
    (damage,) = notices
    assert damage.damage and damage.offset is not None and damage.offset <= at
    assert f"only the {len(exchanges)} entries that parse whole are read" in damage.message
    hosts = [e.host for e in exchanges]
    assert hosts == ["a.example", "b.example", "c.example"][: len(hosts)]
    assert hosts, "at least the first entry was whole before the cut"


def test_damage_inside_the_first_entry_is_still_an_error() -> None:
    data = har(entry(), entry())
    with pytest.raises(InputError, match="not valid JSON"):
        list(parse_har(data[: data.index(b"api.example.com")], "cut.har"))
