"""Inputs that are not regular files (a FIFO, ``<(...)``, ``/dev/stdin``) are opened and read once."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from mitmproxy import io as mitm_io
from mitmproxy.test import tflow

from phonehome.errors import InputError
from phonehome.sources import SNIFF_BYTES, read_input

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"
PCAPS = [
    CORPUS / "pcap" / "pcap2har" / "http-chunked-gzip.pcap",
    CORPUS / "pcap" / "pcap2har" / "firefox-tls13-facebook-dsb.pcapng",
    CORPUS / "har" / "mitmproxy" / "chrome.har",
]


def _through_fifo(tmp_path: Path, data: bytes, pieces: int = 7) -> Iterator[Path]:
    """A FIFO that a writer fills with ``data`` in ``pieces`` writes, once, then closes."""
    fifo = tmp_path / "input.fifo"
    os.mkfifo(fifo)

    def write() -> None:
        try:
            with open(fifo, "wb", buffering=0) as fh:
                step = max(1, len(data) // pieces)
                for at in range(0, len(data), step):
                    fh.write(data[at : at + step])
        except BrokenPipeError:
            pass  # the reader stopped early (not an input it reads)

    # Should the reader open the FIFO a second time, that open waits for a writer: after a while
    # this lets it go (it then reads nothing), so a failing test fails instead of hanging.
    released = threading.Event()

    def release() -> None:
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            return  # ENXIO: no reader waits
        released.set()

    writer = threading.Thread(target=write, daemon=True)
    watchdog = threading.Timer(20, release)
    writer.start()
    watchdog.start()
    try:
        yield fifo
    finally:
        watchdog.cancel()
        writer.join(timeout=20)
    assert not released.is_set(), "the reader opened the FIFO a second time"
    assert not writer.is_alive(), "the reader never opened the FIFO"


def _read(path: Path) -> tuple[str, list[object]]:
    kind, events = read_input(path)
    return kind, [_plain(e, path) for e in events]


def _plain(event: object, path: Path) -> object:
    """The event with its source name dropped (the FIFO and the file have different names)."""
    return repr(event).replace(repr(str(path))[1:-1], "SOURCE")


@pytest.mark.parametrize("name", [p.name for p in PCAPS])
def test_a_fifo_reads_as_the_file_it_carries(name: str, tmp_path: Path) -> None:
    path = next(p for p in PCAPS if p.name == name)
    if not path.exists():
        pytest.skip(f"corpus file not found at {path}")
    expected = _read(path)
    assert expected[1]
    for fifo in _through_fifo(tmp_path, path.read_bytes()):
        assert _read(fifo) == expected


def test_a_fifo_of_mitmproxy_flows(tmp_path: Path) -> None:
    flows = tmp_path / "flows.mitm"
    with flows.open("wb") as fh:
        writer = mitm_io.FlowWriter(fh)
        writer.add(tflow.tflow(resp=True))
        writer.add(tflow.tflow(resp=True))
    expected = _read(flows)
    assert expected[0] == "mitm" and len(expected[1]) >= 2
    for fifo in _through_fifo(tmp_path, flows.read_bytes(), pieces=50):
        assert _read(fifo) == expected


def test_a_fifo_shorter_than_the_sniffed_head(tmp_path: Path) -> None:
    data = b'{"log": {"version": "1.2", "entries": []}}'
    assert len(data) < SNIFF_BYTES
    for fifo in _through_fifo(tmp_path, data, pieces=3):
        assert _read(fifo) == ("har", [])


@pytest.mark.parametrize(("data", "message"), [(b"", "empty file"), (b"GIF89a" * 2000, "not a capture")])
def test_a_fifo_that_is_not_an_input_names_itself(tmp_path: Path, data: bytes, message: str) -> None:
    for fifo in _through_fifo(tmp_path, data):
        with pytest.raises(InputError, match=message) as caught:
            read_input(fifo)
        assert caught.value.source == str(fifo)


def test_a_capture_reports_its_progress_about_once_a_megabyte(tmp_path: Path) -> None:
    import struct

    from phonehome.sources import read_packets

    # 4 MB of UDP datagrams from the phone, each a raw exchange the flow table hands on at once.
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101)  # raw IPv4 frames
    records = []
    for i in range(4000):
        payload = i.to_bytes(4, "big") * 250
        udp = struct.pack(">HHHH", 40000 + i % 1000, 9999, 8 + len(payload), 0) + payload
        ip = struct.pack(
            ">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, bytes([10, 0, 0, 2]), bytes(4)
        )
        frame = ip + udp
        records.append(struct.pack("<IIII", 1_700_000_000 + i, 0, len(frame), len(frame)) + frame)
    path = tmp_path / "udp.pcap"
    path.write_bytes(header + b"".join(records))
    seen: list[int] = []
    exchanges = list(read_packets(str(path), seen.append))
    assert len(exchanges) == 4000
    size = path.stat().st_size
    assert 3 <= len(seen) <= size >> 20
    assert all(b - a >= 1 << 20 for a, b in zip([0, *seen], seen, strict=False)) and seen[-1] < size
