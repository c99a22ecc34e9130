"""Read HAR 1.2 files (browser dev tools, proxies, REST clients) into :class:`Exchange` records.

One ``log.entries[]`` item becomes one HTTP exchange whose parts are what the phone sent: request
target, headers (or the cookie list, when the Cookie header is missing), and the request body
(``postData.text``, base64 ``postData`` as some tools write it, or a body rebuilt from ``params``).
WebSocket messages the client sent (Chrome's and mitmproxy's ``_webSocketMessages``) become one
``websocket`` exchange each. Entries for local URLs (``data:``, ``blob:``, extensions) never left
the device and are skipped with a notice.

Only :func:`read_har` touches the file system; :func:`parse_har` works on bytes. A document that is
not JSON or not a HAR raises :class:`InputError`; one damaged entry or field gives a
:class:`Notice` naming the entry (flow ``har#<index>``) and the rest is still read.

Reference: HAR 1.2, http://www.softwareishard.com/blog/har-12-spec/
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from array import array
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from itertools import accumulate
from typing import BinaryIO
from urllib.parse import SplitResult, quote_plus, urlsplit

from phonehome.errors import InputError
from phonehome.model import WHERE_BODY, WHERE_RAW, Exchange, Notice, Part
from phonehome.protocols.message import request_parts

MAX_SIZE = 512 * 1024 * 1024  # bytes: a HAR is read whole into memory
MAX_DEPTH = 200  # HAR itself nests about 6 levels; anything near this is hostile or broken
SNIFF_BYTES = 4096

_BOM = b"\xef\xbb\xbf"

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_ENCRYPTED_SCHEMES = frozenset({"https", "wss"})
# Schemes whose "requests" are served inside the device: nothing was sent on the network.
_LOCAL_SCHEMES = frozenset(
    {
        "about",
        "blob",
        "chrome",
        "chrome-extension",
        "data",
        "file",
        "javascript",
        "moz-extension",
        "safari-extension",
        "safari-web-extension",
    }
)
# RFC 6455 §5.2: opcode 2 is a binary frame; HAR writers store its payload as base64.
_WS_BINARY_OPCODE = 2

# A JSON object whose first members (scalar-valued, if any precede it) include "log": {...}.
_JSON_STRING_B = rb'"(?:[^"\\]|\\.)*"'
_JSON_SCALAR_B = rb"(?:" + _JSON_STRING_B + rb"|[-+0-9.eE]+|true|false|null)"
_SNIFF_RE = re.compile(
    rb"\A(?:\xef\xbb\xbf)?[ \t\r\n]*\{[ \t\r\n]*"
    rb"(?:" + _JSON_STRING_B + rb"[ \t\r\n]*:[ \t\r\n]*" + _JSON_SCALAR_B + rb"[ \t\r\n]*,[ \t\r\n]*)*"
    rb'"log"[ \t\r\n]*:[ \t\r\n]*\{',
    re.DOTALL,
)

# For the nesting check: drop strings, keep brackets, and take the highest running count of
# openers minus closers. Linear, and done in C, however the brackets are arranged. An unterminated
# string runs to the end of the text: left unmatched, each quote after it would start a new scan to
# the end (quadratic time on a HAR cut inside a long string full of escaped quotes).
_STRING_RE = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKET_RE = re.compile(r"[^\[\]{}]+")
_BRACKET_STEP = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # +1 / -1 as signed bytes

_Problems = list[str]
_Headers = list[tuple[bytes, bytes]]
_Items = list[tuple[str, str, dict[str, object]]]  # (name, value, the item itself)


def sniff_har(head: bytes) -> bool:
    """Whether ``head`` (the first bytes of a file) looks like a HAR document."""
    return _SNIFF_RE.match(head[:SNIFF_BYTES]) is not None


def read_har(
    path: str, *, max_size: int = MAX_SIZE, handle: BinaryIO | None = None
) -> Iterator[Exchange | Notice]:
    """Read the HAR file at ``path`` (at most ``max_size`` bytes) and parse it; from ``handle``,
    when given, instead of opening ``path`` (it is then closed here)."""
    try:
        with handle or open(path, "rb") as fh:
            data = fh.read(max_size + 1)
    except OSError as exc:
        raise InputError(f"cannot read file: {exc.strerror or exc}", source=path) from exc
    if len(data) > max_size:
        raise InputError(f"file is over the {max_size}-byte limit for HAR input", source=path)
    return parse_har(data, path)


def parse_har(data: bytes, source: str) -> Iterator[Exchange | Notice]:
    """Exchanges (and notices) for every entry of the HAR document ``data`` read from ``source``."""
    start = len(_BOM) if data.startswith(_BOM) else 0
    notice: Notice | None = None
    try:
        text = data[start:].decode("utf-8")
    except UnicodeDecodeError as exc:
        # Keep the undecodable bytes (surrogateescape) so they reach the parts exactly as written.
        text = data[start:].decode("utf-8", "surrogateescape")
        offset = start + exc.start
        notice = Notice(source, "not valid UTF-8; undecodable bytes kept as they are", offset=offset)
    damage: Notice | None = None
    try:
        entries = _entries(_load_json(text, start, source), source)
    except InputError as exc:
        # A HAR cut short (the browser or proxy stopped mid-write) or damaged inside log.entries:
        # the entries complete before the damage are still read, and the damage reported.
        salvaged = _salvage_entries(text) if exc.offset is not None else []
        if not salvaged:
            raise
        entries = salvaged
        damage = Notice(
            source,
            f"{exc.message}; only the {len(salvaged)} entries that parse whole are read",
            exc.offset,
            damage=True,
        )
    if notice is not None:
        yield notice
    if damage is not None:
        yield damage
    for index, entry in enumerate(entries):
        yield from _entry(entry, index, source)


_ENTRIES_START = re.compile(r'"entries"\s*:\s*\[')


def _salvage_entries(text: str) -> list[object]:
    """The entries of a damaged HAR that parse whole, in order, up to the first that does not."""
    found = _ENTRIES_START.search(text)
    if found is None:
        return []
    decoder = json.JSONDecoder()
    entries: list[object] = []
    pos = found.end()
    while True:
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
        try:
            entry, pos = decoder.raw_decode(text, pos)
        except (ValueError, RecursionError):  # JSONDecodeError is a ValueError
            return entries
        entries.append(entry)
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
        if pos >= len(text) or text[pos] != ",":
            return entries
        pos += 1


def _load_json(text: str, start: int, source: str) -> object:
    if _depth(text) > MAX_DEPTH:
        raise InputError(f"JSON nested deeper than {MAX_DEPTH} levels", source=source)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        offset = start + len(text[: exc.pos].encode("utf-8", "surrogateescape"))
        raise InputError(
            f"not valid JSON: {exc.msg}", source=source, offset=offset, line=exc.lineno
        ) from None
    except RecursionError:
        raise InputError("JSON nested too deeply", source=source) from None
    except ValueError as exc:  # e.g. an integer longer than int_max_str_digits
        raise InputError(f"not valid JSON: {exc}", source=source) from None


def _depth(text: str) -> int:
    """How deeply the JSON ``text`` nests arrays and objects (brackets in strings do not count)."""
    brackets = _NOT_BRACKET_RE.sub("", _STRING_RE.sub("", text)).encode("ascii")
    return max(accumulate(array("b", brackets.translate(_BRACKET_STEP))), default=0)


def _entries(doc: object, source: str) -> list[object]:
    log = doc.get("log") if isinstance(doc, dict) else None
    if not isinstance(log, dict):
        raise InputError('not a HAR document: no "log" object at the top level', source=source, key="log")
    entries = log.get("entries")
    if not isinstance(entries, list):
        raise InputError("not a HAR document: log.entries is not a list", source=source, key="log.entries")
    return entries


def _entry(entry: object, index: int, source: str) -> Iterator[Exchange | Notice]:
    flow = f"har#{index}"
    if not isinstance(entry, dict):
        yield Notice(source, "entry is not a JSON object; skipped", flow=flow)
        return
    connection = entry.get("connection")
    if isinstance(connection, int) and not isinstance(connection, bool):
        connection = str(connection)
    if isinstance(connection, str) and connection.strip():
        flow += f" conn {connection.strip()}"
    problems: _Problems = []
    exchanges = _exchanges(entry, flow, source, problems)
    for message in problems:
        yield Notice(source, message, flow=flow)
    yield from exchanges


def _exchanges(entry: dict[str, object], flow: str, source: str, problems: _Problems) -> list[Exchange]:
    request = entry.get("request")
    if not isinstance(request, dict):
        problems.append("entry has no request object; skipped")
        return []
    url = request.get("url")
    if not isinstance(url, str) or not url.strip():
        problems.append("request has no URL; skipped")
        return []
    try:
        split = urlsplit(url.strip())
    except ValueError as exc:
        problems.append(f"request URL cannot be parsed ({exc}); skipped")
        return []
    if split.scheme in _LOCAL_SCHEMES:
        problems.append(f"{split.scheme}: URL is served on the device, not sent; skipped")
        return []

    headers, pseudo = _headers(request, problems)
    names = {name.strip().lower() for name, _ in headers}
    authority = pseudo.get(":authority")
    if b"host" not in names and authority:
        headers.insert(0, (b"host", _bytes(authority)))
    if b"cookie" not in names:
        cookie = _cookie_header(request.get("cookies"), problems)
        if cookie:
            headers.append((b"cookie", cookie))
    header_type = next(
        (v.strip().decode("latin-1") for n, v in headers if n.strip().lower() == b"content-type"), None
    )
    body, mime = _body(request.get("postData"), header_type, problems)
    parts = request_parts(_target(split, "?" in url, request.get("queryString")), headers, body)
    if body and header_type is None and mime:
        # The declared mimeType is the only content-type hint when the headers carry none.
        parts = tuple(
            replace(p, content_type=mime) if p.where == WHERE_BODY and p.content_type is None else p
            for p in parts
        )

    scheme = split.scheme or pseudo.get(":scheme", "").lower()
    try:
        port = split.port
    except ValueError:
        problems.append("request URL has an invalid port; using the scheme's default")
        port = None
    method = request.get("method")
    if not isinstance(method, str) or not method.strip():
        method = pseudo.get(":method") or None
        if method is None:
            problems.append("request has no method")
    http = Exchange(
        source=source,
        flow=flow,
        time=_time(entry.get("startedDateTime"), problems),
        transport="tcp",
        protocol="http",
        client_ip="",
        client_port=0,
        server_ip=_server_ip(entry.get("serverIPAddress")),
        server_port=port if port is not None else _DEFAULT_PORTS.get(scheme, 0),
        parts=parts,
        host=_host(split, headers),
        url=url,
        method=method.strip() if method else None,
        encrypted=scheme in _ENCRYPTED_SCHEMES,
        name_source="har",
    )
    return [http, *_websocket(entry.get("_webSocketMessages"), http, problems)]


def _headers(request: dict[str, object], problems: _Problems) -> tuple[_Headers, dict[str, str]]:
    """Real header pairs as bytes, and the HTTP/2 pseudo-headers (RFC 9113 §8.3) apart."""
    raw = request.get("headers")
    pairs: _Headers = []
    pseudo: dict[str, str] = {}
    if raw is None:
        return pairs, pseudo
    if not isinstance(raw, list):
        problems.append("request.headers is not a list; headers skipped")
        return pairs, pseudo
    bad = 0
    for item in raw:
        name = item.get("name") if isinstance(item, dict) else None
        value = item.get("value") if isinstance(item, dict) else None
        if not isinstance(name, str) or not isinstance(value, str):
            bad += 1
        elif name.startswith(":"):
            pseudo.setdefault(name.lower(), value.strip())
        else:
            pairs.append((_bytes(name), _bytes(value)))
    if bad:
        problems.append(f"{bad} malformed request header(s) skipped")
    return pairs, pseudo


def _cookie_header(raw: object, problems: _Problems) -> bytes:
    """A Cookie header value (RFC 6265 §4.2.1) from the HAR cookie list."""
    if raw is None:
        return b""
    if not isinstance(raw, list):
        problems.append("request.cookies is not a list; cookies skipped")
        return b""
    pairs = _name_values(raw, "cookie", problems)
    return b"; ".join(_bytes(name) + b"=" + _bytes(value) for name, value, _ in pairs)


def _name_values(raw: list[object], what: str, problems: _Problems) -> _Items:
    """(name, value, item) of each well-formed {name, value} item; a missing value counts as ""."""
    out: _Items = []
    bad = 0
    for item in raw:
        name = item.get("name") if isinstance(item, dict) else None
        value = item.get("value", "") if isinstance(item, dict) else None
        if isinstance(item, dict) and isinstance(name, str) and isinstance(value, str):
            out.append((name, value, item))
        else:
            bad += 1
    if bad:
        problems.append(f"{bad} malformed {what} item(s) skipped")
    return out


def _target(split: SplitResult, has_query: bool, query_string: object) -> bytes:
    """The origin-form request target. Built here so ws:// and wss:// URLs split like http ones."""
    path = split.path or "/"
    query = split.query
    if not has_query and isinstance(query_string, list):
        # Some REST clients keep the query only in queryString, not in the URL.
        query = _urlencode(_name_values(query_string, "queryString", []))
    return _bytes(path + "?" + query if query else path)


def _body(post: object, header_type: str | None, problems: _Problems) -> tuple[bytes, str | None]:
    """The request body and postData.mimeType, from text, base64 text or params."""
    if post is None:
        return b"", None
    if not isinstance(post, dict):
        problems.append("request.postData is not an object; body skipped")
        return b"", None
    mime = post.get("mimeType")
    mime = (mime.strip() or None) if isinstance(mime, str) else None
    text = post.get("text")
    if text is not None and not isinstance(text, str):
        problems.append("postData.text is not a string; ignored")
        text = None
    if text:
        encoding = post.get("encoding")
        if isinstance(encoding, str) and encoding.strip().lower() == "base64":
            compact = "".join(text.split())
            try:
                return base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True), mime
            except (binascii.Error, ValueError):
                problems.append("postData.text is not valid base64; scanned as text")
        elif encoding not in (None, ""):
            problems.append("postData.encoding is not understood; text taken as it is")
        return _bytes(text), mime
    params = post.get("params")
    if params is None or params == []:
        return b"", mime
    if not isinstance(params, list):
        problems.append("postData.params is not a list; body skipped")
        return b"", mime
    return _body_from_params(_name_values(params, "postData.params", problems), header_type or mime), mime


def _body_from_params(params: _Items, content_type: str | None) -> bytes:
    if content_type and content_type.lower().startswith("multipart/"):
        # RFC 7578: one section per field, file fields with their name and type.
        boundary = _boundary(content_type) or b"phonehome-har-boundary"
        out = bytearray()
        for name, value, item in params:
            disposition = b'form-data; name="' + _bytes(name) + b'"'
            file_name = item.get("fileName")
            if isinstance(file_name, str) and file_name:
                disposition += b'; filename="' + _bytes(file_name) + b'"'
            out += b"--" + boundary + b"\r\nContent-Disposition: " + disposition + b"\r\n"
            part_type = item.get("contentType")
            if isinstance(part_type, str) and part_type:
                out += b"Content-Type: " + _bytes(part_type) + b"\r\n"
            out += b"\r\n" + _bytes(value) + b"\r\n"
        return bytes(out + b"--" + boundary + b"--\r\n")
    # application/x-www-form-urlencoded (WHATWG URL §5.2), the HAR default for params.
    return _urlencode(params).encode("ascii")


def _urlencode(items: _Items) -> str:
    return "&".join(quote_plus(_bytes(name)) + "=" + quote_plus(_bytes(value)) for name, value, _ in items)


def _boundary(content_type: str) -> bytes | None:
    for param in content_type.split(";")[1:]:
        name, _, value = param.strip().partition("=")
        if name.strip().lower() == "boundary" and value.strip().strip('"'):
            return _bytes(value.strip().strip('"'))
    return None


def _host(split: SplitResult, headers: _Headers) -> str | None:
    """The URL's host, or the Host header's when the URL has none, lower-cased."""
    try:
        host = split.hostname
    except ValueError:
        host = None
    if host:
        return host
    for name, value in headers:
        if name.strip().lower() == b"host" and value.strip():
            text = value.strip().decode("utf-8", "surrogateescape")
            try:
                return urlsplit("//" + text).hostname or text.lower()
            except ValueError:
                return text.lower()
    return None


def _server_ip(raw: object) -> str:
    if not isinstance(raw, str):
        return ""
    address = raw.strip()
    if address.startswith("["):  # Chrome writes IPv6 addresses in URL brackets
        address = address[1:].partition("]")[0]
    return address


def _time(raw: object, problems: _Problems) -> float:
    """startedDateTime (ISO 8601, HAR requires an offset; a bare time is taken as UTC) in epoch seconds."""
    if isinstance(raw, str) and raw.strip():
        text = raw.strip()
        if text.endswith("z"):
            text = text[:-1] + "Z"
        try:
            moment = datetime.fromisoformat(text)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            stamp = moment.timestamp()
        except (ValueError, OverflowError, OSError):
            stamp = math.nan
        if math.isfinite(stamp):
            return stamp
        problems.append(f"startedDateTime {_short(raw)} is not an ISO 8601 time; time set to 0")
    else:
        problems.append("entry has no startedDateTime; time set to 0")
    return 0.0


def _websocket(raw: object, http: Exchange, problems: _Problems) -> Iterator[Exchange]:
    """One exchange per message the client sent on the WebSocket the entry opened."""
    if raw is None:
        return
    if not isinstance(raw, list):
        problems.append("_webSocketMessages is not a list; messages skipped")
        return
    bad = 0
    for message in raw:
        if not isinstance(message, dict):
            bad += 1
            continue
        kind = message.get("type")
        if not isinstance(kind, str) or kind.lower() != "send":
            continue  # "receive": what the server sent is not the phone's to leak
        data = message.get("data")
        if not isinstance(data, str):
            bad += 1
            continue
        payload = _bytes(data)
        opcode = message.get("opcode")
        if opcode == _WS_BINARY_OPCODE and not isinstance(opcode, bool):
            try:
                payload = base64.b64decode(data, validate=True)
            except (binascii.Error, ValueError):
                problems.append("binary WebSocket message is not valid base64; scanned as text")
        time = _epoch(message.get("time"), http.time)
        yield replace(
            http,
            time=time,
            protocol="websocket",
            parts=(Part(WHERE_RAW, payload),),
            method=None,
        )
    if bad:
        problems.append(f"{bad} malformed WebSocket message(s) skipped")


def _epoch(raw: object, default: float) -> float:
    """A message time (Chrome and mitmproxy write epoch seconds), or ``default``."""
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        try:
            value = float(raw)
        except OverflowError:
            return default
        if math.isfinite(value):
            return value
    return default


def _bytes(text: str) -> bytes:
    """UTF-8 bytes of ``text``, giving back the raw bytes surrogateescape kept from invalid UTF-8."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate written as a JSON \\u escape
        return text.encode("utf-8", "surrogatepass")


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
