"""Fuzz targets: one entry per parser, each a callable on bytes and the seeds it starts from.

The rule, as in h11's fuzzer: on any bytes a target either returns or raises
:class:`phonehome.errors.InputError`. Any other exception, a hang (over the runner's per-input time
limit) or unbounded memory growth is a bug. Adding a target is one function and one line in
:data:`TARGETS`.

Seeds come from the shared corpus (``../shared/corpus``), the test suite's own inputs and small
built-in samples. A ``derive`` function turns a seed file into the target's input shape (a capture
into its client streams for the HTTP parser, say), so that every target starts from real traffic.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import shutil
import struct
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from phonehome.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus"
PCAPS = (
    "corpus:pcap/**/*.pcap",
    "corpus:pcap/**/*.pcapng",
    "corpus:tls/*.pcap",
    "root:tests/data/**/*.pcap*",
)


# ---- helpers shared by targets and seed builders -----------------------------------------------------


def _chunks(data: bytes) -> Iterator[bytes]:
    """``data`` cut where its own bytes say, so that chunk boundaries are fuzzed too."""
    if not data:
        return
    step = data[0] % 7 + 1
    pos = 0
    cuts = (1, 2, 3, 5, 64, 1500, 1 << 30)
    i = 0
    while pos < len(data):
        size = cuts[(i * step + data[pos]) % len(cuts)]
        yield data[pos : pos + size]
        pos += size
        i += 1


def _capture_events(data: bytes) -> Iterator[object]:
    from phonehome.sources.capture import CaptureReader

    reader = CaptureReader("fuzz")
    for chunk in _chunks(data):
        reader.feed(chunk)
        yield from reader.events()
    reader.close()
    yield from reader.events()


def _packets(data: bytes) -> Iterator[object]:
    from phonehome.sources.capture import Packet

    try:
        for event in _capture_events(data):
            if isinstance(event, Packet):
                yield event
    except InputError:
        return


def _client_streams(data: bytes, ports: frozenset[int]) -> list[bytes]:
    """The client-to-server TCP payloads of a capture, joined per flow, for flows to ``ports``."""
    streams: dict[tuple[object, ...], list[tuple[int, bytes]]] = {}
    for p in _packets(data):
        if p.proto == 6 and p.dport in ports and p.payload:  # type: ignore[attr-defined]
            key = (p.src, p.sport, p.dst, p.dport)  # type: ignore[attr-defined]
            streams.setdefault(key, []).append((p.seq, p.payload))  # type: ignore[attr-defined]
    out = []
    for segments in streams.values():
        segments.sort()
        out.append(b"".join(dict(segments).values())[:65536])
    return out


def _udp_payloads(data: bytes, ports: frozenset[int]) -> list[bytes]:
    return [
        p.payload  # type: ignore[attr-defined]
        for p in _packets(data)
        if p.proto == 17 and (p.sport in ports or p.dport in ports)  # type: ignore[attr-defined]
    ]


_SEGMENT = struct.Struct("!IBH")  # seq, flags (1 SYN, 2 FIN), length


def _segments(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    pos = 0
    while pos + _SEGMENT.size <= len(data):
        seq, flags, length = _SEGMENT.unpack_from(data, pos)
        pos += _SEGMENT.size
        yield seq, flags, data[pos : pos + length]
        pos += length


def _tcp_seed(data: bytes) -> list[bytes]:
    """One client direction of a capture's first TCP flows, in the segment encoding above."""
    flows: dict[tuple[object, ...], list[bytes]] = {}
    for p in _packets(data):
        if p.proto != 6:  # type: ignore[attr-defined]
            continue
        key = (p.src, p.sport, p.dst, p.dport)  # type: ignore[attr-defined]
        flags = (1 if p.flags & 2 else 0) | (2 if p.flags & 1 else 0)  # type: ignore[attr-defined]
        flows.setdefault(key, []).append(_SEGMENT.pack(p.seq, flags, len(p.payload)) + p.payload)  # type: ignore[attr-defined]
    return [b"".join(v)[:65536] for v in list(flows.values())[:20] if len(v) > 2]


# ---- targets -----------------------------------------------------------------------------------------


def fuzz_capture(data: bytes) -> None:
    for _ in _capture_events(data):
        pass


def fuzz_flows(data: bytes) -> None:
    """The whole packet path: capture reader, TCP reassembly, every protocol reader, exchanges."""
    from phonehome.protocols.flows import FlowTable, Limits
    from phonehome.sources.capture import Packet

    table = FlowTable("fuzz", Limits(max_flows=64, max_stream_buffer=64 << 10))
    for event in _capture_events(data):  # read without a lane: every packet decoded is yielded
        if isinstance(event, Packet):
            e = event
            table.packet(e.time, e.proto, e.src, e.dst, e.sport, e.dport, e.flags, e.seq, e.payload)
            table.drain()
    table.finish()
    table.drain()


def _lane_outputs(data: bytes) -> list[object]:
    """What a flow table makes of a capture read through its fast lane (see sources.capture.Lane)."""
    from phonehome.protocols.flows import FlowTable, Limits
    from phonehome.sources.capture import CaptureReader, Flush

    table = FlowTable("fuzz", Limits(max_flows=64, max_stream_buffer=64 << 10))
    reader = CaptureReader("fuzz", table)
    out: list[object] = []

    def drain() -> None:
        for event in reader.events():  # the packets go to the table, its lane
            if not isinstance(event, Flush):
                out.append(event)
            out.extend(table.drain())

    try:
        for chunk in _chunks(data):
            reader.feed(chunk)
            drain()
        reader.close()
        drain()
    except InputError as exc:
        out.append(str(exc))
    table.finish()
    out.extend(table.drain())
    out.append(table.stats)
    return out


def fuzz_lane(data: bytes) -> None:
    """The C walks of the fast lane (phonehome._lane: pcap and pcapng) against the pure-Python
    loops: same output."""
    from phonehome.sources import capture

    c_walks = capture._walk_pcap, capture._walk_pcapng
    if c_walks[0] is None or c_walks[1] is None:
        raise AssertionError("phonehome._lane is not built: nothing to compare")
    try:
        capture._walk_pcap = capture._walk_pcapng = None
        python = _lane_outputs(data)
    finally:
        capture._walk_pcap, capture._walk_pcapng = c_walks
    if _lane_outputs(data) != python:
        raise AssertionError("the C walk and the Python loop read this capture differently")


def fuzz_tcp(data: bytes) -> None:
    from phonehome.protocols.tcp import Gap, Reassembler

    reasm = Reassembler(max_buffered=32 << 10, max_segments=64)
    total = 0
    for seq, flags, payload in _segments(data):
        reasm.add(seq, payload, syn=bool(flags & 1), fin=bool(flags & 2))
        for item in reasm.pop():
            total += item.length if isinstance(item, Gap) else len(item)
        if reasm.buffered > (32 << 10) + 65535:
            raise AssertionError(f"reassembler holds {reasm.buffered} bytes, over its bound")
    for item in reasm.close():
        total += item.length if isinstance(item, Gap) else len(item)
    if total != reasm.offset:
        raise AssertionError(f"handed out {total} bytes but offset is {reasm.offset}")


def fuzz_http1(data: bytes) -> None:
    from phonehome.protocols import http1

    parser = http1.RequestParser(max_header_bytes=8 << 10, max_body=64 << 10, max_decoded=256 << 10)
    for i, chunk in enumerate(_chunks(data)):
        if i % 11 == 10:
            parser.receive_gap(len(chunk))
        else:
            parser.receive_data(chunk)
        while not isinstance(parser.next_event(), http1.Signal):
            pass
        if parser.tunnel_offset is not None:
            parser.take_tunnel_data()
    parser.receive_eof()
    while parser.next_event() is not http1.EOF:
        pass


def fuzz_dns(data: bytes) -> None:
    from phonehome.protocols import dns

    with contextlib.suppress(InputError):
        dns.parse_dns(data)
    messages, _rest = dns.split_tcp_dns(data)
    for message in messages:
        with contextlib.suppress(InputError):
            dns.parse_dns(message)


def fuzz_tls(data: bytes) -> None:
    from phonehome.protocols import tls

    reader = tls.ClientHelloReader(offset=0)
    for chunk in _chunks(data):
        reader.receive_data(chunk)
    reader.result()


def fuzz_compression(data: bytes) -> None:
    from phonehome.protocols import compression

    codings = ("gzip", "deflate", "br", "zstd", "identity", "gzip, br", "deflate, gzip", "x-gzip", "compress")
    coding = codings[data[0] % len(codings)] if data else "gzip"
    limit = 1 << 20
    out, _warnings = compression.decode_content(coding, data[1:], limit)
    if len(out) > limit:
        raise AssertionError(f"{len(out)} bytes decoded, over the {limit}-byte limit")
    kind = compression.sniff_compression(data)
    if kind is not None:
        out, _warning = compression.decompress("deflate" if kind == "zlib" else kind, data, limit)
        if len(out) > limit:
            raise AssertionError(f"{len(out)} bytes decompressed, over the {limit}-byte limit")


def fuzz_decoders(data: bytes) -> None:
    from phonehome.detect.decoders import MAX_DEPTH, Budget, peel

    budget = Budget()
    start = budget.bytes_left
    for chain, _view in peel(data, budget):
        if len(chain) > MAX_DEPTH:
            raise AssertionError(f"peeled {len(chain)} layers, over the depth {MAX_DEPTH}")
    if budget.bytes_left < 0 or start - budget.bytes_left > start:
        raise AssertionError("decoding budget overspent")


_DETECTOR: object = None


def fuzz_detector(data: bytes) -> None:
    global _DETECTOR
    from phonehome.detect.scan import Detector
    from phonehome.profile import parse_profile

    if _DETECTOR is None:
        profile = parse_profile(_PROFILE_SAMPLE, "fuzz.toml")
        _DETECTOR = Detector(profile.identifiers, "auto")
    assert isinstance(_DETECTOR, Detector)
    _DETECTOR.scan(data)


def fuzz_head(data: bytes) -> None:
    """The C split of a header section (phonehome._http1) against http1.split_head: the same
    answer for every prefix of the stream the parser could hold, and every limit it uses."""
    from phonehome.protocols import http1

    try:
        from phonehome import _http1
    except ImportError:
        raise AssertionError("phonehome._http1 is not built: nothing to compare") from None
    buf = bytearray(data)
    for avail in {len(buf), len(buf) // 2, len(buf) // 3}:
        for max_bytes, max_headers in ((64 << 10, 256), (64, 3)):
            if _http1.split_head(buf, avail, max_bytes, max_headers) != http1.split_head(
                buf, avail, max_bytes, max_headers
            ):
                raise AssertionError("the C and Python header splits differ")


_WALKS: list[object] = []


def fuzz_walk(data: bytes) -> None:
    """The C walk through a part's views (phonehome._detect) against the Python walk: the same
    hits, warnings and views."""
    from phonehome.detect.decoders import Budget, peel
    from phonehome.detect.scan import Detector
    from phonehome.profile import parse_profile

    if not _WALKS:
        identifiers = parse_profile(_PROFILE_SAMPLE, "fuzz.toml").identifiers
        _WALKS.extend([Detector(identifiers), Detector(identifiers, walk="python")])
    c_walk, python = _WALKS
    assert isinstance(c_walk, Detector) and isinstance(python, Detector)
    if c_walk._walker is None:
        raise AssertionError("phonehome._detect is not built: nothing to compare")
    if c_walk._scan(data) != python._scan(data):
        raise AssertionError("the C walk and the Python walk find different hits or warnings")
    if c_walk._walker.views(data) != list(peel(data, Budget())):
        raise AssertionError("the C walk and the Python walk go through different views")


def fuzz_har(data: bytes) -> None:
    from phonehome.sources.har import parse_har

    for _ in parse_har(data, "fuzz.har"):
        pass


def fuzz_profile(data: bytes) -> None:
    """A profile's TOML as load_profile reads it (UTF-8 check included)."""
    from phonehome.profile import parse_profile

    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return  # load_profile refuses it with an InputError before parsing
    parse_profile(text, "fuzz.toml", _scratch())


def fuzz_contacts(data: bytes) -> None:
    """A contacts export (vCard 2.1/3.0/4.0 or CSV) through a profile's ``contacts_file``."""
    from phonehome.profile import parse_profile

    folder = _scratch()
    (folder / "contacts").write_bytes(data)
    parse_profile('[device]\nregion = "IN"\ncontacts_file = "contacts"\n', "fuzz.toml", folder)


_SCRATCH: Path | None = None


def _scratch() -> Path:
    """An empty folder a fuzzed profile's ``contacts_file`` is read from (never the working folder)."""
    global _SCRATCH
    if _SCRATCH is None:
        base = "/dev/shm" if os.path.isdir("/dev/shm") else None
        _SCRATCH = Path(tempfile.mkdtemp(prefix="phonehome-fuzz-", dir=base))
        atexit.register(shutil.rmtree, _SCRATCH, True)
    return _SCRATCH


_PROFILE_SAMPLE = """\
[device]
name = "fuzz"
region = "IN"

[identifiers]
imei = "865123456789019"
imsi = "404101234567890"
phone = "+919876543210"
carrier = "airtel"
android_id = "b9e28776354d259e"
advertising_id = "5ac6a0ff-8d18-47bc-a902-2812cf0c251e"
wifi_mac = "02:1a:11:f0:aa:b3"
email = "owner@example.org"

[[contacts]]
name = "Asha Verma"
phone = "+91 98111 22233"
"""


# ---- targets for the TLS decryption, HTTP/2, QUIC, mitmproxy and policy readers --------------------------

_RECORD = struct.Struct("!BH")  # direction (0 client, 1 server) or nothing, length


def _records(data: bytes) -> Iterator[tuple[int, bytes]]:
    pos = 0
    while pos + _RECORD.size <= len(data):
        direction, length = _RECORD.unpack_from(data, pos)
        pos += _RECORD.size
        yield direction, data[pos : pos + length]
        pos += length


_KEYS: object = None


def _keystore() -> object:
    """Every key the corpus holds (key log files and pcapng secrets blocks), so records decrypt."""
    global _KEYS
    if _KEYS is None:
        from phonehome.protocols.keylog import KeyStore, parse_keylog
        from phonehome.sources.capture import Secrets

        keys = KeyStore()
        for path in sorted(CORPUS.glob("tls/*.keylog")):
            keys.add(parse_keylog(path.read_bytes(), strict=False)[0])
        for path in sorted(CORPUS.glob("pcap/**/*.pcapng")):
            with contextlib.suppress(InputError):
                for event in _capture_events(path.read_bytes()):
                    if isinstance(event, Secrets):
                        keys.add(parse_keylog(event.data, strict=False)[0])
        _KEYS = keys
    return _KEYS


def fuzz_tlsrecords(data: bytes) -> None:
    """Both directions of a TLS connection through the decryptor, with the corpus's real keys."""
    from phonehome.protocols.keylog import KeyStore
    from phonehome.protocols.tlsrecords import TlsDecryptor

    keys = _keystore()
    assert isinstance(keys, KeyStore)
    decryptor = TlsDecryptor(keys)
    for direction, chunk in _records(data):
        if direction & 0x80:
            decryptor.receive_gap(direction & 1, len(chunk) or 1)
        else:
            decryptor.receive(direction & 1, chunk)
        decryptor.events()
    decryptor.close()
    decryptor.events()
    decryptor.problems()


def _tls_conversations(data: bytes) -> list[bytes]:
    """Each TLS connection of a capture as records of the encoding above, in capture order."""
    conversations: dict[tuple[object, ...], list[bytes]] = {}
    for p in _packets(data):
        if p.proto != 6 or not p.payload:  # type: ignore[attr-defined]
            continue
        to_server = p.dport in _TLS_PORTS  # type: ignore[attr-defined]
        if not to_server and p.sport not in _TLS_PORTS:  # type: ignore[attr-defined]
            continue
        ends = ((p.src, p.sport), (p.dst, p.dport))  # type: ignore[attr-defined]
        key = ends if to_server else ends[::-1]
        payload = p.payload  # type: ignore[attr-defined]
        conversations.setdefault(key, []).append(_RECORD.pack(0 if to_server else 1, len(payload)) + payload)
    return [b"".join(v)[:65536] for v in list(conversations.values())[:10]]


def fuzz_http2(data: bytes) -> None:
    from phonehome.protocols import http2

    reader = http2.RequestReader(max_streams=16, max_header_list=16 << 10, max_body=64 << 10)
    for i, chunk in enumerate(_chunks(data)):
        if i % 13 == 12:
            reader.receive_gap(len(chunk))
        else:
            reader.receive_data(chunk)
        reader.events()
    reader.receive_eof()
    reader.events()


def _http2_seeds(data: bytes) -> list[bytes]:
    """Client streams that open with the HTTP/2 preface, and one built here from real frames."""
    import hpack  # type: ignore[import-untyped]

    from phonehome.protocols.http2 import looks_like_preface

    found = [s for s in _client_streams(data, frozenset(range(1, 65536))) if looks_like_preface(s)]
    block = hpack.Encoder().encode(
        [(":method", "POST"), (":scheme", "https"), (":authority", "api.example.com"),
         (":path", "/v1?imei=865123456789019"), ("content-type", "application/json")]
    )  # fmt: skip

    def frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
        return (
            struct.pack("!I", len(payload))[1:] + bytes([kind, flags]) + struct.pack("!I", stream) + payload
        )

    built = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0, b"")
    built += frame(1, 4, 1, block) + frame(0, 1, 1, b'{"phone":"+919876543210"}')
    return [*found, built]


def fuzz_quic(data: bytes) -> None:
    from phonehome.protocols.quic import InitialReader

    reader = InitialReader()
    for _direction, datagram in _records(data):
        try:
            if reader.receive_datagram(datagram) is not None:
                return
        except InputError:
            continue  # a damaged datagram is refused; the flow goes on


def _quic_seeds(data: bytes) -> list[bytes]:
    flows: dict[tuple[object, ...], list[bytes]] = {}
    for p in _packets(data):
        if p.proto == 17 and p.dport == 443 and p.payload:  # type: ignore[attr-defined]
            key = (p.src, p.sport)  # type: ignore[attr-defined]
            flows.setdefault(key, []).append(_RECORD.pack(0, len(p.payload)) + p.payload)  # type: ignore[attr-defined]
    return [b"".join(v[:8]) for v in flows.values()]


def fuzz_mitm(data: bytes) -> None:
    from phonehome.sources.mitmflow import Damage, TnetReader, record_exchanges

    reader = TnetReader()
    index = 0
    chunks = list(_chunks(data))
    for i, chunk in enumerate([*chunks, b""]):
        if i == len(chunks):
            reader.close()
        else:
            reader.feed(chunk)
        for event in reader.events():
            if not isinstance(event, Damage):
                for _ in record_exchanges(event, index, "fuzz.mitm"):
                    pass
                index += 1


def fuzz_keylog(data: bytes) -> None:
    from phonehome.protocols.keylog import KeyStore, parse_keylog

    secrets, _bad = parse_keylog(data, strict=False)
    KeyStore().add(secrets)
    parse_keylog(data, source="fuzz.keylog", strict=True)


def fuzz_policy(data: bytes) -> None:
    from phonehome.policy.model import parse_policy

    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return
    parse_policy(text, "fuzz.toml")


# ---- seeds -------------------------------------------------------------------------------------------


def _toml_texts(data: bytes) -> list[bytes]:
    """The triple-quoted profile texts in a test module."""
    import re

    return [m.group(1) for m in re.finditer(rb'"""\\?\n(.*?)"""', data, re.DOTALL) if b"=" in m.group(1)]


def _exports(data: bytes) -> list[bytes]:
    import re

    found = [m.group(1) for m in re.finditer(rb'"""\\?\n(.*?)"""', data, re.DOTALL)]
    return [t for t in found if b"BEGIN:VCARD" in t or (b"," in t.split(b"\n", 1)[0] and b"=" not in t)]


_HTTP_PORTS = frozenset({80, 8080, 8000, 8088, 8888, 3128})
_TLS_PORTS = frozenset({443, 8443, 5228, 853})


def _compressed_seeds(data: bytes) -> list[bytes]:
    import gzip
    import zlib

    import brotli  # type: ignore[import-untyped]
    import zstandard  # type: ignore[import-untyped]

    sample = data[:4096]
    return [
        b"\x00" + gzip.compress(sample),
        b"\x01" + zlib.compress(sample),
        b"\x02" + brotli.compress(sample),
        b"\x03" + zstandard.ZstdCompressor().compress(sample),
        gzip.compress(gzip.compress(sample)),
    ]


@dataclass(frozen=True)
class Target:
    run: Callable[[bytes], None]
    seeds: tuple[str, ...]  # globs: "corpus:<glob>" under ../shared/corpus, "root:<glob>" under the project
    derive: Callable[[bytes], list[bytes]] | None = None  # seed file -> inputs; None: the file itself
    max_len: int = 65536


TARGETS: dict[str, Target] = {
    "capture": Target(fuzz_capture, PCAPS, max_len=16 << 10),
    "flows": Target(fuzz_flows, PCAPS, max_len=16 << 10),
    "lane": Target(fuzz_lane, PCAPS, max_len=16 << 10),
    "tcp": Target(fuzz_tcp, PCAPS, _tcp_seed),
    "http1": Target(fuzz_http1, PCAPS, lambda d: _client_streams(d, _HTTP_PORTS)),
    "dns": Target(fuzz_dns, PCAPS, lambda d: _udp_payloads(d, frozenset({53, 5353}))),
    "tls": Target(fuzz_tls, PCAPS, lambda d: _client_streams(d, _TLS_PORTS)),
    "compression": Target(fuzz_compression, ("corpus:har/mitmproxy/*.har",), _compressed_seeds),
    "decoders": Target(fuzz_decoders, PCAPS, lambda d: _client_streams(d, _HTTP_PORTS)),
    "detector": Target(fuzz_detector, PCAPS, lambda d: _client_streams(d, _HTTP_PORTS)),
    "walk": Target(fuzz_walk, PCAPS, lambda d: _client_streams(d, _HTTP_PORTS)),
    "head": Target(fuzz_head, PCAPS, lambda d: _client_streams(d, _HTTP_PORTS)),
    "har": Target(fuzz_har, ("corpus:har/**/*.har",), max_len=256 << 10),
    "profile": Target(fuzz_profile, ("root:tests/test_profile.py",), _toml_texts, max_len=8192),
    "contacts": Target(fuzz_contacts, ("root:tests/test_profile.py",), _exports, max_len=8192),
    "tlsrecords": Target(fuzz_tlsrecords, PCAPS, _tls_conversations),
    "http2": Target(fuzz_http2, PCAPS, _http2_seeds),
    "quic": Target(fuzz_quic, PCAPS, _quic_seeds),
    "mitm": Target(fuzz_mitm, ("corpus:flows/**/*.mitm", "root:tests/data/**/*.mitm"), max_len=128 << 10),
    "keylog": Target(fuzz_keylog, ("corpus:tls/*.keylog", "root:tests/**/*.keylog"), max_len=16 << 10),
    "policy": Target(
        fuzz_policy,
        ("root:src/phonehome/policy/presets/*.toml", "root:tests/policy/test_model.py"),
        lambda d: _toml_texts(d) if d.lstrip().startswith((b'"""', b"from", b"import")) else [d],
        max_len=16 << 10,
    ),
}


def seed_files(target: Target) -> list[Path]:
    files: list[Path] = []
    for pattern in target.seeds:
        where, _, rest = pattern.partition(":")
        base = CORPUS if where == "corpus" else ROOT
        files.extend(Path(p) for p in sorted(glob.glob(str(base / rest), recursive=True)))
    return files


def seeds(target: Target) -> Iterable[bytes]:
    """Every seed input of ``target``, each at most ``max_len`` bytes."""
    for path in seed_files(target):
        data = path.read_bytes()
        for item in target.derive(data) if target.derive else [data]:
            if item:
                yield item[: target.max_len]
