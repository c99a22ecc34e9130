"""From packets to exchanges: the flow table.

Sans-I/O: :meth:`FlowTable.packet` takes decoded packets in capture order and collects the
:class:`~phonehome.model.Exchange` s and :class:`~phonehome.model.Notice` s they complete;
:meth:`FlowTable.drain` hands them over. Only what the phone sent is scanned: the client side of
each TCP connection (reassembled, then read as HTTP/1, a TLS ClientHello, DNS, or raw bytes) and
the datagrams of the side that spoke first on UDP. DNS answers name the addresses the phone
then talks to.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from phonehome.errors import InputError
from phonehome.model import WHERE_DNS, WHERE_RAW, WHERE_SNI, Exchange, Notice, Part
from phonehome.protocols import dns, http1, tls
from phonehome.protocols.message import request_parts, split_target
from phonehome.protocols.tcp import Gap, Reassembler

TCP, UDP = 6, 17
SYN, FIN, RST, ACK = 0x02, 0x01, 0x04, 0x10
DNS_PORTS = frozenset({53, 5353, 5355})
# Well-known service ports: when a capture starts mid-connection, the side on one of these is the server.
SERVER_PORTS = frozenset({53, 80, 443, 853, 5222, 5228, 8000, 8080, 8088, 8443, 8888, 1883, 8883})
QUIC_PORTS = frozenset({443, 80})
RAW_CHUNK = 64 << 10
RAW_OVERLAP = 256


@dataclass(slots=True)
class Limits:
    max_flows: int = 65536
    idle_timeout: float = 900.0
    max_stream_buffer: int = 4 << 20


def ip_text(packed: bytes) -> str:
    return str(ipaddress.ip_address(packed))


class _TcpFlow:
    __slots__ = (
        "client",
        "client_fin",
        "consumer",
        "label",
        "last",
        "reasm",
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


class _Consumer:
    """Reads one client stream; subclasses per protocol."""

    def __init__(self, table: FlowTable, flow: _TcpFlow) -> None:
        self.table = table
        self.flow = flow

    def data(self, chunk: bytes) -> None:
        raise NotImplementedError

    def gap(self, gap: Gap) -> None:
        pass

    def close(self) -> None:
        pass


class _Http(_Consumer):
    def __init__(self, table: FlowTable, flow: _TcpFlow) -> None:
        super().__init__(table, flow)
        self.parser = http1.RequestParser()
        self.tunnel: _Consumer | None = None

    def data(self, chunk: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel.data(chunk)
            return
        self.parser.receive_data(chunk)
        self._pump()

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
                self.table.http_request(self.flow, event)
                if event.method == "CONNECT":
                    rest = self.parser.take_tunnel_data()
                    self.tunnel = _Sniffing(self.table, self.flow)
                    if rest:
                        self.tunnel.data(rest)
                    return
            elif isinstance(event, http1.ParseWarning):
                self.table.notice(f"HTTP: {event.message} at stream offset {event.offset}", self.flow.label)
            else:
                return


class _Tls(_Consumer):
    def __init__(self, table: FlowTable, flow: _TcpFlow) -> None:
        super().__init__(table, flow)
        self.reader: tls.ClientHelloReader | None = tls.ClientHelloReader()

    def data(self, chunk: bytes) -> None:
        if self.reader is None:
            return  # application data: encrypted, nothing to read without keys
        self.reader.receive_data(chunk)
        try:
            hello = self.reader.result()
        except InputError as exc:
            self.table.notice(f"TLS: {exc.message}", self.flow.label)
            self.reader = None
            return
        if isinstance(hello, tls.ClientHello):
            self.reader = None
            self.table.client_hello(self.flow, hello)


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

    def _emit(self) -> None:
        if not self.buf:
            return
        data = self.overlap + bytes(self.buf)
        self.overlap = data[-RAW_OVERLAP:]
        self.buf.clear()
        self.table.raw(self.flow, data)


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


class _Sniffing(_Consumer):
    """The first bytes of a stream decide how it is read."""

    def __init__(self, table: FlowTable, flow: _TcpFlow) -> None:
        super().__init__(table, flow)
        self.head = b""

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

    def _choose(self, head: bytes) -> _Consumer:
        kind: Callable[[FlowTable, _TcpFlow], _Consumer]
        if self.flow.server[1] in DNS_PORTS:
            kind = _DnsTcp
        elif tls.looks_like_tls(head):
            kind = _Tls
        elif http1.looks_like_request(head) and b" " in head[:32]:
            kind = _Http
        else:
            kind = _Raw
        consumer = kind(self.table, self.flow)
        self.flow.consumer = consumer
        self.head = b""
        consumer.data(head)
        return consumer


class FlowTable:
    """Packets in, exchanges out, with bounded state."""

    def __init__(self, source: str, limits: Limits | None = None) -> None:
        self.source = source
        self.limits = limits or Limits()
        # server address -> (the name the phone used for it, where that name was seen: "dns" or "sni")
        self.names: dict[str, tuple[str, str]] = {}
        self._tcp: OrderedDict[tuple[bytes, int, bytes, int], _TcpFlow] = OrderedDict()
        self._udp: OrderedDict[tuple[bytes, int, bytes, int], tuple[bytes, int]] = OrderedDict()
        self._out: list[Exchange | Notice] = []
        self._now = 0.0
        self._count = 0
        self.stats = {"packets": 0, "tcp_flows": 0, "udp_datagrams": 0, "evicted": 0, "encrypted_bytes": 0}

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
    ) -> None:
        server_ip = ip_text(server[0])
        if not host:
            host, name_source = self._name_of(server_ip)
        self._out.append(
            Exchange(
                source=self.source,
                flow=flow_label,
                time=self._now,
                transport=transport,
                protocol=protocol,
                client_ip=ip_text(client[0]),
                client_port=client[1],
                server_ip=server_ip,
                server_port=server[1],
                parts=parts,
                host=host,
                url=url,
                method=method,
                encrypted=encrypted,
                name_source=name_source,
            )
        )

    def http_request(self, flow: _TcpFlow, request: http1.Request) -> None:
        host: str | None = http1.host_of(request)
        name_source: str | None = "http"
        if not host:
            host, name_source = self._name_of(ip_text(flow.server[0]))
        target = request.target
        if target.startswith((b"http://", b"https://")):
            url = target.decode("latin-1")
        else:
            authority = host or ip_text(flow.server[0])
            if flow.server[1] != 80:
                authority = f"{authority}:{flow.server[1]}"
            path, query = split_target(target)
            url = f"http://{authority}{path.decode('latin-1')}" + (
                f"?{query.decode('latin-1')}" if query else ""
            )
        parts = request_parts(target, request.headers, request.body)
        self._exchange(
            flow.label,
            "tcp",
            "http",
            flow.client,
            flow.server,
            parts,
            host=host,
            url=url,
            method=request.method,
            name_source=name_source,
        )
        for warning in request.warnings:
            self.notice(f"HTTP {request.method} {url}: {warning}", flow.label)

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

    def raw(self, flow: _TcpFlow, data: bytes) -> None:
        self._exchange(flow.label, "tcp", "raw", flow.client, flow.server, (Part(WHERE_RAW, data),))

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
                    self.names[data] = (asked or owner, "dns")
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
    ) -> None:
        self._now = time
        self.stats["packets"] += 1
        if proto == TCP:
            self._tcp_packet(src, dst, sport, dport, flags, seq, payload)
        elif proto == UDP:
            self._udp_packet(src, dst, sport, dport, payload)
        self._count += 1
        if self._count & 0xFFF == 0:
            self._expire()

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
            self.stats["tcp_flows"] += 1
            from_client = client_is_src
            if len(self._tcp) > self.limits.max_flows:
                _old_key, old = self._tcp.popitem(last=False)
                self.stats["evicted"] += 1
                self.notice(
                    f"more than {self.limits.max_flows} open TCP flows; oldest closed early", old.label
                )
                self._close(old)
        else:
            self._tcp.move_to_end(key if from_client else (dst, dport, src, sport))
        flow.last = self._now
        if from_client:
            if payload or flags & (SYN | FIN):
                flow.reasm.add(seq, payload, syn=bool(flags & SYN), fin=bool(flags & FIN))
                self._feed(flow, flow.reasm.pop())
            if flags & FIN:
                flow.client_fin = True
        elif flags & FIN:
            flow.server_fin = True
        if flags & RST or (flow.client_fin and flow.server_fin):
            self._tcp.pop(key if from_client else (dst, dport, src, sport), None)
            self._close(flow)

    def _feed(self, flow: _TcpFlow, items: list[bytes | Gap]) -> None:
        for item in items:
            if flow.consumer is None:
                flow.consumer = _Sniffing(self, flow)
            if isinstance(item, Gap):
                flow.consumer.gap(item)
            elif item:
                flow.consumer.data(item)

    def _close(self, flow: _TcpFlow) -> None:
        self._feed(flow, flow.reasm.close())
        if flow.consumer is not None:
            flow.consumer.close()
            flow.consumer = None

    def _udp_packet(self, src: bytes, dst: bytes, sport: int, dport: int, payload: bytes) -> None:
        self.stats["udp_datagrams"] += 1
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
        if dport in QUIC_PORTS and payload[0] & 0x80:
            self.stats["encrypted_bytes"] += len(payload)
            return  # QUIC long header: protected payload
        label = f"udp {_endpoint((src, sport))}>{_endpoint((dst, dport))}"
        self._exchange(label, "udp", "raw", (src, sport), (dst, dport), (Part(WHERE_RAW, payload),))

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
