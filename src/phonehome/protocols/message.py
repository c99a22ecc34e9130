"""Split one HTTP request into the parts detection scans.

Shared by every source that yields HTTP (pcap via the HTTP/1 parser, HAR, later HTTP/2 and flows),
so a request gives the same parts whichever format it arrived in.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from phonehome.model import (
    WHERE_BODY,
    WHERE_COOKIE,
    WHERE_PATH,
    WHERE_QUERY,
    Part,
    header_where,
)

# Headers whose value says nothing about the owner and appears on every request; scanning them
# only costs time. Everything else is scanned, including ones no list anticipates.
_NOT_SCANNED = frozenset({b"content-length", b"connection", b"transfer-encoding", b"content-encoding"})


def _b(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape")


def split_target(target: bytes) -> tuple[bytes, bytes]:
    """Path and query of a request target (origin-form or absolute-form), fragment dropped."""
    if target.startswith((b"http://", b"https://")):
        parts = urlsplit(target)
        return parts.path or b"/", parts.query
    target = target.split(b"#", 1)[0]
    path, _, query = target.partition(b"?")
    return path, query


def split_multipart(body: bytes, content_type: str) -> list[tuple[bytes, str | None]] | None:
    """The sections of a multipart body as (bytes, content type), or None if it is not one."""
    boundary = None
    for param in content_type.split(";")[1:]:
        name, _, value = param.strip().partition("=")
        if name.lower() == "boundary":
            boundary = value.strip().strip('"')
    if not boundary:
        return None
    delimiter = b"--" + boundary.encode("latin-1", "replace")
    sections: list[tuple[bytes, str | None]] = []
    for chunk in body.split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break
        head, sep, data = chunk.partition(b"\r\n\r\n")
        if not sep:
            head, sep, data = chunk.partition(b"\n\n")
        ctype = None
        for line in head.splitlines():
            field, _, field_value = line.partition(b":")
            if field.strip().lower() == b"content-type":
                ctype = field_value.strip().decode("latin-1")
        # A section header may carry a value too (a file name in Content-Disposition).
        if head.strip():
            sections.append((head.strip(), "multipart-header"))
        sections.append((data.removesuffix(b"\r\n").removesuffix(b"\n"), ctype))
    return sections


def request_parts(
    target: str | bytes,
    headers: Iterable[tuple[str | bytes, str | bytes]],
    body: bytes,
) -> tuple[Part, ...]:
    """Parts of a request: path, query, each header, each cookie, and the body (or its sections)."""
    path, query = split_target(_b(target))
    return target_parts(path, query, headers, body)


# A header name as sent -> the name lower-case and the part's place, or None when it is not scanned.
# Apps send the same few names on every request; the table is bounded against endless new ones.
_NAMES: dict[str | bytes, tuple[bytes, str | None]] = {}
_NAMES_MAX = 4096


def _header_name(raw: str | bytes) -> tuple[bytes, str | None]:
    known = _NAMES.get(raw)
    if known is None:
        name = _b(raw).strip().lower()
        known = (name, None if name in _NOT_SCANNED else header_where(name.decode("latin-1")))
        if len(_NAMES) >= _NAMES_MAX:
            _NAMES.clear()
        _NAMES[raw] = known
    return known


# A header as sent -> the parts it gives and the content type it declares (or None). Apps send
# the same headers on every request, and parts are immutable: one part serves every request that
# sent the same header. Bounded in entries and in the size of each, as a capture can hold endless
# new headers.
_HEADERS: dict[tuple[str | bytes, str | bytes], tuple[tuple[Part, ...], str | None]] = {}
_HEADERS_MAX = 4096
_HEADER_VALUE_MAX = 512


def _header_parts(raw_name: str | bytes, raw_value: str | bytes) -> tuple[tuple[Part, ...], str | None]:
    name, where = _header_name(raw_name)
    if where is None:
        return (), None
    value = raw_value.strip() if isinstance(raw_value, bytes) else _b(raw_value).strip()
    if not value:
        return (), None
    if name == b"cookie":
        cookies = []
        for cookie in value.split(b";"):
            cookie = cookie.strip()
            if cookie:
                cookies.append(Part(WHERE_COOKIE, cookie))
        return tuple(cookies), None
    return (Part(where, value),), value.decode("latin-1") if name == b"content-type" else None


def target_parts(
    path: bytes,
    query: bytes,
    headers: Iterable[tuple[str | bytes, str | bytes]],
    body: bytes,
) -> tuple[Part, ...]:
    """:func:`request_parts` of a target already split into path and query (:func:`split_target`)."""
    parts: list[Part] = [Part(WHERE_PATH, path)]
    if query:
        parts.append(Part(WHERE_QUERY, query))
    content_type: str | None = None
    known = _HEADERS
    for header in headers:
        found = known.get(header)
        if found is None:
            found = _header_parts(*header)
            if len(header[1]) <= _HEADER_VALUE_MAX:
                if len(known) >= _HEADERS_MAX:
                    known.clear()
                known[header] = found
        parts.extend(found[0])
        if found[1] is not None:
            content_type = found[1]
    if body:
        sections = None
        if content_type and content_type.lower().startswith("multipart/"):
            sections = split_multipart(body, content_type)
        if sections:
            parts.extend(Part(WHERE_BODY, data, ctype) for data, ctype in sections if data)
        else:
            parts.append(Part(WHERE_BODY, body, content_type))
    return tuple(parts)
