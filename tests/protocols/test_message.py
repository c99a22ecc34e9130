"""A request's parts: path, query, each header, each cookie, the body; the same for every source."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phonehome.model import Part
from phonehome.protocols import message
from phonehome.protocols.message import request_parts

HEADERS = [
    (b"Host", b"api.example.com"),
    (b"Cookie", b"sid=1; ; theme=dark "),
    (b"Content-Length", b"3"),
    (b"Content-Type", b"application/json"),
    (b"X-Empty", b"  "),
    (b"User-Agent", b" okhttp/4.9.0 "),
]


def test_each_header_cookie_and_the_body_with_its_type() -> None:
    parts = request_parts(b"/a/b?x=1&y=2#frag", HEADERS, b"{}")
    assert parts == (
        Part("path", b"/a/b"),
        Part("query", b"x=1&y=2"),
        Part("header:host", b"api.example.com"),
        Part("cookie", b"sid=1"),
        Part("cookie", b"theme=dark"),
        Part("header:content-type", b"application/json"),
        Part("header:user-agent", b"okhttp/4.9.0"),
        Part("body", b"{}", "application/json"),
    )


def test_text_headers_give_the_parts_bytes_do() -> None:
    as_text = [(name.decode(), value.decode()) for name, value in HEADERS]
    assert request_parts("/a/b?x=1&y=2", as_text, b"{}") == request_parts(b"/a/b?x=1&y=2", HEADERS, b"{}")


_NAME = st.sampled_from([b"Host", b"Cookie", b"content-type", b"Content-Length", b"X-A", b"\xc0"])
_VALUE = st.binary(max_size=40) | st.sampled_from([b"multipart/form-data; boundary=b", b"a=1; b=2", b" "])


@settings(max_examples=200)
@given(st.lists(st.tuples(_NAME, _VALUE), max_size=8), st.binary(max_size=20))
def test_headers_seen_before_give_the_parts_they_gave(
    headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    first = request_parts(b"/", headers, body)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(message, "_HEADERS", {})  # read afresh, not remembered
        fresh = request_parts(b"/", headers, body)
    assert request_parts(b"/", headers, body) == first == fresh


def test_the_remembered_headers_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(message, "_HEADERS", {})
    monkeypatch.setattr(message, "_HEADERS_MAX", 8)
    for i in range(50):
        request_parts(b"/", [(b"X-Id", str(i).encode()), (b"X-Big", b"x" * 1000)], b"")
    assert 0 < len(message._HEADERS) <= 8
    assert all(len(value) <= message._HEADER_VALUE_MAX for _name, value in message._HEADERS)
