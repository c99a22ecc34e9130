"""Inputs, detected by content: every format becomes a stream of Exchanges and Notices.

The table :data:`READERS` maps a format name to the function that reads it; :func:`sniff` picks
the format from the first bytes of the file, never from its name.
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from phonehome.errors import InputError
from phonehome.model import Exchange, Notice
from phonehome.protocols.flows import FlowTable, Limits
from phonehome.protocols.keylog import KeyStore, parse_keylog
from phonehome.sources import capture, har

Progress = Callable[[int], None]


class Reader(Protocol):
    """Reads the input named ``path``: from ``handle`` when given (and closes it), else it opens ``path``."""

    def __call__(
        self, path: str, progress: Progress | None = None, /, *, handle: BinaryIO | None = None
    ) -> Iterator[Exchange | Notice]: ...


SNIFF_BYTES = 4096
SECRETS_TLS_KEY_LOG = 0x544C534B  # 'TLSK': an NSS key log (pcapng §4.8, Decryption Secrets Block)
# Formats read packet by packet, which TLS secrets can decrypt.
PACKET_FORMATS = frozenset({"pcap", "pcapng"})
_MAX_BAD_LINE_NOTICES = 10
_PROGRESS_STEP = 1 << 20  # bytes of capture between two progress reports


def _secrets_notices(path: str, event: capture.Secrets, keys: KeyStore) -> Iterator[Notice]:
    """Take the key log of a Decryption Secrets Block into ``keys``; say what could not be used."""
    if event.secrets_type != SECRETS_TLS_KEY_LOG:
        yield Notice(path, f"decryption secrets of type 0x{event.secrets_type:08x} not used", event.offset)
        return
    secrets, bad = parse_keylog(event.data, strict=False)
    keys.add(secrets)
    for line, why in bad[:_MAX_BAD_LINE_NOTICES]:
        yield Notice(path, f"TLS key log in a secrets block, line {line} skipped: {why}", event.offset)
    if len(bad) > _MAX_BAD_LINE_NOTICES:
        more = len(bad) - _MAX_BAD_LINE_NOTICES
        yield Notice(path, f"TLS key log in a secrets block: {more} more bad lines skipped", event.offset)


def read_packets(
    path: str,
    progress: Progress | None = None,
    keys: KeyStore | None = None,
    *,
    handle: BinaryIO | None = None,
) -> Iterator[Exchange | Notice]:
    """A pcap or pcapng file as exchanges: packets through the flow table.

    ``keys`` holds TLS secrets from the user's key logs; the capture's own secrets blocks join them
    for this file only.
    """
    table = FlowTable(path, Limits(), keys.copy() if keys is not None else KeyStore())
    reported = 0
    # The table is the reader's lane: the reader hands it every packet it decodes, and passes over
    # undecoded those that cannot change what a flow yields (most of the server's, bare ACKs). It
    # yields a Flush when the table has output, and the capture's notices and secrets.
    for event in capture.read_capture(path, lane=table, handle=handle):
        if isinstance(event, capture.Flush):
            if progress is not None and event.offset - reported >= _PROGRESS_STEP:
                reported = event.offset
                progress(reported)
        elif isinstance(event, Notice):
            yield event
        elif isinstance(event, capture.Secrets):
            yield from _secrets_notices(path, event, table.keys)
        yield from table.drain()
    table.finish()
    yield from table.drain()


def load_keylogs(paths: Iterable[str]) -> KeyStore:
    """The secrets of the user's key log files; a bad line raises InputError naming file and line."""
    keys = KeyStore()
    for path in paths:
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            raise InputError(f"cannot read key log: {exc.strerror or exc}", source=path) from None
        secrets, _bad = parse_keylog(data, source=path)
        keys.add(secrets)
    return keys


def read_har_file(
    path: str, _progress: Progress | None = None, *, handle: BinaryIO | None = None
) -> Iterator[Exchange | Notice]:
    return har.read_har(path, handle=handle)


def read_mitm_file(
    path: str, progress: Progress | None = None, *, handle: BinaryIO | None = None
) -> Iterator[Exchange | Notice]:
    # mitmflow (and its tnetstring reader) is imported only for flow files.
    from phonehome.sources import mitmflow

    return mitmflow.read_mitm(path, progress, handle=handle)


READERS: dict[str, Reader] = {
    "pcap": read_packets,
    "pcapng": read_packets,
    "har": read_har_file,
    "mitm": read_mitm_file,
}


def sniff(path: str) -> str:
    """The format of the file at ``path``, from its content."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(SNIFF_BYTES)
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", source=path) from None
    return sniff_head(head, path)


def sniff_head(head: bytes, path: str) -> str:
    """The format of the input named ``path`` whose first bytes are ``head``."""
    if not head:
        raise InputError("empty file", source=path, offset=0)
    kind = capture.sniff_capture(head)
    if kind:
        return kind
    if har.sniff_har(head):
        return "har"
    from phonehome.sources import mitmflow  # only for what is neither a capture nor a HAR file

    if mitmflow.sniff_mitm(head):
        return "mitm"
    raise InputError(
        "not a capture phonehome can read"
        " (expected pcap, pcapng, HAR or mitmproxy flows; detected by content)",
        source=path,
        offset=0,
    )


def read_input(
    path: str | Path, progress: Progress | None = None, keys: KeyStore | None = None
) -> tuple[str, Iterator[Exchange | Notice]]:
    """The format of ``path`` and the exchanges it holds; raises InputError for unreadable input.

    ``keys`` (TLS secrets from key logs) is used by the formats that carry packets.
    """
    name = str(path)
    stream = _open_stream(name)
    if stream is None:
        kind = sniff(name)
        if kind in PACKET_FORMATS:
            return kind, read_packets(name, progress, keys)
        return kind, READERS[kind](name, progress)
    # A pipe can be opened and read only once: its head is read here, and the reader is handed
    # the same handle with the head put back in front.
    head, handle = stream
    try:
        kind = sniff_head(head, name)
    except InputError:
        handle.close()
        raise
    if kind in PACKET_FORMATS:
        return kind, read_packets(name, progress, keys, handle=handle)
    return kind, READERS[kind](name, progress, handle=handle)


def _open_stream(path: str) -> tuple[bytes, BinaryIO] | None:
    """For an input that is not a regular file (a FIFO, ``<(...)``, ``/dev/stdin``): its first bytes
    and a handle that reads it whole from the start. None for a regular file or a missing one."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None  # sniff() names what is wrong
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    try:
        raw = open(path, "rb", buffering=0)  # noqa: SIM115 - handed to the reader, which closes it
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", source=path) from None
    head = b""
    try:
        while len(head) < SNIFF_BYTES:
            part = raw.read(SNIFF_BYTES - len(head))
            if not part:
                break
            head += part
    except OSError as exc:
        raw.close()
        raise InputError(f"cannot read: {exc.strerror or exc}", source=path) from None
    except BaseException:  # interrupted while the writer is slow
        raw.close()
        raise
    return head, io.BufferedReader(_Rejoined(head, raw), 1 << 20)


class _Rejoined(io.RawIOBase):
    """``head``, then what is left to read of ``rest``: a stream whose first bytes were read already."""

    def __init__(self, head: bytes, rest: io.RawIOBase | BinaryIO) -> None:
        super().__init__()
        self._head = memoryview(head)
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:
        if self._head:
            view = memoryview(buffer).cast("B")
            count = min(len(view), len(self._head))
            view[:count] = self._head[:count]
            self._head = self._head[count:]
            return count
        return self._rest.readinto(buffer)  # type: ignore[union-attr]

    def close(self) -> None:
        self._rest.close()
        super().close()
