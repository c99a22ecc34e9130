"""Inputs, detected by content: every format becomes a stream of Exchanges and Notices.

The table :data:`READERS` maps a format name to the function that reads it; :func:`sniff` picks
the format from the first bytes of the file, never from its name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from phonehome.errors import InputError
from phonehome.model import Exchange, Notice
from phonehome.protocols.flows import FlowTable, Limits
from phonehome.sources import capture, har

Progress = Callable[[int], None]
Reader = Callable[[str, "Progress | None"], Iterator[Exchange | Notice]]

SNIFF_BYTES = 4096


def read_packets(path: str, progress: Progress | None = None) -> Iterator[Exchange | Notice]:
    """A pcap or pcapng file as exchanges: packets through the flow table."""
    table = FlowTable(path, Limits())
    count = 0
    for event in capture.read_capture(path):
        if isinstance(event, capture.Packet):
            table.packet(
                event.time,
                event.proto,
                event.src,
                event.dst,
                event.sport,
                event.dport,
                event.flags,
                event.seq,
                event.payload,
            )
            count += 1
            if progress is not None and count & 0x3FF == 0:
                progress(event.offset)
        elif isinstance(event, Notice):
            yield event
        else:
            yield Notice(path, "TLS secrets block present; decryption is not supported yet", event.offset)
        yield from table.drain()
    table.finish()
    yield from table.drain()


def read_har_file(path: str, _progress: Progress | None = None) -> Iterator[Exchange | Notice]:
    return har.read_har(path)


READERS: dict[str, Reader] = {
    "pcap": read_packets,
    "pcapng": read_packets,
    "har": read_har_file,
}


def sniff(path: str) -> str:
    """The format of the file at ``path``, from its content."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(SNIFF_BYTES)
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", source=path) from None
    if not head:
        raise InputError("empty file", source=path, offset=0)
    kind = capture.sniff_capture(head)
    if kind:
        return kind
    if har.sniff_har(head):
        return "har"
    raise InputError(
        "not a capture phonehome can read (expected pcap, pcapng or HAR; detected by content)",
        source=path,
        offset=0,
    )


def read_input(path: str | Path, progress: Progress | None = None) -> tuple[str, Iterator[Exchange | Notice]]:
    """The format of ``path`` and the exchanges it holds; raises InputError for unreadable input."""
    name = str(path)
    kind = sniff(name)
    return kind, READERS[kind](name, progress)
