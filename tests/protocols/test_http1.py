"""HTTP/1 request parser: every case whole, byte by byte and with trailing data; properties; real captures."""

from __future__ import annotations

import gzip
import zlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import brotli
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phonehome.protocols.http1 import (
    EOF,
    NEED_DATA,
    Event,
    ParseWarning,
    Request,
    RequestParser,
    host_of,
    looks_like_request,
    split_head,
    url_of,
)

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"


@dataclass(frozen=True)
class Gap:
    length: int


Piece = bytes | Gap


def drain(parser: RequestParser, out: list[Event], budget: list[int]) -> Event:
    """Pull events until the parser wants data or has ended; ``budget`` bounds the calls."""
    while True:
        budget[0] -= 1
        assert budget[0] >= 0, "parser did not stop asking to be called"
        event = parser.next_event()
        if event is NEED_DATA or event is EOF:
            return event
        out.append(event)


def run(
    pieces: Iterable[Piece], *, eof: bool = True, parser: RequestParser | None = None, taking: bool = False
) -> list[Event]:
    """Feed ``pieces`` (draining after each), then EOF; the events, ending with EOF if it was sent.

    With ``taking``, whole requests at the start of each piece are first taken at once
    (:meth:`RequestParser.take_request`), as the flow table does, and only the rest is fed.
    """
    parser = parser or RequestParser()
    pieces = list(pieces)
    total = sum(p.length if isinstance(p, Gap) else len(p) for p in pieces)
    # Each call consumes input or ends: a generous bound on calls catches a parser that spins.
    budget = [4 * total + 4 * len(pieces) + 50]
    events: list[Event] = []
    for piece in pieces:
        if isinstance(piece, Gap):
            parser.receive_gap(piece.length)
        else:
            while taking and (taken := parser.take_request(piece)) is not None:
                request, used = taken
                assert 0 < used <= len(piece)
                events.append(request)
                piece = piece[used:]
            parser.receive_data(piece)
        assert drain(parser, events, budget) is NEED_DATA
    if eof:
        parser.receive_eof()
        assert drain(parser, events, budget) is EOF
        assert parser.next_event() is EOF
        events.append(EOF)
    return events


def bytewise(pieces: Sequence[Piece]) -> list[Piece]:
    out: list[Piece] = []
    for piece in pieces:
        if isinstance(piece, Gap):
            out.append(piece)
        else:
            out.extend(piece[i : i + 1] for i in range(len(piece)))
    return out


TRAILING = b"GET /trailing HTTP/1.1\r\nHost: next.example\r\n\r\n"


def trailing_request(offset: int) -> Request:
    return Request("GET", b"/trailing", "HTTP/1.1", ((b"Host", b"next.example"),), b"", offset, True)


def stream_length(pieces: Sequence[Piece]) -> int:
    return sum(p.length if isinstance(p, Gap) else len(p) for p in pieces)


def tr(
    pieces: Piece | Sequence[Piece],
    expected: Sequence[Event],
    *,
    trailing: bool = True,
    **limits: int,
) -> None:
    """h11's three ways: at once, a byte at a time, and followed by another request."""
    if isinstance(pieces, bytes | Gap):
        pieces = [pieces]
    expected = [*expected, EOF]
    assert run(pieces, parser=RequestParser(**limits)) == expected
    assert run(bytewise(pieces), parser=RequestParser(**limits)) == expected
    if trailing:
        with_trailer = [*pieces, TRAILING]
        extra = trailing_request(stream_length(pieces))
        assert run(with_trailer, parser=RequestParser(**limits)) == [*expected[:-1], extra, EOF]
        assert run(bytewise(with_trailer), parser=RequestParser(**limits)) == [*expected[:-1], extra, EOF]


def req(
    method: str = "GET",
    target: bytes = b"/",
    headers: Sequence[tuple[bytes, bytes]] = (),
    body: bytes = b"",
    offset: int = 0,
    *,
    version: str = "HTTP/1.1",
    complete: bool = True,
    warnings: Sequence[str] = (),
) -> Request:
    return Request(method, target, version, tuple(headers), body, offset, complete, tuple(warnings))


# -- plain requests -------------------------------------------------------------------------------


def test_simple_get() -> None:
    data = b"GET /path?imei=1 HTTP/1.1\r\nHost: Example.COM\r\nUser-Agent:  okhttp/4.9  \r\n\r\n"
    tr(data, [req("GET", b"/path?imei=1", [(b"Host", b"Example.COM"), (b"User-Agent", b"okhttp/4.9")])])


def test_header_names_keep_their_case_and_duplicates() -> None:
    data = b"GET / HTTP/1.1\r\nx-ID: 1\r\nX-Id: 2\r\nCookie: a=1\r\nCookie: b=2\r\n\r\n"
    tr(data, [req(headers=[(b"x-ID", b"1"), (b"X-Id", b"2"), (b"Cookie", b"a=1"), (b"Cookie", b"b=2")])])


def test_empty_header_value_and_whitespace_before_colon() -> None:
    data = b"GET / HTTP/1.1\r\nX-Empty:\r\nX-Space :  v\r\n\r\n"
    tr(data, [req(headers=[(b"X-Empty", b""), (b"X-Space", b"v")])])


def test_http10() -> None:
    data = b"GET /old HTTP/1.0\r\nUser-Agent: Wget\r\n\r\n"
    tr(data, [req("GET", b"/old", [(b"User-Agent", b"Wget")], version="HTTP/1.0")])


@pytest.mark.parametrize(
    "method", ["PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "PROPFIND", "X-CUSTOM!"]
)
def test_methods_beyond_get_and_post(method: str) -> None:
    data = method.encode() + b" /r HTTP/1.1\r\nContent-Length: 2\r\n\r\nok"
    tr(data, [req(method, b"/r", [(b"Content-Length", b"2")], b"ok")])


def test_options_asterisk_form() -> None:
    tr(b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", [req("OPTIONS", b"*", [(b"Host", b"h")])])


def test_content_length_body() -> None:
    data = b"POST /up HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello world"
    tr(data, [req("POST", b"/up", [(b"Content-Length", b"11")], b"hello world")])


def test_content_length_zero() -> None:
    tr(b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n", [req("POST", headers=[(b"Content-Length", b"0")])])


def test_repeated_identical_content_length_is_one_value() -> None:
    # RFC 9110 §8.6
    data = b"POST / HTTP/1.1\r\nContent-Length: 3, 3\r\nContent-Length: 3\r\n\r\nabc"
    tr(data, [req("POST", headers=[(b"Content-Length", b"3, 3"), (b"Content-Length", b"3")], body=b"abc")])


def test_binary_body_with_line_ends_inside() -> None:
    body = b"\r\n\r\nGET / HTTP/1.1\r\n\x00\xff\n"
    data = b"POST / HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    tr(data, [req("POST", headers=[(b"Content-Length", str(len(body)).encode())], body=body)])


def test_pipelined_requests() -> None:
    one = b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
    two = b"POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nbody"
    three = b"DELETE /3 HTTP/1.1\r\nHost: a\r\n\r\n"
    tr(
        one + two + three,
        [
            req("GET", b"/1", [(b"Host", b"a")]),
            req("POST", b"/2", [(b"Host", b"a"), (b"Content-Length", b"4")], b"body", len(one)),
            req("DELETE", b"/3", [(b"Host", b"a")], offset=len(one + two)),
        ],
    )


def test_a_whole_request_is_taken_at_once_only_between_requests() -> None:
    get = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n"
    post = b"POST /b HTTP/1.1\r\nContent-Length: 3\r\n\r\nxyz"
    parser = RequestParser()
    taken = parser.take_request(get + post[:10])
    assert taken is not None and taken[1] == len(get)
    assert taken[0] == Request("GET", b"/a", "HTTP/1.1", ((b"Host", b"h"),), b"", 0, True)
    assert parser.take_request(post[:-1]) is None  # its body is not all there: nothing taken
    parser.receive_data(post[:-1])
    assert parser.next_event() is NEED_DATA
    assert parser.take_request(b"z") is None  # in the middle of a request: the parser reads it
    parser.receive_data(b"z")
    assert parser.next_event() == Request(
        "POST", b"/b", "HTTP/1.1", ((b"Content-Length", b"3"),), b"xyz", len(get), True
    )
    assert parser.take_request(b"\r\n" + get) is None  # blank lines first: left to the parser
    assert parser.take_request(b"CONNECT h:443 HTTP/1.1\r\n\r\n") is None  # a tunnel follows


def test_leading_empty_lines_between_requests() -> None:
    one = b"\r\n\r\nGET /1 HTTP/1.1\r\n\r\n"
    two = b"\r\n\nGET /2 HTTP/1.1\r\n\r\n"
    tr(one + two, [req(target=b"/1", offset=4), req(target=b"/2", offset=len(one) + 3)])


def test_bare_lf_line_ends() -> None:
    data = b"POST /lf HTTP/1.1\nHost: a\nContent-Length: 2\n\nhi"
    tr(data, [req("POST", b"/lf", [(b"Host", b"a"), (b"Content-Length", b"2")], b"hi")])


def test_mixed_line_ends() -> None:
    data = b"GET / HTTP/1.1\r\nA: 1\nB: 2\r\n\n"
    tr(data, [req(headers=[(b"A", b"1"), (b"B", b"2")])])


def test_obs_fold_joins_with_one_space() -> None:
    # RFC 9112 §5.2
    data = b"GET / HTTP/1.1\r\nX-Long: first\r\n   second\r\n\tthird\r\nY: 1\r\n\r\n"
    tr(data, [req(headers=[(b"X-Long", b"first second third"), (b"Y", b"1")])])


def test_obs_fold_before_any_header_is_ignored_with_a_warning() -> None:
    data = b"GET / HTTP/1.1\r\n folded\r\nY: 1\r\n\r\n"
    tr(data, [req(headers=[(b"Y", b"1")], warnings=["continuation line before any header field ignored"])])


def test_malformed_header_line_is_skipped() -> None:
    data = b"GET / HTTP/1.1\r\nno colon here\r\n: no name\r\nY: 1\r\n\r\n"
    tr(
        data,
        [
            req(
                headers=[(b"Y", b"1")],
                warnings=[
                    "malformed header line ignored: b'no colon here'",
                    "malformed header line ignored: b': no name'",
                ],
            )
        ],
    )


def test_lenient_request_line_whitespace() -> None:
    data = b"GET  /a b\tHTTP/1.1 \r\n\r\n"
    tr(data, [req(target=b"/a b")])


def test_absolute_form_target() -> None:
    data = b"GET http://Tracker.Example:8080/p?id=7 HTTP/1.1\r\nHost: ignored.example\r\n\r\n"
    expected = req(target=b"http://Tracker.Example:8080/p?id=7", headers=[(b"Host", b"ignored.example")])
    tr(data, [expected])
    # RFC 9112 §3.2.2: the target's authority wins over Host.
    assert host_of(expected) == "tracker.example"
    assert url_of(expected) == "http://Tracker.Example:8080/p?id=7"


def test_expect_100_continue_body_arrives_later() -> None:
    head = b"PUT /f HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"
    expected = [req("PUT", b"/f", [(b"Expect", b"100-continue"), (b"Content-Length", b"5")], b"12345")]
    # The client waits for the interim response: the body comes in a later segment.
    tr([head, b"123", b"45"], expected)
    parser = RequestParser()
    parser.receive_data(head)
    assert parser.next_event() is NEED_DATA


def test_request_line_split_across_many_segments() -> None:
    data = b"GET /a/long/path?with=query HTTP/1.1\r\nHost: split.example\r\n\r\n"
    pieces: list[Piece] = [data[i : i + 3] for i in range(0, len(data), 3)]
    tr(pieces, [req(target=b"/a/long/path?with=query", headers=[(b"Host", b"split.example")])])


# -- chunked transfer coding --------------------------------------------------------------------


def test_chunked_body() -> None:
    data = b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    tr(data, [req("POST", b"/c", [(b"Transfer-Encoding", b"chunked")], b"hello world")])


def test_chunk_extensions_whitespace_and_upper_case_hex() -> None:
    # RFC 9112 §7.1.1: extensions are ignored; some senders pad the size with whitespace.
    body = bytes(range(26))
    data = (
        b"POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n"
        b'1A ; name=value;quoted="a;b"\r\n' + body + b"\r\n0;last\r\n\r\n"
    )
    tr(data, [req("POST", headers=[(b"Transfer-Encoding", b"Chunked")], body=body)])


def test_chunked_with_bare_lf() -> None:
    data = b"POST / HTTP/1.1\nTransfer-Encoding: chunked\n\n3\nabc\n0\n\n"
    tr(data, [req("POST", headers=[(b"Transfer-Encoding", b"chunked")], body=b"abc")])


def test_chunked_trailers_are_appended_to_headers() -> None:
    data = (
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n"
        b"2\r\nhi\r\n0\r\nX-Checksum: abc\r\nX-Device: 1234\r\n\r\n"
    )
    headers = [
        (b"Transfer-Encoding", b"chunked"),
        (b"Trailer", b"X-Checksum"),
        (b"X-Checksum", b"abc"),
        (b"X-Device", b"1234"),
    ]
    tr(data, [req("POST", headers=headers, body=b"hi")])


def test_trailers_do_not_change_framing_or_coding() -> None:
    data = (
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\nhi\r\n0\r\nContent-Encoding: gzip\r\nContent-Length: 99\r\n\r\n"
    )
    headers = [(b"Transfer-Encoding", b"chunked"), (b"Content-Encoding", b"gzip"), (b"Content-Length", b"99")]
    tr(data, [req("POST", headers=headers, body=b"hi")])


def test_transfer_encoding_wins_over_content_length() -> None:
    # RFC 9112 §6.3 item 3
    data = b"POST / HTTP/1.1\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n"
    headers = [(b"Content-Length", b"100"), (b"Transfer-Encoding", b"chunked")]
    warning = "both Transfer-Encoding and Content-Length; Content-Length ignored"
    tr(data, [req("POST", headers=headers, body=b"x", warnings=[warning])])


def test_gzip_transfer_coding_under_chunked() -> None:
    packed = gzip.compress(b"transfer-coded")
    data = (
        b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
        + b"%x\r\n" % len(packed)
        + packed
        + b"\r\n0\r\n\r\n"
    )
    tr(data, [req("POST", headers=[(b"Transfer-Encoding", b"gzip, chunked")], body=b"transfer-coded")])


def test_transfer_encoding_without_chunked_reads_to_end_of_stream() -> None:
    data = b"POST / HTTP/1.0\r\nTransfer-Encoding: identity\r\n\r\neverything until close"
    expected = req(
        "POST",
        headers=[(b"Transfer-Encoding", b"identity")],
        body=b"everything until close",
        version="HTTP/1.0",
        warnings=["Transfer-Encoding does not end in chunked; body read to end of stream"],
    )
    tr(data, [expected], trailing=False)


def test_malformed_chunk_size_ends_the_request_and_resyncs() -> None:
    bad = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\nmore\r\n"
    tr(
        bad,
        [
            req(
                "POST",
                headers=[(b"Transfer-Encoding", b"chunked")],
                body=b"abc",
                complete=False,
                warnings=["malformed chunk size line b'zz'"],
            ),
            ParseWarning(bad.index(b"zz"), "skipped 10 bytes that are not an HTTP request"),
        ],
    )


def test_missing_line_end_after_chunk_data() -> None:
    data = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n"
    tr(
        data,
        [
            req(
                "POST",
                headers=[(b"Transfer-Encoding", b"chunked")],
                body=b"abc",
                complete=False,
                warnings=["chunk data not followed by a line end"],
            ),
            ParseWarning(data.index(b"X"), "skipped 8 bytes that are not an HTTP request"),
        ],
    )


def test_overlong_chunk_size_line() -> None:
    data = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1;" + b"x" * 5000 + b"\r\na\r\n0\r\n\r\n"
    events = run([data])
    assert events[0] == req(
        "POST",
        headers=[(b"Transfer-Encoding", b"chunked")],
        complete=False,
        warnings=["chunk size line too long"],
    )
    assert run(bytewise([data])) == events


# -- content codings ----------------------------------------------------------------------------

PAYLOAD = b'{"imei":"356938035643809","android_id":"9774d56d682e549c"}' * 20


def raw_deflate(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return c.compress(data) + c.flush()


@pytest.mark.parametrize(
    ("coding", "packed"),
    [
        ("gzip", gzip.compress(PAYLOAD)),
        ("x-gzip", gzip.compress(PAYLOAD)),
        ("deflate", zlib.compress(PAYLOAD)),
        ("deflate", raw_deflate(PAYLOAD)),
        ("br", brotli.compress(PAYLOAD)),
        ("zstd", zstandard.ZstdCompressor().compress(PAYLOAD)),
        ("gzip, br", brotli.compress(gzip.compress(PAYLOAD))),
    ],
)
def test_content_encoding_is_undone(coding: str, packed: bytes) -> None:
    head = b"POST /log HTTP/1.1\r\nContent-Encoding: %s\r\nContent-Length: %d\r\n\r\n" % (
        coding.encode(),
        len(packed),
    )
    headers = [(b"Content-Encoding", coding.encode()), (b"Content-Length", str(len(packed)).encode())]
    tr(head + packed, [req("POST", b"/log", headers, PAYLOAD)])


def test_chunked_gzip_body() -> None:
    packed = gzip.compress(PAYLOAD)
    chunks = b"".join(
        b"%x\r\n%s\r\n" % (len(packed[i : i + 50]), packed[i : i + 50]) for i in range(0, len(packed), 50)
    )
    data = (
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Encoding: gzip\r\n\r\n"
        + chunks
        + b"0\r\n\r\n"
    )
    headers = [(b"Transfer-Encoding", b"chunked"), (b"Content-Encoding", b"gzip")]
    tr(data, [req("POST", headers=headers, body=PAYLOAD)])


def test_undecodable_body_is_kept_as_sent() -> None:
    data = b"POST / HTTP/1.1\r\nContent-Encoding: gzip\r\nContent-Length: 9\r\n\r\nnot gzip!"
    [request, _eof] = run([data])
    assert isinstance(request, Request)
    assert request.body == b"not gzip!"
    assert request.complete
    assert request.warnings[-1] == "content coding could not be undone; body kept as sent"


def test_unknown_content_coding_is_a_warning() -> None:
    data = b"POST / HTTP/1.1\r\nContent-Encoding: compress\r\nContent-Length: 3\r\n\r\nabc"
    headers = [(b"Content-Encoding", b"compress"), (b"Content-Length", b"3")]
    tr(
        data,
        [
            req(
                "POST",
                headers=headers,
                body=b"abc",
                warnings=["unsupported content coding 'compress'; data left as is"],
            )
        ],
    )


def test_decoded_body_is_bounded() -> None:
    packed = gzip.compress(bytes(100_000))
    data = b"POST / HTTP/1.1\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(packed) + packed
    [request, _eof] = run([data], parser=RequestParser(max_decoded=1000))
    assert isinstance(request, Request)
    assert request.body == bytes(1000)
    assert request.warnings == ("decompressed size exceeds 1000 bytes; truncated",)


# -- CONNECT ------------------------------------------------------------------------------------


def test_connect_stops_parsing() -> None:
    head = b"CONNECT api.example:443 HTTP/1.1\r\nHost: api.example:443\r\n\r\n"
    tunnel = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfcGET / HTTP/1.1\r\n\r\n"
    connect = req("CONNECT", b"api.example:443", [(b"Host", b"api.example:443")])
    warning = ParseWarning(len(head), "CONNECT tunnel: the rest of the stream is not parsed as HTTP")
    # Trailing data after a CONNECT is tunnel data, so that third way does not apply.
    tr([head, tunnel], [connect, warning], trailing=False)
    assert host_of(connect) == "api.example"
    assert url_of(connect) == "http://api.example:443"


def test_tunnel_data_can_be_taken() -> None:
    head = b"CONNECT api.example:443 HTTP/1.1\r\n\r\n"
    parser = RequestParser()
    parser.receive_data(head + b"\x16\x03\x01hello")
    event = parser.next_event()
    assert isinstance(event, Request)
    assert event.method == "CONNECT"
    assert parser.tunnel_offset == len(head)
    assert parser.take_tunnel_data() == b"\x16\x03\x01hello"
    assert parser.take_tunnel_data() == b""

    # Taken later, after more data and the warning: still the first bytes, bounded.
    parser = RequestParser(max_header_bytes=100)
    parser.receive_data(head + b"a" * 60)
    assert isinstance(parser.next_event(), Request)
    assert isinstance(parser.next_event(), ParseWarning)
    assert parser.next_event() is NEED_DATA
    parser.receive_data(b"b" * 60)
    assert parser.next_event() is NEED_DATA
    assert parser.take_tunnel_data() == b"a" * 60 + b"b" * 40


def test_no_tunnel_without_connect() -> None:
    parser = RequestParser()
    parser.receive_data(b"GET / HTTP/1.1\r\n\r\nrest")
    assert isinstance(parser.next_event(), Request)
    assert parser.tunnel_offset is None
    assert parser.take_tunnel_data() == b""


# -- damage, bounds and resynchronisation -------------------------------------------------------


def test_not_http_at_all() -> None:
    tls = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(200))
    assert run([tls]) == [ParseWarning(0, f"skipped {len(tls)} bytes that are not an HTTP request"), EOF]
    assert run(bytewise([tls])) == run([tls])


def test_garbage_before_a_request_is_skipped_and_reported() -> None:
    garbage = b"\x00\x01binary\r\nHELLO there\r\n"
    tr(
        garbage + b"GET / HTTP/1.1\r\n\r\n",
        [
            ParseWarning(0, f"skipped {len(garbage)} bytes that are not an HTTP request"),
            req(offset=len(garbage)),
        ],
    )


def test_http2_preface_is_not_a_request() -> None:
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    assert run([preface]) == [
        ParseWarning(0, f"skipped {len(preface)} bytes that are not an HTTP request"),
        EOF,
    ]


def test_invalid_content_length_skips_the_body_as_garbage() -> None:
    data = b"POST / HTTP/1.1\r\nContent-Length: 1x\r\n\r\nab\r\n"
    tr(
        data,
        [
            req(
                "POST",
                headers=[(b"Content-Length", b"1x")],
                warnings=["invalid Content-Length b'1x'; body ignored"],
            ),
            ParseWarning(data.index(b"ab"), "skipped 4 bytes that are not an HTTP request"),
        ],
    )


def test_eof_in_the_body() -> None:
    data = b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc"
    expected = req(
        "POST",
        headers=[(b"Content-Length", b"10")],
        body=b"abc",
        complete=False,
        warnings=["body truncated by end of stream"],
    )
    tr(data, [expected], trailing=False)


def test_eof_in_a_chunked_body() -> None:
    data = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab"
    expected = req(
        "POST",
        headers=[(b"Transfer-Encoding", b"chunked")],
        body=b"ab",
        complete=False,
        warnings=["body truncated by end of stream"],
    )
    tr(data, [expected], trailing=False)


def test_eof_in_the_headers_keeps_what_was_read() -> None:
    data = b"GET /x HTTP/1.1\r\nHost: a\r\nUser-Ag"
    expected = req(
        target=b"/x",
        headers=[(b"Host", b"a")],
        complete=False,
        warnings=["header section truncated by end of stream"],
    )
    tr(data, [expected], trailing=False)


def test_eof_in_the_request_line() -> None:
    assert run([b"GET /partial"]) == [ParseWarning(0, "skipped 12 bytes that are not an HTTP request"), EOF]


def test_eof_in_trailers_keeps_the_body() -> None:
    data = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\nX-T: 1\r\n"
    expected = req(
        "POST",
        headers=[(b"Transfer-Encoding", b"chunked"), (b"X-T", b"1")],
        body=b"hi",
        warnings=["trailer section truncated by end of stream"],
    )
    tr(data, [expected], trailing=False)


def test_only_empty_lines() -> None:
    tr(b"\r\n\r\n\n", [])


def test_empty_stream() -> None:
    assert run([]) == [EOF]


def test_header_section_too_large() -> None:
    big = b"X-Big: " + b"a" * 200 + b"\r\n"
    data = b"GET /big HTTP/1.1\r\nHost: a\r\n" + big + b"\r\n"
    expected: list[Event] = [
        req(
            target=b"/big",
            headers=[(b"Host", b"a")],
            complete=False,
            warnings=["header section exceeds 100 bytes"],
        ),
        ParseWarning(data.index(b"X-Big"), f"skipped {len(big) + 2} bytes that are not an HTTP request"),
    ]
    tr(data, expected, max_header_bytes=100)


def test_request_line_too_large() -> None:
    line = b"GET /" + b"a" * 300 + b" HTTP/1.1\r\n"
    data = line + b"Host: a\r\n\r\n"
    tr(
        data,
        [ParseWarning(0, f"skipped {len(data)} bytes that are not an HTTP request")],
        max_header_bytes=100,
    )


def test_too_many_headers() -> None:
    data = b"GET / HTTP/1.1\r\n" + b"".join(b"H%d: %d\r\n" % (i, i) for i in range(5)) + b"\r\n"
    expected = req(
        headers=[(b"H%d" % i, b"%d" % i) for i in range(3)],
        warnings=["2 header fields beyond 3 dropped"],
    )
    tr(data, [expected], max_headers=3)


def test_framing_headers_count_even_when_dropped() -> None:
    data = b"POST / HTTP/1.1\r\nA: 1\r\nContent-Length: 2\r\n\r\nok"
    expected = req("POST", headers=[(b"A", b"1")], body=b"ok", warnings=["1 header fields beyond 1 dropped"])
    tr(data, [expected], max_headers=1)


def test_continuation_of_a_dropped_header_is_dropped() -> None:
    data = b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\n more\r\n\r\n"
    tr(data, [req(headers=[(b"A", b"1")], warnings=["1 header fields beyond 1 dropped"])], max_headers=1)


def test_long_runs_of_spaces_are_skipped_as_one_warning() -> None:
    line = b"GET /" + b" " * 60_000 + b"z"
    events = run([line + b"\r\n\r\n"])
    assert looks_like_request(line + b"\n") is False
    assert events == [ParseWarning(0, f"skipped {len(line) + 4} bytes that are not an HTTP request"), EOF]


def test_body_beyond_max_body_is_cut() -> None:
    data = b"POST / HTTP/1.1\r\nContent-Length: 50\r\n\r\n" + bytes(range(50))
    expected = req(
        "POST",
        headers=[(b"Content-Length", b"50")],
        body=bytes(range(20)),
        warnings=["body exceeds 20 bytes; truncated"],
    )
    tr(data, [expected], max_body=20)


def test_chunked_body_beyond_max_body_is_cut() -> None:
    data = (
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n"
        + b"a" * 16
        + b"\r\n10\r\n"
        + b"b" * 16
        + b"\r\n0\r\n\r\n"
    )
    expected = req(
        "POST",
        headers=[(b"Transfer-Encoding", b"chunked")],
        body=b"a" * 16 + b"b" * 4,
        warnings=["body exceeds 20 bytes; truncated"],
    )
    tr(data, [expected], max_body=20)


def test_huge_content_length_does_not_allocate() -> None:
    parser = RequestParser(max_body=10)
    parser.receive_data(b"POST / HTTP/1.1\r\nContent-Length: 99999999999999\r\n\r\n")
    for _ in range(100):
        parser.receive_data(bytes(1000))
        assert parser.next_event() is NEED_DATA
    assert len(parser._buf) == 0  # everything past max_body was dropped as it came


def test_absurdly_long_content_length() -> None:
    data = b"POST / HTTP/1.1\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\nabc"
    [request, _eof] = run([data])
    assert isinstance(request, Request)
    assert (request.body, request.complete) == (b"abc", False)
    padded = b"POST / HTTP/1.1\r\nContent-Length: " + b"0" * 5000 + b"3\r\n\r\nabc"
    tr(padded, [req("POST", headers=[(b"Content-Length", b"0" * 5000 + b"3")], body=b"abc")])


def test_buffer_stays_bounded_in_headers() -> None:
    parser = RequestParser(max_header_bytes=1000)
    parser.receive_data(b"GET / HTTP/1.1\r\nX: ")
    events: list[Event] = []
    for _ in range(50):
        parser.receive_data(b"a" * 100)
        while (event := parser.next_event()) is not NEED_DATA:
            events.append(event)
        assert len(parser._buf) <= 1000
    assert isinstance(events[0], Request)
    assert events[0].warnings == ("header section exceeds 1000 bytes",)


# -- gaps ---------------------------------------------------------------------------------------


def test_gap_in_a_content_length_body_keeps_framing() -> None:
    one = b"POST /1 HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc"
    two = b"GET /2 HTTP/1.1\r\n\r\n"
    pieces: list[Piece] = [one, Gap(4), b"xyz", two]
    expected: list[Event] = [
        req(
            "POST",
            b"/1",
            [(b"Content-Length", b"10")],
            b"abc",
            complete=False,
            warnings=["body truncated by gap"],
        ),
        req("GET", b"/2", offset=len(one) + 4 + 3),
    ]
    tr(pieces, expected)


def test_gap_ending_exactly_at_the_body_end() -> None:
    one = b"POST /1 HTTP/1.1\r\nContent-Length: 5\r\n\r\nab"
    pieces: list[Piece] = [one, Gap(3), b"GET /custom-ok HTTP/1.1\r\n\r\n"]
    expected: list[Event] = [
        req(
            "POST",
            b"/1",
            [(b"Content-Length", b"5")],
            b"ab",
            complete=False,
            warnings=["body truncated by gap"],
        ),
        req("GET", b"/custom-ok", offset=len(one) + 3),
    ]
    tr(pieces, expected)


def test_gap_past_the_body_end_resyncs() -> None:
    one = b"POST /1 HTTP/1.1\r\nContent-Length: 5\r\n\r\nab"
    tail = b"1.1\r\nHost: lost\r\n\r\n"
    two = b"GET /2 HTTP/1.1\r\n\r\n"
    pieces: list[Piece] = [one, Gap(20), tail, two]
    expected: list[Event] = [
        req(
            "POST",
            b"/1",
            [(b"Content-Length", b"5")],
            b"ab",
            complete=False,
            warnings=["body truncated by gap"],
        ),
        ParseWarning(len(one) + 20, f"skipped {len(tail)} bytes that are not an HTTP request"),
        req("GET", b"/2", offset=len(one) + 20 + len(tail)),
    ]
    tr(pieces, expected)


def test_gap_in_a_chunked_body_resyncs() -> None:
    one = b"POST /1 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nabc"
    rest = b"ghijklmnop\r\n0\r\n\r\n"
    two = b"GET /2 HTTP/1.1\r\n\r\n"
    pieces: list[Piece] = [one, Gap(3), rest, two]
    expected: list[Event] = [
        req(
            "POST",
            b"/1",
            [(b"Transfer-Encoding", b"chunked")],
            b"abc",
            complete=False,
            warnings=["body truncated by gap"],
        ),
        ParseWarning(len(one) + 3, f"skipped {len(rest)} bytes that are not an HTTP request"),
        req("GET", b"/2", offset=len(one) + 3 + len(rest)),
    ]
    tr(pieces, expected)


def test_gap_in_the_headers() -> None:
    one = b"GET /1 HTTP/1.1\r\nHost: a\r\nCookie: se"
    rest = b"ssion=1\r\n\r\n"
    pieces: list[Piece] = [one, Gap(10), rest]
    expected: list[Event] = [
        req(
            target=b"/1",
            headers=[(b"Host", b"a")],
            complete=False,
            warnings=["header section truncated by gap"],
        ),
        ParseWarning(len(one) + 10, f"skipped {len(rest)} bytes that are not an HTTP request"),
    ]
    tr(pieces, expected)


def test_gap_between_requests_resyncs_on_the_next_request_line() -> None:
    one = b"GET /1 HTTP/1.1\r\n\r\n"
    pieces: list[Piece] = [one, Gap(50), b"GET /2 HTTP/1.1\r\n\r\n"]
    tr(pieces, [req(target=b"/1"), req(target=b"/2", offset=len(one) + 50)])


def test_after_a_gap_only_known_methods_resync() -> None:
    data = b"BREW /pot HTTP/1.1\r\n\r\n"
    pieces: list[Piece] = [Gap(5), data, b"GET / HTTP/1.1\r\n\r\n"]
    tr(
        pieces,
        [
            ParseWarning(5, f"skipped {len(data)} bytes that are not an HTTP request"),
            req(offset=5 + len(data)),
        ],
    )
    # Without damage any token is a method.
    tr(data, [req("BREW", b"/pot")])


def test_resync_ignores_request_like_text_mid_line() -> None:
    junk = b"xx GET /not HTTP/1.1\r\n"
    pieces: list[Piece] = [Gap(1), junk, b"POST /yes HTTP/1.1\r\n\r\n"]
    tr(
        pieces,
        [
            ParseWarning(1, f"skipped {len(junk)} bytes that are not an HTTP request"),
            req("POST", b"/yes", offset=1 + len(junk)),
        ],
    )


def test_gap_at_the_end() -> None:
    one = b"GET /1 HTTP/1.1\r\n\r\n"
    assert run([one, Gap(10)]) == [req(target=b"/1"), EOF]
    assert run([one, Gap(10), b"garbage"]) == [
        req(target=b"/1"),
        ParseWarning(len(one) + 10, "skipped 7 bytes that are not an HTTP request"),
        EOF,
    ]


def test_gaps_in_garbage_split_the_warnings() -> None:
    pieces: list[Piece] = [b"\x16\x03junk", Gap(2), Gap(3), b"more junk"]
    assert run(pieces) == [
        ParseWarning(0, "skipped 6 bytes that are not an HTTP request"),
        ParseWarning(11, "skipped 9 bytes that are not an HTTP request"),
        EOF,
    ]


def test_input_after_eof_is_ignored() -> None:
    parser = RequestParser()
    parser.receive_data(b"GET / HTTP/1.1\r\n\r\n")
    parser.receive_eof()
    parser.receive_data(b"GET /late HTTP/1.1\r\n\r\n")
    parser.receive_gap(5)
    assert isinstance(parser.next_event(), Request)
    assert parser.next_event() is EOF
    assert parser.next_event() is EOF


# -- helpers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"GET / HTTP/1.1\r\n", True),
        (b"POST ", True),
        (b"GE", True),  # could still be
        (b"\r\nGET /", True),
        (b"M-SEARCH * HTTP/1.1\r\n", True),
        (b"PROPFIND /dav HTTP/1.1", True),
        (b"\x16\x03\x01\x02\x00", False),  # TLS
        (b"\x00\x00\x00\x18", False),
        (b"SSH-2.0-OpenSSH_9.6 Ubuntu", False),
        (b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", False),  # no space within 16 bytes
        (b"EHLO mail.example\r\n", False),  # a complete first line that is not HTTP/1
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", False),
        (b"PRI", False),
        (b"", False),
    ],
)
def test_looks_like_request(head: bytes, expected: bool) -> None:
    assert looks_like_request(head) is expected


@pytest.mark.parametrize(
    ("method", "target", "headers", "host"),
    [
        ("GET", b"/", [(b"HOST", b"Example.COM:8080")], "example.com"),
        ("GET", b"/", [(b"Host", b"[2001:DB8::1]:443")], "2001:db8::1"),
        ("GET", b"/", [(b"Host", b"example.com.")], "example.com"),
        ("GET", b"/", [], None),
        ("GET", b"/", [(b"Host", b"")], None),
        ("GET", b"HTTPS://user:pw@Abs.Example:8443/x", [(b"Host", b"other")], "abs.example"),
        ("CONNECT", b"Tunnel.Example:443", [], "tunnel.example"),
        ("CONNECT", b"[::1]:443", [], "::1"),
    ],
)
def test_host_of(method: str, target: bytes, headers: list[tuple[bytes, bytes]], host: str | None) -> None:
    assert host_of(req(method, target, headers)) == host


def test_url_of() -> None:
    assert url_of(req(target=b"/p?q=1", headers=[(b"Host", b"a.example:81")])) == "http://a.example:81/p?q=1"
    assert url_of(req(target=b"/p", headers=[(b"Host", b"a")]), "https") == "https://a/p"


def test_request_header_lookup() -> None:
    request = req(headers=[(b"X-A", b"1"), (b"x-a", b"2")])
    assert request.header(b"x-A") == b"1"
    assert request.header(b"missing") is None


# -- properties ---------------------------------------------------------------------------------

TOKEN = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+-.^_`|~",
    min_size=1,
    max_size=12,
)
HEADER_VALUE = st.binary(max_size=30).map(lambda b: bytes(c for c in b if c not in b"\r\n\x00").strip(b" \t"))


@st.composite
def requests(draw: st.DrawFn) -> tuple[bytes, Request]:
    """One serialised request and the Request it must parse to (offset 0)."""
    method = draw(
        st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]) | TOKEN.map(str.upper)
    )
    if method == "CONNECT":
        method = "GET"
    target = b"/" + draw(st.binary(max_size=40)).translate(None, b" \t\r\n\x0b\x0c")
    version = draw(st.sampled_from(["HTTP/1.1", "HTTP/1.0"]))
    eol = draw(st.sampled_from([b"\r\n", b"\n"]))
    reserved = {"content-length", "transfer-encoding", "content-encoding"}
    headers = [
        (name.encode(), value)
        for name, value in draw(st.lists(st.tuples(TOKEN, HEADER_VALUE), max_size=6))
        if name.lower() not in reserved
    ]
    body = draw(st.binary(max_size=300))
    framing = (
        draw(st.sampled_from(["length", "chunked", "none"]))
        if not body
        else draw(st.sampled_from(["length", "chunked"]))
    )
    sent = body
    if draw(st.booleans()) and body:
        sent = gzip.compress(body, mtime=0)
        headers.append((b"Content-Encoding", b"gzip"))
    if framing == "length":
        headers.append((b"Content-Length", str(len(sent)).encode()))
        payload = sent
    elif framing == "chunked":
        headers.append((b"Transfer-Encoding", b"chunked"))
        sizes = draw(st.lists(st.integers(1, 64), max_size=10))
        payload, rest = b"", sent
        for size in sizes:
            if rest:
                payload += b"%x%s%s%s" % (len(rest[:size]), eol, rest[:size], eol)
                rest = rest[size:]
        if rest:
            payload += b"%x%s%s%s" % (len(rest), eol, rest, eol)
        payload += b"0" + eol + eol
    else:
        payload = b""
    head = method.encode() + b" " + target + b" " + version.encode() + eol
    head += b"".join(name + b": " + value + eol for name, value in headers) + eol
    return head + payload, Request(method, target, version, tuple(headers), body, 0, True, ())


def cut(data: bytes, points: list[int]) -> list[Piece]:
    edges = sorted({p % (len(data) + 1) for p in points} | {0, len(data)})
    return [data[a:b] for a, b in pairwise(edges)]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(requests(), min_size=1, max_size=5), st.lists(st.integers(0, 10_000), max_size=30))
def test_random_chunking_yields_the_requests(batch: list[tuple[bytes, Request]], points: list[int]) -> None:
    stream = b""
    expected: list[Event] = []
    for data, request in batch:
        expected.append(
            Request(
                request.method,
                request.target,
                request.version,
                request.headers,
                request.body,
                len(stream),
                True,
            )
        )
        stream += data
    expected.append(EOF)
    assert run(cut(stream, points)) == expected
    assert run([stream]) == expected
    assert run(cut(stream, points), taking=True) == expected
    assert run([stream], taking=True) == expected


FRAGMENTS = st.sampled_from(
    [
        b"GET / HTTP/1.1\r\n",
        b"POST /x HTTP/1.0\n",
        b"CONNECT a:1 HTTP/1.1\r\n",
        b"PRI * HTTP/2.0\r\n",
        b"Host: a\r\n",
        b"Content-Length: 3\r\n",
        b"Content-Length: 99\r\n",
        b"Transfer-Encoding: chunked\r\n",
        b"Content-Encoding: gzip\r\n",
        b" fold\r\n",
        b"\r\n",
        b"\n",
        b"\r",
        b"0\r\n",
        b"5;x\r\n",
        b"abc",
        b"\x16\x03\x01",
        b"\x1f\x8b\x08\x00",
        b"GET",
        b" ",
        b"HTTP/1.1",
    ]
)
STREAM = st.lists(FRAGMENTS | st.binary(max_size=20), max_size=30).map(b"".join)


@st.composite
def damaged_streams(draw: st.DrawFn) -> list[Piece]:
    data = draw(STREAM)
    points = draw(st.lists(st.integers(0, len(data)), max_size=8))
    pieces: list[Piece] = []
    for piece in cut(data, points):
        pieces.append(piece)
        if draw(st.integers(0, 3)) == 0:
            pieces.append(Gap(draw(st.integers(1, 40))))
    return pieces


def check_events(events: list[Event], length: int) -> None:
    assert events[-1] is EOF
    last = -1
    for event in events[:-1]:
        assert isinstance(event, Request | ParseWarning)
        assert 0 <= event.offset <= length
        if isinstance(event, ParseWarning):
            assert event.message
        else:
            assert event.offset > last
            last = event.offset


@settings(max_examples=300, deadline=None)
@given(damaged_streams(), st.sampled_from([64, 64 * 1024]))
def test_any_input_never_raises_and_is_chunking_independent(pieces: list[Piece], limit: int) -> None:
    whole: list[Piece] = []
    for piece in pieces:  # the same stream with adjacent data joined: one segment per gap-free run
        if isinstance(piece, bytes) and whole and isinstance(whole[-1], bytes):
            whole[-1] += piece
        else:
            whole.append(piece)
    events = run(pieces, parser=RequestParser(max_header_bytes=limit, max_body=50))
    check_events(events, stream_length(pieces))
    assert run(whole, parser=RequestParser(max_header_bytes=limit, max_body=50)) == events
    assert run(bytewise(pieces), parser=RequestParser(max_header_bytes=limit, max_body=50)) == events
    for fed in (pieces, whole):  # whole requests taken at once give the same events
        assert run(fed, parser=RequestParser(max_header_bytes=limit, max_body=50), taking=True) == events


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400), st.lists(st.integers(0, 400), max_size=10))
def test_arbitrary_bytes_never_raise(data: bytes, points: list[int]) -> None:
    events = run(cut(data, points))
    check_events(events, len(data))
    assert events == run([data])


def test_without_eof_every_call_returns() -> None:
    parser = RequestParser()
    parser.receive_data(b"GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\nab")
    assert parser.next_event() is NEED_DATA
    assert parser.next_event() is NEED_DATA


# -- real captures ------------------------------------------------------------------------------


def client_streams(path: Path) -> list[list[bytes]]:
    """Client-to-server TCP payloads per flow, ordered naively by sequence number."""
    dpkt = pytest.importorskip("dpkt")
    flows: dict[tuple[bytes, int, bytes, int], dict[int, bytes]] = defaultdict(dict)
    with path.open("rb") as f:
        magic = f.read(4)
        f.seek(0)
        reader = dpkt.pcapng.Reader(f) if magic == b"\x0a\x0d\x0d\x0a" else dpkt.pcap.Reader(f)
        for _ts, frame in reader:
            ip = dpkt.ethernet.Ethernet(frame).data
            if (
                isinstance(ip, dpkt.ip.IP | dpkt.ip6.IP6)
                and isinstance(ip.data, dpkt.tcp.TCP)
                and ip.data.data
            ):
                tcp = ip.data
                flows[(ip.src, tcp.sport, ip.dst, tcp.dport)].setdefault(tcp.seq, bytes(tcp.data))
    return [[segs[seq] for seq in sorted(segs)] for segs in flows.values()]


def captured_requests(name: str) -> list[tuple[list[bytes], list[Event]]]:
    path = CORPUS / "pcap" / name
    if not path.exists():
        pytest.skip(f"capture corpus not available at {CORPUS}")
    out = []
    for segments in client_streams(path):
        if looks_like_request(segments[0]):
            out.append((segments, run(segments)))
    return out


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("pcap2har/http-chunked-gzip.pcap", [("GET", b"/", "www.wireshark.org")]),
        ("ndpi/http-lines-split.pcap", [("GET", b"/", "toni.lan")]),
        ("ndpi/http.pcapng", [("GET", b"/", "google.com")]),
        ("ndpi/iphone.pcap", [("GET", b"/hotspot-detect.html", "captive.apple.com")]),
        (
            "ndpi/http_asymmetric.pcapng",
            [
                ("GET", b"/", "proxy.wiresharkfest.acropolis.local"),
                ("GET", b"/icons/ubuntu-logo.png", "proxy.wiresharkfest.acropolis.local"),
                ("GET", b"/favicon.ico", "proxy.wiresharkfest.acropolis.local"),
            ],
        ),
    ],
)
def test_captured_requests(name: str, expected: list[tuple[str, bytes, str]]) -> None:
    [(segments, events)] = captured_requests(name)
    requests_seen = [e for e in events if isinstance(e, Request)]
    assert [(r.method, r.target, host_of(r)) for r in requests_seen] == expected
    assert all(r.complete and not r.warnings for r in requests_seen)
    assert events[-1] is EOF and len(events) == len(expected) + 1
    assert run(bytewise(segments)) == events


def test_captured_user_agent_split_over_two_packets() -> None:
    [(segments, events)] = captured_requests("ndpi/http_ua_splitted_in_two_pkts.pcapng")
    found = [e for e in events if isinstance(e, Request)]
    assert len(found) == len(events) - 1 == 37
    assert {host_of(r) for r in found} == {"va.origin.startappservice.com"}
    assert all(r.method == "GET" and r.target.startswith(b"/tracking/ad") for r in found)
    assert all(r.header(b"user-agent") for r in found)
    # Offsets line up with the stream: each request line starts where the parser says.
    stream = b"".join(segments)
    assert all(stream[r.offset :].startswith(b"GET /tracking/") for r in found)


def test_captured_connect_tunnel() -> None:
    [(segments, events)] = captured_requests("ndpi/http_connect.pcap")
    request, warning, eof = events
    assert isinstance(request, Request) and isinstance(warning, ParseWarning) and eof is EOF
    assert (request.method, request.target, host_of(request)) == ("CONNECT", b"apache.org:443", "apache.org")
    stream = b"".join(segments)
    assert stream[warning.offset : warning.offset + 3] == b"\x16\x03\x01"  # a TLS ClientHello follows


@pytest.mark.parametrize("extra", [-1, 0, 1])
@pytest.mark.parametrize("ending", [b"\r\n", b"\n"])
def test_a_head_read_whole_is_read_as_line_by_line_at_the_size_limit(extra: int, ending: bytes) -> None:
    head = ending.join([b"GET /x HTTP/1.1", b"Host: h", b" folded", b"bad line", b"X-A: 1", b"", b""])
    stream = [head + b"GET /y HTTP/1.1" + ending * 2]
    whole = run(stream, parser=RequestParser(max_header_bytes=len(head) + extra))
    assert whole == run(bytewise(stream), parser=RequestParser(max_header_bytes=len(head) + extra))
    first = whole[0]
    assert isinstance(first, Request)
    assert first.complete is (extra >= 0)
    if extra >= 0:
        assert first.headers == ((b"Host", b"h folded"), (b"X-A", b"1"))
        assert first.warnings == ("malformed header line ignored: b'bad line'",)


# Field lines of every shape the two readings of a header section must agree on: whitespace and
# CRs around names, colons and values, framing fields, and now and then an obs-fold or a line
# without a colon or a name.
_NAMES = st.sampled_from(
    [b"Host", b"content-length", b"Content-Encoding", b"TRANSFER-ENCODING", b"X-Id", b"T"]
)
_SPACE = st.lists(st.sampled_from([b" ", b"\t", b"\r"]), max_size=3).map(b"".join)
_VALUE = st.lists(
    st.sampled_from([b"gzip", b"chunked", b"3", b"0, 0", b"a b", b":", b"\t", b"\xc3\xa9"]), max_size=3
)
FIELD_LINE = st.one_of(
    st.tuples(_NAMES, _SPACE, _SPACE, _VALUE.map(b"".join), _SPACE).map(
        lambda t: t[0] + t[1] + b":" + b"".join(t[2:])
    ),
    st.sampled_from([b" folded", b"\tfold: ed", b"no colon", b": no name", b"\r"]),
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(FIELD_LINE, st.sampled_from([b"\r\n", b"\n"])), max_size=8),
    st.sampled_from([b"\r\n", b"\n"]),
    st.binary(max_size=8),
    st.sampled_from([3, 256]),
)
def test_a_whole_header_section_reads_as_its_lines_do(
    lines: list[tuple[bytes, bytes]], end: bytes, rest: bytes, max_headers: int
) -> None:
    head = b"POST /a HTTP/1.1\r\n" + b"".join(line + eol for line, eol in lines if line.strip(b"\r")) + end
    pieces: list[Piece] = [head + rest]
    whole = run(pieces, parser=RequestParser(max_headers=max_headers))
    assert run(bytewise(pieces), parser=RequestParser(max_headers=max_headers)) == whole


try:
    from phonehome import _http1
except ImportError:  # pragma: no cover - depends on the build
    _http1 = None  # type: ignore[assignment]

_REQUEST_LINES = st.sampled_from(
    [
        *(b"GET / HTTP/1.1", b"POST /a?b=1 HTTP/1.0", b"GET  /x y \t HTTP/1.1 \r", b"get /\tHTTP/1.9"),
        *(b"GET / HTTP/2.0", b"GET / HTTP/1.1x", b"/ HTTP/1.1", b"GET HTTP/1.1", b"A" * 33 + b" / HTTP/1.1"),
        *(b"M:X / HTTP/1.1", b"", b"A" * 32 + b" / HTTP/1.1", b"GET /\x00\xff HTTP/1.1", b"GET /xHTTP/1.1"),
    ]
)


@pytest.mark.skipif(_http1 is None, reason="phonehome._http1 is not built")
@settings(max_examples=500, deadline=None)
@given(
    _REQUEST_LINES,
    st.lists(st.tuples(FIELD_LINE, st.sampled_from([b"\r\n", b"\n"])), max_size=6),
    st.sampled_from([b"\r\n", b"\n", b"", b"\r"]),
    st.binary(max_size=6),
    st.integers(0, 300),
    st.sampled_from([16, 64, 64 * 1024]),
    st.sampled_from([0, 2, 256]),
)
def test_the_c_header_split_is_the_python_one(
    line: bytes,
    fields: list[tuple[bytes, bytes]],
    end: bytes,
    rest: bytes,
    avail: int,
    max_bytes: int,
    max_headers: int,
) -> None:
    buf = bytearray(line + b"\r\n" + b"".join(f + eol for f, eol in fields) + end + rest)
    for size in (len(buf), min(avail, len(buf))):
        assert _http1.split_head(buf, size, max_bytes, max_headers) == split_head(
            buf, size, max_bytes, max_headers
        )
