"""Read mitmproxy flow files (``.mitm``, ``.flow``) into :class:`Exchange` records.

A flow file is a plain sequence of tnetstrings, one dictionary per flow (the flow's ``get_state()``).
Two layers, kept apart:

- :class:`TnetReader` frames and parses the tnetstrings. It is sans-I/O (``feed`` bytes, take
  :class:`Record` and :class:`Damage` events), bounded (record size, nesting depth, number
  length) and knows the byte offset of every record, so a truncated or corrupt file is reported
  at the exact place and everything before it is still read. Reading never needs mitmproxy.
- :func:`flow_exchanges` turns one flow dictionary into exchanges: an HTTP flow (HTTP/1, HTTP/2
  and HTTP/3 alike) gives one ``http`` exchange with the same parts an HTTP/1 capture gives, plus
  one ``websocket`` exchange per message the client sent; TCP and UDP flows give one ``raw``
  exchange per client message; DNS flows one ``dns`` exchange with the query names. Older flow
  format versions are brought to the current one by mitmproxy's own ``migrate_flow`` when
  mitmproxy is installed; without it the current field names are read.

The live proxy (:mod:`phonehome.live`) sends each live flow through :func:`flow_exchanges` too,
so a flow seen live and the same flow read back from its saved file give the same findings.

Format: https://tnetstrings.info/ and mitmproxy's ``mitmproxy/io/tnetstring.py``.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any, BinaryIO

from phonehome.errors import InputError
from phonehome.model import WHERE_DNS, WHERE_RAW, Exchange, Notice, Part
from phonehome.protocols.compression import KEPT_AS_SENT, decode_body
from phonehome.protocols.message import request_parts

MiB = 1024 * 1024
MAX_RECORD = 512 * MiB  # one flow, bodies included; mitmproxy keeps whole bodies in memory too
MAX_DEPTH = 64  # a flow nests about 6 levels
MAX_DECODED = 64 * MiB  # a body once its content codings are undone (as protocols/http1.py)
MAX_NUMBER = 64  # characters in an integer or float literal; flows hold ports, times, codes
READ_CHUNK = 1 * MiB
SNIFF_BYTES = 4096

# A length prefix has at most 12 digits in mitmproxy's reader; more means it is not a tnetstring.
_MAX_PREFIX = 12
# The first record opens a dictionary whose first key is a short name, as str (";") or, in
# flows written by Python 2 versions of mitmproxy, as bytes (",").
_SNIFF_RE = re.compile(rb"\A[0-9]{1,12}:[0-9]{1,6}:[A-Za-z_]{1,40}[;,]")

_DEFAULT_PORTS = {"http": 80, "https": 443}
_ENCRYPTED_SCHEMES = frozenset({"https", "wss"})
# mitmproxy writes OpenSSL's protocol names; Exchange.tls_version uses the RFC names.
_TLS_NAMES = {
    "SSLv3": "SSL 3.0",
    "TLSv1": "TLS 1.0",
    "TLSv1.1": "TLS 1.1",
    "TLSv1.2": "TLS 1.2",
    "TLSv1.3": "TLS 1.3",
    "QUIC": "QUIC",
    "QUICv1": "QUIC",
    "QUICv2": "QUIC",
}


@dataclass(frozen=True, slots=True)
class Record:
    """One whole tnetstring at ``offset``: a flow's state when it is a dictionary."""

    offset: int
    value: object


@dataclass(frozen=True, slots=True)
class Damage:
    """A record that could not be read. ``fatal``: framing is lost, nothing after it is read."""

    offset: int
    message: str
    fatal: bool


class _Malformed(Exception):
    """A malformed value inside one record (its frame is intact, so the next one can be read)."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(message)
        self.position = position


class TnetReader:
    """Sans-I/O tnetstring framing: ``feed`` bytes, then ``events`` until it gives nothing more.

    ``close`` says the input ended; a record cut short then becomes a fatal :class:`Damage`.
    """

    def __init__(self, *, max_record: int = MAX_RECORD, max_depth: int = MAX_DEPTH) -> None:
        self.max_record = max_record
        self.max_depth = max_depth
        self._buf = bytearray()
        self._base = 0  # file offset of _buf[0]
        self._stopped = False
        self._closed = False

    @property
    def offset(self) -> int:
        """File offset of the first byte not yet consumed."""
        return self._base

    def feed(self, data: bytes) -> None:
        if not self._stopped:
            self._buf += data

    def close(self) -> None:
        self._closed = True

    def events(self) -> Iterator[Record | Damage]:
        while not self._stopped and self._buf:
            event = self._next()
            if event is None:
                if self._closed:
                    yield self._truncated()
                return
            yield event

    def _stop(self, offset: int, message: str) -> Damage:
        self._stopped = True
        self._buf.clear()
        return Damage(offset, message, fatal=True)

    def _truncated(self) -> Damage:
        start = self._base
        colon = self._buf.find(b":", 0, _MAX_PREFIX + 1)
        if colon > 0 and self._buf[:colon].isdigit():
            need = int(self._buf[:colon]) + colon + 2
            message = f"file ends inside a record ({len(self._buf)} of {need} bytes); the rest is lost"
        else:
            message = "file ends inside a record's length prefix"
        return self._stop(start, message)

    def _next(self) -> Record | Damage | None:
        buf, start = self._buf, self._base
        colon = buf.find(b":", 0, _MAX_PREFIX + 1)
        if colon < 0:
            if len(buf) <= _MAX_PREFIX and buf.isdigit():
                return None  # the prefix may go on in the next piece
            return self._stop(start, "not a tnetstring: bad length prefix")
        if colon == 0 or not buf[:colon].isdigit():
            return self._stop(start, "not a tnetstring: bad length prefix")
        length = int(buf[:colon])
        if length > self.max_record:
            return self._stop(start, f"record of {length} bytes is over the {self.max_record}-byte limit")
        end = colon + 1 + length
        if len(buf) <= end:
            return None
        tag = buf[end]
        payload = bytes(buf[colon + 1 : end])
        del buf[: end + 1]
        self._base += end + 1
        try:
            value = _parse(tag, payload, colon + 1, self.max_depth)
        except _Malformed as exc:
            return Damage(start + exc.position, f"malformed record: {exc}; skipped", fatal=False)
        return Record(start, value)


def _parse(tag: int, data: bytes, at: int, depth: int) -> object:
    """The value of one tnetstring with type ``tag`` and payload ``data`` (at record offset ``at``)."""
    parser = _SCALARS.get(tag)
    if parser is not None:
        return parser(data, at)
    if tag not in (ord("]"), ord("}")):
        raise _Malformed(f"unknown type tag {bytes([tag])!r}", at + len(data))
    if depth <= 0:
        raise _Malformed("nested too deeply", at)
    items: list[object] = []
    pos = 0
    while pos < len(data):
        colon = data.find(b":", pos, pos + _MAX_PREFIX + 1)
        if colon <= pos or not data[pos:colon].isdigit():
            raise _Malformed("bad length prefix", at + pos)
        end = colon + 1 + int(data[pos:colon])
        if end >= len(data):
            raise _Malformed("item runs past the end of its container", at + pos)
        items.append(_parse(data[end], data[colon + 1 : end], at + colon + 1, depth - 1))
        pos = end + 1
    if tag == ord("]"):
        return items
    if len(items) % 2:
        raise _Malformed("dictionary has a key without a value", at)
    out: dict[str | bytes, object] = {}
    for key, value in zip(items[::2], items[1::2], strict=True):
        if not isinstance(key, str | bytes):
            raise _Malformed("dictionary key is not a string", at)
        out[key] = value
    return out


def _number(kind: Callable[[str], object], name: str) -> Callable[[bytes, int], object]:
    def parse(data: bytes, at: int) -> object:
        if len(data) > MAX_NUMBER:
            raise _Malformed(f"{name} literal longer than {MAX_NUMBER} characters", at)
        try:
            return kind(data.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            raise _Malformed(f"invalid {name} literal {data[:20]!r}", at) from None

    return parse


def _boolean(data: bytes, at: int) -> bool:
    if data not in (b"true", b"false"):
        raise _Malformed(f"invalid boolean literal {data[:20]!r}", at)
    return data == b"true"


def _null(data: bytes, at: int) -> None:
    if data:
        raise _Malformed("null with a payload", at)


# Type tags (tnetstrings.info): bytes, str (UTF-8), integer, float, boolean, null.
_SCALARS: dict[int, Callable[[bytes, int], object]] = {
    ord(","): lambda data, _at: data,
    ord(";"): lambda data, _at: data.decode("utf-8", "surrogateescape"),
    ord("#"): _number(int, "integer"),
    ord("^"): _number(float, "float"),
    ord("!"): _boolean,
    ord("~"): _null,
}


def sniff_mitm(head: bytes) -> bool:
    """Whether ``head`` (the first bytes of a file) looks like a mitmproxy flow file."""
    return _SNIFF_RE.match(head[:SNIFF_BYTES]) is not None


def read_mitm(
    path: str, progress: Callable[[int], None] | None = None, *, handle: BinaryIO | None = None
) -> Iterator[Exchange | Notice]:
    """Exchanges and notices for every flow in the flow file at ``path``; the only I/O here. From
    ``handle``, when given, instead of opening ``path`` (it is then closed here)."""
    if handle is None:
        try:
            handle = open(path, "rb")  # noqa: SIM115 - closed in the finally below, the reading is lazy
        except OSError as exc:
            raise InputError(f"cannot read file: {exc.strerror or exc}", source=path) from None
    reader = TnetReader()
    index = 0
    try:
        while True:
            try:
                chunk = handle.read(READ_CHUNK)
            except OSError as exc:
                raise InputError(
                    f"cannot read file: {exc.strerror or exc}", source=path, offset=reader.offset
                ) from None
            if chunk:
                reader.feed(chunk)
            else:
                reader.close()
            for event in reader.events():
                if isinstance(event, Damage):
                    yield Notice(path, event.message, event.offset, damage=True)
                    continue
                yield from record_exchanges(event, index, path)
                index += 1
            if progress is not None:
                progress(reader.offset)
            if not chunk:
                return
    finally:
        handle.close()


def record_exchanges(record: Record, index: int, source: str) -> Iterator[Exchange | Notice]:
    """The exchanges of one record read from ``source`` (``index``: its place in the file)."""
    if not isinstance(record.value, dict):
        yield Notice(source, "record is not a flow (not a dictionary); skipped", record.offset, damage=True)
        return
    problems: list[str] = []
    exchanges = flow_exchanges(record.value, source, problems, fallback_id=f"#{index}")
    for message in problems:
        yield Notice(source, message, record.offset, flow=flow_label(record.value, f"#{index}"))
    yield from exchanges


# -- flow dictionaries -----------------------------------------------------------------------------


def _get(d: object, key: str) -> Any:
    """``d[key]`` for str or (Python 2 era) bytes keys; None when absent or ``d`` is no dict."""
    if not isinstance(d, dict):
        return None
    value = d.get(key)
    return d.get(key.encode()) if value is None else value


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return value if isinstance(value, str) else None


def _raw(value: object) -> bytes | None:
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    return value if isinstance(value, bytes) else None


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _time(*values: object) -> float:
    for value in values:
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
            if math.isfinite(number):
                return number
    return 0.0


def _address(value: object) -> tuple[str, int]:
    """(host, port) of a connection address written as [host, port] (or more, for IPv6)."""
    if isinstance(value, list | tuple) and len(value) >= 2:
        host, port = _text(value[0]), _int(value[1])
        return host or "", port or 0
    return "", 0


def flow_label(state: dict[Any, Any], fallback_id: str) -> str:
    """The flow label of a flow: its mitmproxy id, the same live and in the saved file."""
    return "mitm " + (_text(_get(state, "id")) or fallback_id)


def migrate(state: dict[Any, Any], problems: list[str]) -> dict[Any, Any]:
    """``state`` in the current flow format, by mitmproxy's own migration when it is installed."""
    try:
        from mitmproxy.io import compat
    except ImportError:
        return state
    try:
        # Migration edits the dictionary in place; keep the original for the fallback.
        return dict(compat.migrate_flow(_copy(state)))
    except ValueError as exc:  # a newer format than this mitmproxy knows
        problems.append(f"{exc}; read with the current field names")
    except Exception as exc:  # hostile input breaks the converters in many ways
        problems.append(f"flow format could not be migrated ({type(exc).__name__}); read as it is")
    return state


def _copy(value: object) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def flow_exchanges(
    state: dict[Any, Any],
    source: str,
    problems: list[str],
    *,
    fallback_id: str = "?",
    message: int | None = None,
) -> list[Exchange]:
    """The exchanges of one flow's state dictionary (as in a flow file, or ``flow.get_state()``).

    ``message`` picks the exchange of one WebSocket, TCP or UDP message alone (the live proxy
    audits each message as it passes); by default every exchange of the flow is given.
    """
    state = migrate(state, problems)
    kind = _text(_get(state, "type")) or "http"
    reader = _FLOW_TYPES.get(kind)
    if reader is None:
        problems.append(f"{kind!r} flow: not a kind phonehome reads; skipped")
        return []
    return reader(state, source, flow_label(state, fallback_id), problems, message)


@dataclass(frozen=True, slots=True)
class _Conn:
    client_ip: str
    client_port: int
    server_ip: str
    server_port: int
    sni: str | None
    tls_version: str | None
    tls_cipher: str | None
    transport: str


def _conn(state: dict[Any, Any]) -> _Conn:
    client, server = _get(state, "client_conn"), _get(state, "server_conn")
    client_ip, client_port = _address(_get(client, "peername"))
    # peername is the address actually connected to; address may still be a name.
    server_ip, server_port = _address(_get(server, "peername"))
    if not server_ip:
        server_ip, server_port = _address(_get(server, "address"))
    tls = _get(client, "tls_version")
    transport = _text(_get(client, "transport_protocol")) or "tcp"
    return _Conn(
        client_ip=client_ip,
        client_port=client_port,
        server_ip=server_ip if _is_ip(server_ip) else "",
        server_port=server_port,
        sni=_text(_get(client, "sni")),
        tls_version=_TLS_NAMES.get(_text(tls) or "", _text(tls)),
        tls_cipher=_text(_get(client, "cipher")),
        transport=transport if transport in ("tcp", "udp") else "tcp",
    )


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _http(
    state: dict[Any, Any], source: str, label: str, problems: list[str], message: int | None
) -> list[Exchange]:
    request = _get(state, "request")
    if not isinstance(request, dict):
        problems.append("HTTP flow has no request; skipped")
        return []
    conn = _conn(state)
    scheme = (_text(_get(request, "scheme")) or "http").lower()
    method = _text(_get(request, "method"))
    headers = _pairs(_get(request, "headers"), "request header", problems)
    authority = _raw(_get(request, "authority")) or b""
    names = {name.strip().lower() for name, _ in headers}
    if authority and b"host" not in names:
        # HTTP/2 and HTTP/3 carry the host in :authority (RFC 9113 §8.3.1), as the HAR reader does.
        headers.insert(0, (b"host", authority))
    trailers = _get(request, "trailers")
    if trailers:
        headers += _pairs(trailers, "request trailer", problems)
    path = _raw(_get(request, "path")) or b""
    target = authority if method == "CONNECT" else path  # RFC 9110 §9.3.6: authority-form
    body = _body(request, headers, problems)
    host = _pretty_host(request, headers, conn)
    port = _int(_get(request, "port")) or conn.server_port or _DEFAULT_PORTS.get(scheme, 0)
    server_ip = conn.server_ip
    if not server_ip:
        literal = _text(_get(request, "host")) or ""
        server_ip = literal if _is_ip(literal) else ""
    http = Exchange(
        source=source,
        flow=label,
        time=_time(_get(request, "timestamp_start"), _get(state, "timestamp_created")),
        transport=conn.transport,
        protocol="http",
        client_ip=conn.client_ip,
        client_port=conn.client_port,
        server_ip=server_ip,
        server_port=port,
        parts=request_parts(target, headers, body),
        host=host,
        url=_url(scheme, host, port, path) if method != "CONNECT" else None,
        method=method,
        encrypted=scheme in _ENCRYPTED_SCHEMES,
        tls_version=conn.tls_version if scheme in _ENCRYPTED_SCHEMES else None,
        tls_cipher=conn.tls_cipher if scheme in _ENCRYPTED_SCHEMES else None,
        name_source="mitm",
    )
    if message is not None:
        return websocket_exchanges(state, http, problems, only=message)
    return [http, *websocket_exchanges(state, http, problems)]


def _pairs(raw: object, what: str, problems: list[str]) -> list[tuple[bytes, bytes]]:
    out: list[tuple[bytes, bytes]] = []
    if raw is None:
        return out
    if not isinstance(raw, list | tuple):
        problems.append(f"{what}s are not a list; skipped")
        return out
    bad = 0
    for item in raw:
        if isinstance(item, list | tuple) and len(item) == 2:
            name, value = _raw(item[0]), _raw(item[1])
            if name is not None and value is not None:
                out.append((name, value))
                continue
        bad += 1
    if bad:
        problems.append(f"{bad} malformed {what}(s) skipped")
    return out


def _body(request: dict[Any, Any], headers: list[tuple[bytes, bytes]], problems: list[str]) -> bytes:
    """The request body as the application wrote it: content codings undone (RFC 9110 §8.4)."""
    content = _get(request, "content")
    if content is None:
        if (_text(_get(request, "method")) or "").upper() not in ("GET", "HEAD", "OPTIONS", "CONNECT"):
            problems.append("request body was not recorded (streamed); only the target and headers scanned")
        return b""
    body = _raw(content)
    if body is None:
        problems.append("request content is not bytes; body skipped")
        return b""
    codings = ", ".join(
        v.decode("latin-1") for n, v in headers if n.strip().lower() == b"content-encoding" and v.strip()
    )
    body, warnings = decode_body(codings, body, MAX_DECODED)
    problems.extend(w if w == KEPT_AS_SENT else f"request body: {w}" for w in warnings)
    return body


def _pretty_host(request: dict[Any, Any], headers: list[tuple[bytes, bytes]], conn: _Conn) -> str | None:
    """The name the phone used: Host (or :authority), the request's host, or the SNI for an address."""
    for name, value in headers:
        if name.strip().lower() == b"host" and value.strip():
            host = value.strip().decode("latin-1")
            # RFC 9110 §7.2: Host is uri-host [":" port]; an IPv6 literal is in brackets.
            if host.startswith("["):
                return host[1 : host.find("]")] if "]" in host else host
            return host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    # In regular mode the request's host is the name from the absolute URL; in transparent and
    # WireGuard modes it is the address connected to, and the SNI names it better.
    target = _text(_get(request, "host")) or None
    if target and not _is_ip(target):
        return target
    return conn.sni or target


def _url(scheme: str, host: str | None, port: int, path: bytes) -> str:
    name = host or ""
    if ":" in name:
        name = f"[{name}]"
    if port != _DEFAULT_PORTS.get(scheme):
        name = f"{name}:{port}"
    return f"{scheme}://{name}{path.decode('utf-8', 'surrogateescape')}"


def websocket_exchanges(
    state: dict[Any, Any], http: Exchange, problems: list[str], *, only: int | None = None
) -> list[Exchange]:
    """One ``websocket`` exchange per message the client sent (``only``: just that message)."""
    messages = _get(_get(state, "websocket"), "messages")
    if messages is None:
        return []
    if not isinstance(messages, list | tuple):
        problems.append("WebSocket messages are not a list; skipped")
        return []
    picked = messages if only is None else messages[only : only + 1 or None]
    out: list[Exchange] = []
    bad = 0
    for message in picked:
        # [opcode, from_client, content, timestamp, dropped?, injected?] (mitmproxy websocket.py)
        if not isinstance(message, list | tuple) or len(message) < 4 or _raw(message[2]) is None:
            bad += 1
            continue
        if message[1] is not True:
            continue  # what the server sent is not the phone's to leak
        out.append(
            replace(
                http,
                time=_time(message[3], http.time),
                protocol="websocket",
                parts=(Part(WHERE_RAW, _raw(message[2]) or b""),),
                method=None,
            )
        )
    if bad:
        problems.append(f"{bad} malformed WebSocket message(s) skipped")
    return out


def _stream(
    state: dict[Any, Any], source: str, label: str, problems: list[str], only: int | None
) -> list[Exchange]:
    """TCP and UDP flows: one raw exchange per message the client sent ([from_client, content, time])."""
    conn = _conn(state)
    messages = _get(state, "messages")
    if not isinstance(messages, list | tuple):
        problems.append("flow messages are not a list; skipped")
        return []
    transport = "udp" if _text(_get(state, "type")) == "udp" else "tcp"
    out: list[Exchange] = []
    for message in messages if only is None else messages[only : only + 1 or None]:
        if not isinstance(message, list | tuple) or len(message) < 3 or message[0] is not True:
            continue
        data = _raw(message[1])
        if not data:
            continue
        out.append(
            Exchange(
                source=source,
                flow=label,
                time=_time(message[2]),
                transport=transport,
                protocol="raw",
                client_ip=conn.client_ip,
                client_port=conn.client_port,
                server_ip=conn.server_ip,
                server_port=conn.server_port,
                parts=(Part(WHERE_RAW, data),),
                host=conn.sni,
                encrypted=conn.tls_version is not None,
                tls_version=conn.tls_version,
                tls_cipher=conn.tls_cipher,
                name_source="mitm" if conn.sni else None,
            )
        )
    return out


def _dns(
    state: dict[Any, Any], source: str, label: str, problems: list[str], _message: int | None
) -> list[Exchange]:
    """A DNS flow: the names the client asked for (mitmproxy dns.py Question: name, type, class_)."""
    conn = _conn(state)
    questions = _get(_get(state, "request"), "questions")
    if not isinstance(questions, list | tuple):
        problems.append("DNS flow has no question list; skipped")
        return []
    names = [_raw(_get(q, "name")) for q in questions]
    parts = tuple(Part(WHERE_DNS, name) for name in names if name)
    if not parts:
        return []
    return [
        Exchange(
            source=source,
            flow=label,
            time=_time(_get(_get(state, "request"), "timestamp"), _get(state, "timestamp_created")),
            transport=conn.transport,
            protocol="dns",
            client_ip=conn.client_ip,
            client_port=conn.client_port,
            server_ip=conn.server_ip,
            server_port=conn.server_port or 53,
            parts=parts,
        )
    ]


# Flow kinds (the state's "type") and how each becomes exchanges.
_FLOW_TYPES: dict[str, Callable[[dict[Any, Any], str, str, list[str], int | None], list[Exchange]]] = {
    "http": _http,
    "tcp": _stream,
    "udp": _stream,
    "dns": _dns,
}
