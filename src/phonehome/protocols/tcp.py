"""Reassembly of one direction of a TCP connection (sans-I/O).

Segments go in with :meth:`Reassembler.add` in capture order; :meth:`Reassembler.pop` hands back the
bytes that are ready in stream order, and :meth:`Reassembler.close` flushes what is left at the end of the
flow. Bytes that never arrived are marked with a :class:`Gap` of the right offset and length, so a parser
downstream never sees bytes from both sides of a hole glued together.

Positions are kept as unbounded stream offsets (0 = the first byte after the SYN, or the first byte of the
first segment seen when the capture starts mid-flow). Sequence numbers are mapped onto them with serial
number arithmetic (RFC 1982, RFC 9293 §3.4), relative to the next byte expected, so the 32-bit wrap
is invisible here.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field

_SEQ_MOD = 1 << 32
_SEQ_HALF = 1 << 31


@dataclass(frozen=True, slots=True)
class Gap:
    """Bytes of the stream that were never captured."""

    offset: int  # stream offset where bytes are missing
    length: int
    # True when the bytes were not waited for because too much was held out of order (the bound),
    # rather than because the stream ended with them missing.
    bounded: bool = field(default=False, compare=False)


@dataclass(slots=True)
class ReassemblyStats:
    """What the reassembler threw away or skipped, in bytes."""

    # Bytes of segments that brought nothing new (retransmissions, and data from before the
    # first segment seen when the capture starts mid-flow).
    retransmitted: int = 0
    # Already-received bytes inside segments that also brought new ones.
    overlapping: int = 0
    # Bytes marked as missing with a Gap.
    gap_bytes: int = 0
    # Bytes sent past the FIN, which is the last sequence number of the stream.
    after_fin: int = 0


class Reassembler:
    """Puts one direction of a TCP connection back in order.

    In-order segments (the usual case) go straight to the output list without copying. Segments that
    arrive ahead of a hole are kept, without overlaps, until the hole fills; when more than
    ``max_buffered`` bytes or ``max_segments`` pieces wait, the oldest hole is given up as a
    :class:`Gap` so memory stays bounded whatever the capture holds.

    Output accumulates until :meth:`pop` or :meth:`close` takes it.
    """

    __slots__ = (
        "_base",
        "_buffered",
        "_chunks",
        "_fin",
        "_max_buffered",
        "_max_segments",
        "_next",
        "_ready",
        "_starts",
        "offset",
        "stats",
    )

    def __init__(self, *, max_buffered: int = 4 << 20, max_segments: int = 1 << 14) -> None:
        if max_buffered < 0 or max_segments < 0:
            raise ValueError("reassembly bounds must not be negative")
        self._max_buffered = max_buffered
        self._max_segments = max_segments
        self._base: int | None = None  # sequence number of stream offset 0
        self._next = 0  # stream offset of the next byte to be put in order
        self._ready: list[bytes | Gap] = []
        # Out-of-order pieces: sorted, non-overlapping start offsets, and the bytes at each.
        self._starts: list[int] = []
        self._chunks: dict[int, bytes] = {}
        self._buffered = 0
        self._fin: int | None = None  # stream offset the FIN occupies
        self.offset = 0  # bytes handed out by pop()/close() so far, gaps included
        self.stats = ReassemblyStats()

    @property
    def buffered(self) -> int:
        """Bytes held back waiting for a hole to fill."""
        return self._buffered

    @property
    def finished(self) -> bool:
        """Whether everything up to the FIN has been put in order."""
        return self._fin is not None and self._next >= self._fin

    def add(self, seq: int, data: bytes, *, syn: bool = False, fin: bool = False) -> None:
        """Take one segment: its sequence number, payload and SYN/FIN flags."""
        if syn:
            # The SYN occupies one sequence number; its data (if any) starts after it.
            seq += 1
        if self._base is None:
            if not (syn or data or fin):
                # A bare ACK or keep-alive (which may carry seq = next - 1) says nothing reliable
                # about where the stream starts.
                return
            self._base = seq % _SEQ_MOD
        diff = (seq - self._base - self._next) % _SEQ_MOD
        if diff >= _SEQ_HALF:
            diff -= _SEQ_MOD
        start = self._next + diff
        end = start + len(data)

        if fin and self._fin is None and end >= self._next:
            self._set_fin(end)
        if self._fin is not None and end > self._fin:
            keep = max(self._fin - start, 0)
            self.stats.after_fin += len(data) - keep
            data = data[:keep]
            end = start + keep
        if not data:
            return

        if start == self._next and not self._starts:
            self._ready.append(data)
            self._next = end
            return
        if start < self._next:
            if end <= self._next:
                self.stats.retransmitted += len(data)
                return
            self.stats.overlapping += self._next - start
            data = data[self._next - start :]
            start = self._next
        self._insert(start, data)
        self._drain()
        while self._starts and (
            self._buffered > self._max_buffered or len(self._starts) > self._max_segments
        ):
            self._skip_hole(bounded=True)

    def pop(self) -> list[bytes | Gap]:
        """The data (and Gap markers) that are ready, in stream order."""
        items = self._ready
        self._ready = []
        self.offset = self._next
        return items

    def close(self) -> list[bytes | Gap]:
        """Everything still held, in order, holes marked with Gap; for the end of the flow.

        The reassembler stays usable: later segments continue from the current offset.
        """
        while self._starts:
            self._skip_hole()
        if self._fin is not None and self._fin > self._next:
            self._gap_to(self._fin)
        return self.pop()

    def _set_fin(self, fin: int) -> None:
        self._fin = fin
        # Drop buffered bytes the FIN shows can't belong to the stream.
        while self._starts and self._starts[-1] + len(self._chunks[self._starts[-1]]) > fin:
            last = self._starts[-1]
            chunk = self._chunks[last]
            keep = max(fin - last, 0)
            self.stats.after_fin += len(chunk) - keep
            self._buffered -= len(chunk) - keep
            if keep:
                self._chunks[last] = chunk[:keep]
                break
            self._starts.pop()
            del self._chunks[last]

    def _insert(self, start: int, data: bytes) -> None:
        """Buffer the parts of ``data`` not held yet; bytes already held win (first copy received)."""
        end = start + len(data)
        starts = self._starts
        chunks = self._chunks
        i = bisect_right(starts, start)
        pos = start
        if i:
            prev_end = starts[i - 1] + len(chunks[starts[i - 1]])
            pos = max(pos, prev_end)
        pieces: list[tuple[int, bytes]] = []
        j = i
        while pos < end and j < len(starts) and starts[j] < end:
            if starts[j] > pos:
                pieces.append((pos, data[pos - start : starts[j] - start]))
            pos = max(pos, starts[j] + len(chunks[starts[j]]))
            j += 1
        if pos < end:
            pieces.append((pos, data[pos - start :]))
        new = sum(len(piece) for _, piece in pieces)
        if not new:
            self.stats.retransmitted += len(data)
            return
        self.stats.overlapping += len(data) - new
        for piece_start, piece in pieces:
            # Pieces lie between held chunks, so each goes right after its predecessor.
            starts.insert(bisect_right(starts, piece_start, lo=i), piece_start)
            chunks[piece_start] = piece
            self._buffered += len(piece)

    def _drain(self) -> None:
        """Move buffered chunks that now continue the stream to the output."""
        starts = self._starts
        n = 0
        while n < len(starts) and starts[n] == self._next:
            chunk = self._chunks.pop(starts[n])
            self._ready.append(chunk)
            self._buffered -= len(chunk)
            self._next += len(chunk)
            n += 1
        if n:
            del starts[:n]

    def _skip_hole(self, *, bounded: bool = False) -> None:
        """Give up on the first hole: mark it as a Gap and deliver what follows it."""
        self._gap_to(self._starts[0], bounded=bounded)
        self._drain()

    def _gap_to(self, offset: int, *, bounded: bool = False) -> None:
        length = offset - self._next
        self._ready.append(Gap(self._next, length, bounded))
        self.stats.gap_bytes += length
        self._next = offset
