"""From packets to exchanges: the flow table.

Sans-I/O: :meth:`FlowTable.packet` takes decoded packets in capture order and collects the
:class:`~phonehome.model.Exchange` s and :class:`~phonehome.model.Notice` s they complete;
:meth:`FlowTable.drain` hands them over. Only what the phone sent is scanned: the client side of
each TCP connection (reassembled, then read as HTTP/1, HTTP/2, a TLS ClientHello, DNS, or raw bytes)
and the datagrams of the side that spoke first on UDP. DNS answers name the addresses the phone
then talks to.

When the key store holds secrets, a TLS connection's records are decrypted
(:mod:`~phonehome.protocols.tlsrecords`): the server's stream is followed up to its ServerHello, and
what the client sent inside TLS is read as HTTP/1, HTTP/2 or raw bytes, marked encrypted with the
TLS version and cipher. QUIC Initial packets name the server of HTTP/3 connections
(:mod:`~phonehome.protocols.quic`).
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from phonehome.errors import InputError
from phonehome.model import WHERE_DNS, WHERE_RAW, WHERE_SNI, Exchange, Notice, Part
from phonehome.protocols import dns, http1, http2, tls
from phonehome.protocols.keylog import KeyStore
from phonehome.protocols.message import request_parts, split_target, target_parts
from phonehome.protocols.tcp import Gap, Reassembler

if TYPE_CHECKING:
    # Imported where they are used: with cryptography, they cost about 20 ms of every run's start,
    # and only key logs (tlsrecords) and QUIC Initials (quic) need them.
    from phonehome.protocols import quic, tlsrecords

TCP, UDP = 6, 17
SYN, FIN, RST, ACK = 0x02, 0x01, 0x04, 0x10
DNS_PORTS = frozenset({53, 5353, 5355})
# Well-known service ports: when a capture starts mid-connection, the side on one of these is the server.
SERVER_PORTS = frozenset({53, 80, 443, 853, 5222, 5228, 8000, 8080, 8088, 8443, 8888, 1883, 8883})
QUIC_PORTS = frozenset({443, 80})
RAW_CHUNK = 64 << 10
RAW_OVERLAP = 256
# How a notice names the protocol of the request it is about.
_HTTP_WORD = {"http": "HTTP", "http2": "HTTP/2"}
MAX_TUNNELS = 16  # CONNECT inside CONNECT: a proxy chain is a few deep


@dataclass(slots=True)
class Limits:
    max_flows: int = 65536
    idle_timeout: float = 900.0
    max_stream_buffer: int = 4 << 20
    # Bytes held across all TCP flows (out of order, and in parsers: partial headers, bodies being
    # read, TLS records); past it the flows holding most are closed early, with a warning.
    max_total_held: int = 256 << 20
    max_names: int = 1 << 20  # addresses remembered from DNS answers


@lru_cache(maxsize=1 << 16)  # a capture talks to few addresses, many times each
def ip_text(packed: bytes) -> str:
    return str(ipaddress.ip_address(packed))


@dataclass(frozen=True, slots=True)
class TlsContext:
    """The TLS connection bytes were decrypted from."""

    version: str | None  # e.g. "TLS 1.3"
    cipher: str | None  # IANA name


class _TcpFlow:
    __slots__ = (
        "client",
        "client_fin",
        "client_read",
        "consumer",
        "key",
        "label",
        "lane_keys",
        "last",
        "reasm",
        "reply_reasm",
        "reply_sink",
        "server",
        "server_fin",
    )

    def __init__(self, client: tuple[bytes, int], server: tuple[bytes, int], label: str, limit: int) -> None:
        self.client = client
        self.server = server
        self.label = label
        self.reasm = Reassembler(max_buffered=limit)
        self.consumer: _Consumer | None = None
        self.last = 0.0
        self.client_fin = False
        self.server_fin = False
        # False once the consumer reads nothing more the client sends (a TLS connection past its
        # ClientHello, without secrets to decrypt it): its payload is then passed over.
        self.client_read = True
        # The server's stream, reassembled only while a TLS decryptor needs its handshake.
        self.reply_reasm: Reassembler | None = None
        self.reply_sink: _Tls | None = None
        self.key = (client[0], client[1], server[0], server[1])  # in FlowTable._tcp
        # For IPv4: the raw address-and-port bytes of each direction (client to server, server to
        # client), as FlowTable.lanes knows them.
        self.lane_keys: tuple[bytes, bytes] | None = None
        if len(client[0]) == 4 and len(server[0]) == 4:
            c, s = client[1].to_bytes(2, "big"), server[1].to_bytes(2, "big")
            self.lane_keys = (client[0] + server[0] + c + s, server[0] + client[0] + s + c)


class _Consumer:
    """Reads one client stream; subclasses per protocol."""

    tls: TlsContext | None = None  # set on consumers of bytes decrypted from TLS

    def __init__(self, table: FlowTable, flow: _TcpFlow) -> None:
        self.table = table
        self.flow = flow

    def data(self, chunk: bytes) -> None:
        raise NotImplementedError

    def gap(self, gap: Gap) -> None:
        pass

    def close(self) -> None:
        pass

    def held(self) -> int:
        """Bytes of the stream this consumer holds right now."""
        return 0


class _Http(_Consumer):
    def __init__(self, table: FlowTable, flow: _TcpFlow) -> None:
        super().__init__(table, flow)
        self.parser = http1.RequestParser()
        self.tunnel: _Consumer | None = None
        self.depth = 0  # CONNECT tunnels this stream is already inside

    def data(self, chunk: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel.data(chunk)
            return
        parser = self.parser
        # A request wholly in one piece is taken at once; the parser reads anything else.
        taken = parser.take_request(chunk)
        if taken is not None:
            request, used = taken
            self.table.http_request(self.flow, request, self.tls)
            if used == len(chunk):
                return
            chunk = chunk[used:]
        parser.receive_data(chunk)
        self._pump()

    def held(self) -> int:
        return self.parser.held + (self.tunnel.held() if self.tunnel is not None else 0)

    def gap(self, gap: Gap) -> None:
        if self.tunnel is not None:
            self.tunnel.gap(gap)
            return
        self.parser.receive_gap(gap.length)
        self.table.notice(f"{gap.length} bytes missing at stream offset {gap.offset}", self.flow.label)
        self._pump()

    def close(self) -> None:
        if self.tunnel is not None:
            self.tunnel.close()
            return
        self.parser.receive_eof()
        self._pump()

    def _pump(self) -> None:
        while True:
            event = self.parser.next_event()
            if isinstance(event, http1.Request):
                self.table.http_request(self.flow, event, self.tls)
                if event.method == "CONNECT":
                    rest = self.parser.take_tunnel_data()
                    if self.depth >= MAX_TUNNELS:
                        # Each tunnel reads its bytes one call deeper: a stream of nothing but CONNECTs
                        # would otherwise exhaust the stack within one segment.
                        self.table.notice(
                            f"CONNECT tunnels nested over {MAX_TUNNELS} deep; the rest read as raw bytes",
                            self.flow.label,
                        )
                        self.tunnel = _Raw(self.table, self.flow)
                    else:
                        self.tunnel = _Sniffing(self.table, self.flow)
                        self.tunnel.depth = self.depth + 1
                    if rest:
                        self.tunnel.data(rest)
                    return
            elif isinstance(event, http1.ParseWarning):
                self.table.notice(f"HTTP: {event.message} at stream offset {event.offset}", self.flow.label)
            else:
                return


class _Tls(_Consumer):
    """A TLS connection: its ClientHello, and when the key store has its secrets, what it carried."""

    def __init__(self, table: FlowTable, flow: _TcpFlow) -> None:
        super().__init__(table, flow)
        self.reader: tls.ClientHelloReader | None = tls.ClientHelloReader()
        self.head = bytearray()  # the client's bytes until its ClientHello is read, for the decryptor
        self.decryptor: tlsrecords.TlsDecryptor | None = None
        self.inner: _Consumer | None = None
        self.plain_head = b""

    def data(self, chunk: bytes) -> None:
        if self.decryptor is not None:
            from phonehome.protocols import tlsrecords

            self.decryptor.receive(tlsrecords.CLIENT, chunk)
            self._pump()
            return
        if self.reader is None:
            return  # application data: encrypted, nothing to read without keys
        keys = self.table.keys
        if keys:
            self.head += chunk
        self.reader.receive_data(chunk)
        try:
            hello = self.reader.result()
        except InputError as exc:
            self.table.notice(f"TLS: {exc.message}", self.flow.label)
            self.reader = None
            self.head = bytearray()
            self.table.stop_reading(self.flow)
            return
        if isinstance(hello, tls.ClientHello):
            self.reader = None
            self.table.client_hello(self.flow, hello)
            if not keys:
                self.table.stop_reading(self.flow)  # application data: encrypted, nothing to read
            else:
                from phonehome.protocols import tlsrecords

                self.decryptor = tlsrecords.TlsDecryptor(keys)
                self.flow.reply_reasm = Reassembler(max_buffered=self.table.limits.max_stream_buffer)
                self.flow.reply_sink = self
                self.table.set_lanes(self.flow)
                head, self.head = bytes(self.head), bytearray()
                self.decryptor.receive(tlsrecords.CLIENT, head)
                self._pump()

    def gap(self, gap: Gap) -> None:
        if self.decryptor is not None:
            from phonehome.protocols import tlsrecords

            self.decryptor.receive_gap(tlsrecords.CLIENT, gap.length)
            self._pump()

    def held(self) -> int:
        held = len(self.head) + len(self.plain_head)
        if self.decryptor is not None:
            held += self.decryptor.held
        return held + (self.inner.held() if self.inner is not None else 0)

    def reply(self, item: bytes | Gap) -> None:
        """The server's stream, until its ServerHello has been read."""
        decryptor = self.decryptor
        if decryptor is None:
            return
        from phonehome.protocols import tlsrecords

        if isinstance(item, Gap):
            decryptor.receive_gap(tlsrecords.SERVER, item.length)
        else:
            decryptor.receive(tlsrecords.SERVER, item)
        if decryptor.server_hello_seen or isinstance(item, Gap):
            # The client's records need nothing more from the server's side.
            self.flow.reply_reasm = None
            self.flow.reply_sink = None
            self.table.set_lanes(self.flow)
        self._pump()

    def close(self) -> None:
        decryptor = self.decryptor
        if decryptor is None:
            return
        decryptor.close()
        self._pump()
        if self.inner is None and self.plain_head:
            self._choose_inner()
        if self.inner is not None:
            self.inner.close()
            self.inner = None
        problems = decryptor.problems()
        if problems:
            self.table.notice("TLS: " + "; ".join(problems), self.flow.label)
        self.decryptor = None

    def _pump(self) -> None:
        from phonehome.protocols import tlsrecords

        assert self.decryptor is not None
        for event in self.decryptor.events():
            if event.direction != tlsrecords.CLIENT:
                continue
            if isinstance(event, tlsrecords.Interrupted):
                # What follows in the client's stream cannot be read; the parser sees its end here.
                if self.inner is None and self.plain_head:
                    self._choose_inner()
                if self.inner is not None:
                    self.inner.close()
                    self.inner = None
                self.plain_head = b""
            elif self.inner is not None:
                self.inner.data(event.data)
            else:
                self.plain_head += event.data
                head = self.plain_head
                # Enough bytes to tell HTTP/2 (its 24-byte preface) from HTTP/1 or anything else.
                if len(head) >= len(http2.PREFACE) or (
                    len(head) >= 16 and not http2.looks_like_preface(head)
                ):
                    self._choose_inner()

    def _choose_inner(self) -> None:
        head, self.plain_head = self.plain_head, b""
        kind: Callable[[FlowTable, _TcpFlow], _Consumer]
        if http2.looks_like_preface(head):
            kind = _Http2
        elif http1.looks_like_request(head) and b" " in head[:32]:
            kind = _Http
        else:
            kind = _Raw
        assert self.decryptor is not None
        inner = kind(self.table, self.flow)
        inner.tls = TlsContext(self.decryptor.version_name, self.decryptor.cipher_name)
        self.inner = inner
        inner.data(head)


class _Http2(_Consumer):
    """HTTP/2 from the client: inside TLS, or cleartext with prior knowledge (h2c)."""

    def __init__(self, table: FlowTable, flow: _TcpFlow) -> None:
        super().__init__(table, flow)
        self.reader = http2.RequestReader()

    def data(self, chunk: bytes) -> None:
        self.reader.receive_data(chunk)
        self._pump()

    def gap(self, gap: Gap) -> None:
        self.reader.receive_gap(gap.length)
        self._pump()

    def close(self) -> None:
        self.reader.receive_eof()
        self._pump()

    def held(self) -> int:
        return self.reader.held

    def _pump(self) -> None:
        for event in self.reader.events():
            if isinstance(event, http2.Request):
                self.table.http2_request(self.flow, event, self.tls)
            else:
                self.table.notice(f"{event.message} (stream offset {event.offset})", self.flow.label)


class _Raw(_Consumer):
    def __init__(self, table: FlowTable, flow: _TcpFlow) -> None:
        super().__init__(table, flow)
        self.buf = bytearray()
        self.overlap = b""

    def data(self, chunk: bytes) -> None:
        self.buf += chunk
        if len(self.buf) >= RAW_CHUNK:
            self._emit()

    def gap(self, gap: Gap) -> None:
        self._emit()
        self.overlap = b""  # never glue bytes across a hole

    def close(self) -> None:
        self._emit()

    def held(self) -> int:
        return len(self.buf)

    def _emit(self) -> None:
        if not self.buf:
            return
        data = self.overlap + bytes(self.buf)
        self.overlap = data[-RAW_OVERLAP:]
        self.buf.clear()
        self.table.raw(self.flow, data, self.tls)


class _DnsTcp(_Consumer):
    def __init__(self, table: FlowTable, flow: _TcpFlow) -> None:
        super().__init__(table, flow)
        self.buf = b""

    def data(self, chunk: bytes) -> None:
        messages, self.buf = dns.split_tcp_dns(self.buf + chunk)
        for message in messages:
            self.table.dns_payload(message, self.flow.client, self.flow.server, self.flow.label, "tcp", True)

    def gap(self, gap: Gap) -> None:
        self.buf = b""

    def held(self) -> int:
        return len(self.buf)


class _Sniffing(_Consumer):
    """The first bytes of a stream decide how it is read."""

    def __init__(self, table: FlowTable, flow: _TcpFlow) -> None:
        super().__init__(table, flow)
        self.head = b""
        self.depth = 0  # CONNECT tunnels around this stream (see _Http)

    def data(self, chunk: bytes) -> None:
        self.head += chunk
        head = self.head
        if len(head) < 16:
            if len(head) < 3:
                return
            if not tls.looks_like_tls(head) and b" " not in head and http1.looks_like_request(head):
                return  # could still become "METHOD "
        self._choose(head)

    def gap(self, gap: Gap) -> None:
        # Bytes before a hole are read on their own; what follows the hole is sniffed afresh.
        if self.head:
            consumer = self._choose(self.head)
            consumer.gap(gap)
            self.flow.consumer = _Sniffing(self.table, self.flow)

    def close(self) -> None:
        if self.head:
            self._choose(self.head).close()

    def held(self) -> int:
        return len(self.head)

    def _choose(self, head: bytes) -> _Consumer:
        kind: Callable[[FlowTable, _TcpFlow], _Consumer]
        if self.flow.server[1] in DNS_PORTS:
            kind = _DnsTcp
        elif tls.looks_like_tls(head):
            kind = _Tls
        elif http2.looks_like_preface(head):
            kind = _Http2
        elif http1.looks_like_request(head) and b" " in head[:32]:
            kind = _Http
        else:
            kind = _Raw
        consumer = kind(self.table, self.flow)
        if isinstance(consumer, _Http):
            consumer.depth = self.depth
        self.flow.consumer = consumer
        self.head = b""
        consumer.data(head)
        return consumer


class FlowTable:
    """Packets in, exchanges out, with bounded state."""

    def __init__(self, source: str, limits: Limits | None = None, keys: KeyStore | None = None) -> None:
        self.source = source
        self.limits = limits or Limits()
        # TLS secrets by client random (key log files, pcapng Decryption Secrets Blocks).
        self.keys = keys if keys is not None else KeyStore()
        # UDP flows whose QUIC Initial packets are being read (None once read, or unreadable).
        self._quic: OrderedDict[tuple[bytes, int, bytes, int], quic.InitialReader | None] = OrderedDict()
        # server address -> (the name the phone used for it, where that name was seen: "dns" or "sni")
        self.names: dict[str, tuple[str, str]] = {}
        self._tcp: OrderedDict[tuple[bytes, int, bytes, int], _TcpFlow] = OrderedDict()
        self._udp: OrderedDict[tuple[bytes, int, bytes, int], tuple[bytes, int]] = OrderedDict()
        self._out: list[Exchange | Notice] = []
        self._now = 0.0
        self._count = 0
        self._fed = 0  # TCP payload bytes taken in since the bytes held were last counted
        self._stats = {"tcp_flows": 0, "udp_datagrams": 0, "evicted": 0, "encrypted_bytes": 0}
        # The capture reader's fast lane (sources.capture.Lane): each direction of every open IPv4
        # TCP flow -> (the flow, whether all its packets can be passed over). Packets from the
        # server are never read unless a TLS decryptor follows its handshake, so that direction
        # is passed over whole; from the client, only packets without payload or SYN/FIN/RST,
        # and its payload too once the consumer reads nothing more of it (stop_reading).
        self.lanes: dict[bytes, tuple[_TcpFlow, bool]] = {}

    @property
    def stats(self) -> dict[str, int]:
        """Counts of what the table saw: packets, TCP flows, UDP datagrams, flows evicted, ..."""
        return {"packets": self._count, **self._stats}

    # ---- output -------------------------------------------------------------------------------

    def drain(self) -> list[Exchange | Notice]:
        out, self._out = self._out, []
        return out

    def notice(self, message: str, flow: str | None = None, offset: int | None = None) -> None:
        self._out.append(Notice(self.source, message, offset, flow))

    def _name_of(self, ip: str) -> tuple[str, str] | tuple[None, None]:
        return self.names.get(ip) or (None, None)

    def _exchange(
        self,
        flow_label: str,
        transport: str,
        protocol: str,
        client: tuple[bytes, int],
        server: tuple[bytes, int],
        parts: tuple[Part, ...],
        *,
        host: str | None = None,
        url: str | None = None,
        method: str | None = None,
        encrypted: bool = False,
        name_source: str | None = None,
        tls_context: TlsContext | None = None,
    ) -> None:
        server_ip = ip_text(server[0])
        if not host:
            host, name_source = self._name_of(server_ip)
        # Positionally, in Exchange's field order: an exchange is made for every request.
        self._out.append(
            Exchange(
                self.source,
                flow_label,
                self._now,
                transport,
                protocol,
                ip_text(client[0]),
                client[1],
                server_ip,
                server[1],
                parts,
                host,
                url,
                method,
                encrypted or tls_context is not None,
                tls_context.version if tls_context else None,
                tls_context.cipher if tls_context else None,
                name_source,
            )
        )

    def http_request(
        self, flow: _TcpFlow, request: http1.Request, tls_context: TlsContext | None = None
    ) -> None:
        host, name_source = self._request_host(flow, http1.host_of(request))
        target = request.target
        path, query = split_target(target)
        if target.startswith((b"http://", b"https://")):
            url = target.decode("latin-1")
        else:
            scheme, default_port = ("https", 443) if tls_context else ("http", 80)
            authority = host or ip_text(flow.server[0])
            if flow.server[1] != default_port:
                authority = f"{authority}:{flow.server[1]}"
            url = f"{scheme}://{authority}{path.decode('latin-1')}" + (
                f"?{query.decode('latin-1')}" if query else ""
            )
        parts = target_parts(path, query, request.headers, request.body)
        self._request(
            flow, "http", parts, host, url, request.method, name_source, tls_context, request.warnings
        )

    def http2_request(self, flow: _TcpFlow, request: http2.Request, tls_context: TlsContext | None) -> None:
        host, name_source = self._request_host(flow, request.host)
        authority = request.authority or host or ip_text(flow.server[0])
        url = f"{request.scheme}://{authority}{request.path.decode('latin-1')}"
        # The same parts as an HTTP/1 request: :path gives path and query, :authority is Host
        # (RFC 9113 §8.3.1), and the other pseudo-headers say nothing about the user.
        headers = [
            (b"host" if name == b":authority" else name, value)
            for name, value in request.headers
            if not name.startswith(b":") or name == b":authority"
        ]
        parts = request_parts(request.path, headers, request.body)
        self._request(
            flow, "http2", parts, host, url, request.method, name_source, tls_context, request.warnings
        )

    def _request_host(self, flow: _TcpFlow, host: str | None) -> tuple[str | None, str | None]:
        """The host a request named, else the name the phone used for its server (DNS, SNI)."""
        if host:
            return host, "http"
        return self._name_of(ip_text(flow.server[0]))

    def _request(
        self,
        flow: _TcpFlow,
        protocol: str,
        parts: tuple[Part, ...],
        host: str | None,
        url: str,
        method: str,
        name_source: str | None,
        tls_context: TlsContext | None,
        warnings: Sequence[str],
    ) -> None:
        """An HTTP request as an exchange, and its parser's warnings as notices naming it."""
        self._exchange(
            flow.label,
            "tcp",
            protocol,
            flow.client,
            flow.server,
            parts,
            host=host,
            url=url,
            method=method,
            name_source=name_source,
            tls_context=tls_context,
        )
        word = _HTTP_WORD[protocol]
        for warning in warnings:
            self.notice(f"{word} {method} {url}: {warning}", flow.label)

    def client_hello(self, flow: _TcpFlow, hello: tls.ClientHello) -> None:
        parts = (Part(WHERE_SNI, hello.server_name.encode()),) if hello.server_name else ()
        if hello.server_name:
            self.names.setdefault(ip_text(flow.server[0]), (hello.server_name, "sni"))
        self._exchange(
            flow.label,
            "tcp",
            "tls",
            flow.client,
            flow.server,
            parts,
            host=hello.server_name,
            encrypted=True,
            name_source="sni",
        )

    def raw(self, flow: _TcpFlow, data: bytes, tls_context: TlsContext | None = None) -> None:
        parts = (Part(WHERE_RAW, data),)
        self._exchange(flow.label, "tcp", "raw", flow.client, flow.server, parts, tls_context=tls_context)

    def dns_payload(
        self,
        payload: bytes,
        sender: tuple[bytes, int],
        receiver: tuple[bytes, int],
        label: str,
        transport: str,
        from_client: bool,
    ) -> None:
        try:
            message = dns.parse_dns(payload)
        except InputError as exc:
            self.notice(f"DNS: {exc.message}", label)
            return
        if message.is_response:
            asked = message.queries[0][0] if message.queries else None
            for owner, rtype, data in message.answers:
                if rtype in (1, 28):
                    self.names.pop(data, None)  # re-inserted as the newest
                    self.names[data] = (asked or owner, "dns")
            # A record costs 16 bytes on the wire and ten times that here: answers that name an
            # endless run of addresses must not grow memory without bound. Oldest forgotten first.
            while len(self.names) > self.limits.max_names:
                del self.names[next(iter(self.names))]
                if not self._stats.get("names_forgotten"):
                    self.notice(f"more than {self.limits.max_names} addresses named by DNS; oldest forgotten")
                self._stats["names_forgotten"] = self._stats.get("names_forgotten", 0) + 1
            return
        if not from_client:
            return
        for name, _qtype in message.queries:
            self._exchange(
                label,
                transport,
                "dns",
                sender,
                receiver,
                (Part(WHERE_DNS, name.encode()),),
                host=name,
                name_source="dns",
            )

    # ---- input --------------------------------------------------------------------------------

    def packet(
        self,
        time: float,
        proto: int,
        src: bytes,
        dst: bytes,
        sport: int,
        dport: int,
        flags: int,
        seq: int,
        payload: bytes,
    ) -> bool:
        """One decoded packet, in capture order: True when output waits in :meth:`drain`. (The
        capture reader, whose lane the table is, hands it every packet it decodes: capture.Lane.)"""
        self._now = time
        if proto == TCP:
            self._tcp_packet(src, dst, sport, dport, flags, seq, payload)
        elif proto == UDP:
            self._udp_packet(src, dst, sport, dport, payload)
        self._count += 1
        if self._count & 0xFFF == 0:
            self._expire()
        return bool(self._out)

    def _tcp_packet(
        self, src: bytes, dst: bytes, sport: int, dport: int, flags: int, seq: int, payload: bytes
    ) -> None:
        key = (src, sport, dst, dport)
        flow = self._tcp.get(key)
        from_client = True
        if flow is None:
            flow = self._tcp.get((dst, dport, src, sport))
            from_client = False
        if flow is None:
            if flags & RST or (not payload and not flags & SYN):
                return
            client_is_src = _client_is_sender(flags, sport, dport)
            if client_is_src:
                client, server = (src, sport), (dst, dport)
            else:
                client, server = (dst, dport), (src, sport)
                key = (dst, dport, src, sport)
            label = f"tcp {_endpoint(client)}>{_endpoint(server)}"
            flow = _TcpFlow(client, server, label, self.limits.max_stream_buffer)
            self._tcp[key] = flow
            self.set_lanes(flow)
            self._stats["tcp_flows"] += 1
            from_client = client_is_src
            if len(self._tcp) > self.limits.max_flows:
                _old_key, old = self._tcp.popitem(last=False)
                self._stats["evicted"] += 1
                self.notice(
                    f"more than {self.limits.max_flows} open TCP flows; oldest closed early", old.label
                )
                self._close(old)
        else:
            self._tcp.move_to_end(key if from_client else (dst, dport, src, sport))
        flow.last = self._now
        if from_client and payload and not flow.client_read and not flags & (SYN | FIN | RST):
            return  # as the fast lane passes it over (see stop_reading)
        if payload and (from_client or flow.reply_reasm is not None):
            # What flows hold can only have grown by what came in: count it now and then.
            self._fed += len(payload)
            if self._fed > self.limits.max_total_held >> 4:
                self._fed = 0
                self._bound_held()
                if self._tcp.get(flow.key) is not flow:
                    return  # this flow was one of those closed
        if from_client:
            if payload or flags & (SYN | FIN):
                flow.reasm.add(seq, payload, syn=bool(flags & SYN), fin=bool(flags & FIN))
                self._feed(flow, flow.reasm.pop())
            if flags & FIN:
                flow.client_fin = True
        elif flow.reply_reasm is not None:
            self._reply(flow, flags, seq, payload)
        elif flags & FIN:
            flow.server_fin = True
        if flags & RST or (flow.client_fin and flow.server_fin):
            self._tcp.pop(key if from_client else (dst, dport, src, sport), None)
            self._close(flow)

    def set_lanes(self, flow: _TcpFlow) -> None:
        """Enter an open flow's directions in :attr:`lanes`: when it opens, and whenever what is read
        of a side changes (its ``client_read``, or whether a TLS decryptor follows the server's
        side: its ``reply_reasm``). A flow already closed (its consumer reads what it held when
        it closes) has no lanes."""
        if flow.lane_keys is not None and self._tcp.get(flow.key) is flow:
            to_server, to_client = flow.lane_keys
            self.lanes[to_server] = (flow, not flow.client_read)
            self.lanes[to_client] = (flow, flow.reply_reasm is None)

    def stop_reading(self, flow: _TcpFlow) -> None:
        """The client's payload means nothing more to the flow's consumer: pass it over."""
        flow.client_read = False
        self.set_lanes(flow)

    def _bound_held(self) -> None:
        """Close the flows holding most, until all TCP flows together hold at most the limit."""
        limit = self.limits.max_total_held
        holding: list[tuple[int, tuple[bytes, int, bytes, int]]] = []
        total = 0
        for key, flow in self._tcp.items():
            held = flow.reasm.buffered + (flow.consumer.held() if flow.consumer is not None else 0)
            if flow.reply_reasm is not None:
                held += flow.reply_reasm.buffered
            if held:
                holding.append((held, key))
                total += held
        if total <= limit:
            return
        holding.sort(reverse=True)
        for held, key in holding:
            flow = self._tcp.pop(key)
            self._stats["evicted"] += 1
            self.notice(
                f"over {limit} bytes held across all TCP flows; this flow, holding {held}, closed early",
                flow.label,
            )
            self._close(flow)
            total -= held
            if total <= limit:
                break

    def pass_over(self, flow: _TcpFlow, time: float, count: int = 1) -> bool:
        """``count`` packets of ``flow`` in a row the reader did not decode, the last at ``time``:
        what :meth:`packet` would have done with them.

        Such packets (see :attr:`lanes`) only move the clock and the flow's idle time. True when
        that expired flows whose output waits in :meth:`drain`.
        """
        self._now = time
        self._tcp.move_to_end(flow.key)
        flow.last = time
        self._count += count
        if self._count & 0xFFF < count:  # the count passed a multiple of 4096: expiry is due
            self._expire()
            return bool(self._out)
        return False

    def passable(self) -> int:
        """Packets until the next expiry check (see capture.Lane): a run passed over stops there."""
        return 0x1000 - (self._count & 0xFFF)

    def _feed(self, flow: _TcpFlow, items: list[bytes | Gap]) -> None:
        for item in items:
            if flow.consumer is None:
                flow.consumer = _Sniffing(self, flow)
            if isinstance(item, Gap):
                if item.bounded:
                    self.notice(
                        f"over {self.limits.max_stream_buffer} bytes (or too many pieces) held out of order; "
                        f"{item.length} missing bytes at stream offset {item.offset} no longer waited for",
                        flow.label,
                    )
                flow.consumer.gap(item)
            elif item:
                flow.consumer.data(item)

    def _reply(self, flow: _TcpFlow, flags: int, seq: int, payload: bytes) -> None:
        """A server segment of a TLS connection whose handshake the decryptor still needs."""
        reasm, sink = flow.reply_reasm, flow.reply_sink
        assert reasm is not None and sink is not None
        if flags & FIN:
            flow.server_fin = True
        reasm.add(seq, payload, syn=bool(flags & SYN), fin=bool(flags & FIN))
        for item in reasm.pop():
            if flow.reply_reasm is None:
                break  # the decryptor has what it needed
            sink.reply(item)

    def _close(self, flow: _TcpFlow) -> None:
        if flow.lane_keys is not None:
            for lane in flow.lane_keys:
                self.lanes.pop(lane, None)
        flow.reply_reasm = flow.reply_sink = None
        self._feed(flow, flow.reasm.close())
        if flow.consumer is not None:
            flow.consumer.close()
            flow.consumer = None

    def _udp_packet(self, src: bytes, dst: bytes, sport: int, dport: int, payload: bytes) -> None:
        self._stats["udp_datagrams"] += 1
        if sport in DNS_PORTS or dport in DNS_PORTS:
            label = f"udp {_endpoint((src, sport))}>{_endpoint((dst, dport))}"
            self.dns_payload(payload, (src, sport), (dst, dport), label, "udp", dport in DNS_PORTS)
            return
        key = (src, sport, dst, dport)
        client = self._udp.get(key) or self._udp.get((dst, dport, src, sport))
        if client is None:
            client = (src, sport)
            self._udp[key] = client
            if len(self._udp) > self.limits.max_flows:
                self._udp.popitem(last=False)
        if client != (src, sport) or not payload:
            return
        if dport in QUIC_PORTS and (payload[0] & 0x80 or key in self._quic):
            # QUIC: long-header packets (and, once a flow has shown them, short-header ones) are
            # protected; only Initial packets can be read without secrets.
            self._stats["encrypted_bytes"] += len(payload)
            if payload[0] & 0x80:
                self._quic_initial(key, payload)
            return
        label = f"udp {_endpoint((src, sport))}>{_endpoint((dst, dport))}"
        self._exchange(label, "udp", "raw", (src, sport), (dst, dport), (Part(WHERE_RAW, payload),))

    def _quic_initial(self, key: tuple[bytes, int, bytes, int], payload: bytes) -> None:
        if key in self._quic:
            reader = self._quic[key]
            if reader is None:
                return
        else:
            from phonehome.protocols import quic

            if not quic.looks_like_initial(payload):
                return
            reader = self._quic[key] = quic.InitialReader()
            if len(self._quic) > self.limits.max_flows:
                self._quic.popitem(last=False)
        client, server = (key[0], key[1]), (key[2], key[3])
        label = f"udp {_endpoint(client)}>{_endpoint(server)}"
        try:
            found = reader.receive_datagram(payload)
        except InputError as exc:
            self._quic[key] = None
            self.notice(f"QUIC: {exc.message}", label)
            return
        if found is None:
            return
        self._quic[key] = None
        name = found.hello.server_name
        if name:
            self.names.setdefault(ip_text(server[0]), (name, "sni"))
        self._exchange(
            label,
            "udp",
            "quic",
            client,
            server,
            (Part(WHERE_SNI, name.encode()),) if name else (),
            host=name,
            encrypted=True,
            name_source="sni",
        )

    def _expire(self) -> None:
        horizon = self._now - self.limits.idle_timeout
        while self._tcp:
            key, flow = next(iter(self._tcp.items()))
            if flow.last >= horizon:
                break
            del self._tcp[key]
            self._close(flow)

    def finish(self) -> None:
        """End of input: every open flow is closed and what it held is read."""
        while self._tcp:
            _key, flow = self._tcp.popitem(last=False)
            self._close(flow)


def _client_is_sender(flags: int, sport: int, dport: int) -> bool:
    if flags & SYN:
        return not flags & ACK
    if dport in SERVER_PORTS and sport not in SERVER_PORTS:
        return True
    if sport in SERVER_PORTS and dport not in SERVER_PORTS:
        return False
    return sport >= dport


def _endpoint(end: tuple[bytes, int]) -> str:
    ip = ip_text(end[0])
    return f"[{ip}]:{end[1]}" if ":" in ip else f"{ip}:{end[1]}"
