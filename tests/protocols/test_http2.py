"""HTTP/2 client frames: headers (HPACK), CONTINUATION, padding, DATA per stream, trailers, bounds."""

from __future__ import annotations

import gzip
import struct

import hpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phonehome.protocols.http2 import PREFACE, ParseWarning, Request, RequestReader, looks_like_preface

SETTINGS_FRAME = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def frame(ftype: int, flags: int, stream: int, payload: bytes) -> bytes:
    return struct.pack("!I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack("!I", stream) + payload


def connection() -> bytes:
    enc = hpack.Encoder()
    pseudo = [(":method", "POST"), (":path", "/up?id=42"), (":authority", "api.example.com:8443")]
    fields = [(":scheme", "https"), ("content-encoding", "gzip"), ("cookie", "a=1"), ("cookie", "b=2")]
    block1 = enc.encode(pseudo + fields)
    block3 = enc.encode([(":method", "GET"), (":path", "/two"), (":authority", "api.example.com")])
    body = gzip.compress(b"imei=865123456789019")
    return b"".join(
        [
            PREFACE,
            SETTINGS_FRAME,
            # Stream 1: HEADERS split into CONTINUATION, padded DATA in two frames, then trailers.
            frame(1, 0x20, 1, b"\x00\x00\x00\x00\x10" + block1[:5]),
            frame(9, 0x4, 1, block1[5:]),
            # Stream 3 interleaved: one HEADERS with END_STREAM and END_HEADERS, padded.
            frame(1, 0x8 | 0x4 | 0x1, 3, b"\x03" + block3 + b"\x00\x00\x00"),
            frame(0, 0x8, 1, b"\x02" + body[:10] + b"\x00\x00"),
            frame(8, 0, 0, b"\x00\x00\x10\x00"),
            frame(0, 0, 1, body[10:]),
            frame(1, 0x4 | 0x1, 1, enc.encode([("x-checksum", "abc")])),
        ]
    )


def read(chunks: list[bytes]) -> list[Request | ParseWarning]:
    reader = RequestReader()
    out: list[Request | ParseWarning] = []
    for chunk in chunks:
        reader.receive_data(chunk)
        out += reader.events()
    reader.receive_eof()
    return out + reader.events()


@pytest.mark.parametrize("way", ["whole", "bytewise", "trailing"])
def test_requests_three_ways(way: str) -> None:
    data = connection()
    chunks = {
        "whole": [data],
        "bytewise": [data[i : i + 1] for i in range(len(data))],
        "trailing": [data + b"\x00\x00"],
    }[way]
    events = read(chunks)
    requests = [e for e in events if isinstance(e, Request)]
    assert [r.stream_id for r in requests] == [3, 1]
    second, first = requests
    assert (second.method, second.path, second.host, second.complete) == (
        "GET",
        b"/two",
        "api.example.com",
        True,
    )
    assert (
        first.method == "POST"
        and first.authority == "api.example.com:8443"
        and first.host == "api.example.com"
    )
    assert first.body == b"imei=865123456789019"
    assert [n for n, _ in first.headers][-3:] == [b"cookie", b"cookie", b"x-checksum"]
    assert first.complete and first.warnings == ()
    assert not [e for e in events if isinstance(e, ParseWarning)]


def test_a_gap_stops_the_connection_and_hands_over_open_streams() -> None:
    data = connection()
    cut = data.index(b"\x00\x00\x04\x08")  # before the WINDOW_UPDATE, stream 1 still open
    reader = RequestReader()
    reader.receive_data(data[:cut])
    reader.receive_gap(50)
    reader.receive_data(data[cut + 50 :])
    events = reader.events()
    assert isinstance(events[-2], ParseWarning) and "50 bytes missing" in events[-2].message
    last = events[-1]
    assert isinstance(last, Request) and last.stream_id == 1 and not last.complete


def test_reset_stream_is_handed_over_incomplete() -> None:
    enc = hpack.Encoder()
    block = enc.encode([(":method", "GET"), (":path", "/r"), (":authority", "h"), (":scheme", "https")])
    events = read([PREFACE + frame(1, 0x4, 5, block) + frame(3, 0, 5, b"\x00\x00\x00\x08")])
    (request,) = events
    assert isinstance(request, Request) and not request.complete
    assert request.warnings == ("stream reset by the client",)


def test_bad_preface_and_undecodable_headers_are_warnings() -> None:
    assert isinstance(read([b"GET / HTTP/1.1\r\n\r\n" + bytes(30)])[0], ParseWarning)
    (warning,) = read([PREFACE + frame(1, 0x5, 1, b"\xff\xff\xff\xff")])
    assert isinstance(warning, ParseWarning) and "cannot be decoded" in warning.message


def test_open_streams_are_bounded() -> None:
    enc = hpack.Encoder()
    frames = [PREFACE]
    for stream in range(1, 21, 2):
        frames.append(frame(1, 0x4, stream, enc.encode([(":method", "GET"), (":path", f"/{stream}")])))
    reader = RequestReader(max_streams=4)
    reader.receive_data(b"".join(frames))
    early = reader.events()
    assert len(early) == 6 and all(isinstance(e, Request) and not e.complete for e in early)
    assert "more than 4 open streams" in early[0].warnings[0]  # type: ignore[union-attr]


def test_preface_sniffing() -> None:
    assert looks_like_preface(PREFACE[:6]) and looks_like_preface(PREFACE + b"x")
    assert not looks_like_preface(b"PRI") and not looks_like_preface(b"POST / HTTP/1.1")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_hostile_frames_never_raise(data: bytes) -> None:
    for event in read([PREFACE + data]):
        assert isinstance(event, Request | ParseWarning)
