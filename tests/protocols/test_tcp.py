"""TCP reassembly: exact reconstruction, gaps where bytes are missing, bounded buffering."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phonehome.protocols.tcp import Gap, Reassembler

MOD = 1 << 32


def normalise(items: list[bytes | Gap]) -> list[bytes | Gap]:
    """Join runs of adjacent byte chunks, so outputs compare independently of segmentation."""
    out: list[bytes | Gap] = []
    for item in items:
        if isinstance(item, bytes):
            if not item:
                continue
            if out and isinstance(out[-1], bytes):
                out[-1] += item
                continue
        out.append(item)
    return out


def expected_with_gaps(data: bytes, covered: list[bool], *, fin: bool) -> list[bytes | Gap]:
    """``data`` with each maximal run of uncovered bytes replaced by one Gap."""
    out: list[bytes | Gap] = []
    i = 0
    n = len(data)
    if not fin:
        # Without a FIN nothing says the stream went on past the last byte received.
        while n and not covered[n - 1]:
            n -= 1
    while i < n:
        j = i
        while j < n and covered[j] == covered[i]:
            j += 1
        out.append(data[i:j] if covered[i] else Gap(i, j - i))
        i = j
    return out


@dataclass
class Scenario:
    data: bytes
    isn: int
    segments: list[tuple[int, int]]  # (start, end) stream offsets, in arrival order
    fin: bool
    pops: set[int]  # after which arrivals pop() is called


@st.composite
def scenarios(draw: st.DrawFn, *, drop: bool) -> Scenario:
    data = draw(st.binary(max_size=400))
    isn = draw(st.one_of(st.integers(0, MOD - 1), st.integers(MOD - 500, MOD - 1)))
    cuts = draw(st.sets(st.integers(1, max(len(data) - 1, 1)), max_size=40)) if len(data) > 1 else set()
    bounds = [0, *sorted(cuts), len(data)]
    segments = [(a, b) for a, b in pairwise(bounds) if b > a]
    if drop:
        keep = draw(st.lists(st.booleans(), min_size=len(segments), max_size=len(segments)))
        segments = [s for s, k in zip(segments, keep, strict=True) if k]
    # Retransmissions: exact copies of segments, and arbitrary ranges that overlap them.
    if segments:
        segments += draw(st.lists(st.sampled_from(segments), max_size=5))
    if data:
        ranges = st.tuples(st.integers(0, len(data)), st.integers(0, len(data))).map(sorted)
        segments += [(a, b) for a, b in draw(st.lists(ranges, max_size=5)) if b > a]
    order = draw(st.permutations(segments))
    pops = draw(st.sets(st.integers(0, max(len(order) - 1, 0))))
    fin = draw(st.booleans()) if drop else True
    return Scenario(data, isn, list(order), fin, pops)


def run(s: Scenario, reassembler: Reassembler | None = None) -> tuple[Reassembler, list[bytes | Gap]]:
    r = reassembler or Reassembler()
    r.add(s.isn, b"", syn=True)
    out: list[bytes | Gap] = []
    for i, (a, b) in enumerate(s.segments):
        r.add((s.isn + 1 + a) % MOD, s.data[a:b])
        if i in s.pops:
            out += r.pop()
    if s.fin:
        r.add((s.isn + 1 + len(s.data)) % MOD, b"", fin=True)
    out += r.pop()
    out += r.close()
    return r, out


@settings(max_examples=300)
@given(scenarios(drop=False))
def test_any_segmentation_reproduces_the_stream(s: Scenario) -> None:
    r, out = run(s)
    assert all(isinstance(item, bytes) for item in out)
    assert b"".join(item for item in out if isinstance(item, bytes)) == s.data
    assert r.offset == len(s.data)
    assert r.finished
    assert r.buffered == 0
    fed = sum(b - a for a, b in s.segments)
    assert r.stats.retransmitted + r.stats.overlapping == fed - len(s.data)
    assert r.stats.gap_bytes == 0


@settings(max_examples=300)
@given(scenarios(drop=True))
def test_missing_ranges_become_gaps(s: Scenario) -> None:
    covered = [False] * len(s.data)
    for a, b in s.segments:
        covered[a:b] = [True] * (b - a)
    r, out = run(s)
    expected = expected_with_gaps(s.data, covered, fin=s.fin)
    assert normalise(out) == expected
    assert r.stats.gap_bytes == sum(g.length for g in expected if isinstance(g, Gap))
    assert r.offset == sum(len(x) if isinstance(x, bytes) else x.length for x in expected)


@settings(max_examples=200)
@given(
    scenarios(drop=True),
    st.integers(0, 60),
    st.integers(0, 6),
)
def test_bounded_buffer_never_glues_bytes(s: Scenario, max_buffered: int, max_segments: int) -> None:
    r = Reassembler(max_buffered=max_buffered, max_segments=max_segments)
    r.add(s.isn, b"", syn=True)
    out: list[bytes | Gap] = []
    for a, b in s.segments:
        r.add((s.isn + 1 + a) % MOD, s.data[a:b])
        assert r.buffered <= max_buffered
        out += r.pop()
    if s.fin:
        r.add((s.isn + 1 + len(s.data)) % MOD, b"", fin=True)
    out += r.close()
    # Every chunk sits at its true offset; gaps and chunks tile the stream with no overlap.
    pos = 0
    previous: bytes | Gap | None = None
    for item in out:
        if isinstance(item, Gap):
            assert item.offset == pos
            assert item.length > 0
            assert not isinstance(previous, Gap)
            pos += item.length
        else:
            assert item == s.data[pos : pos + len(item)]
            pos += len(item)
        previous = item
    assert pos == r.offset <= len(s.data)
    if s.fin:
        assert pos == len(s.data)


def test_in_order_data_is_handed_over_without_copying() -> None:
    r = Reassembler()
    r.add(100, b"", syn=True)
    chunks = [bytes([i]) * 1000 for i in range(50)]
    for i, chunk in enumerate(chunks):
        r.add(101 + i * 1000, chunk)
    out = r.pop()
    assert len(out) == len(chunks)
    assert all(a is b for a, b in zip(out, chunks, strict=True))
    assert r.offset == 50_000
    assert r.pop() == []


def test_mid_flow_start_drops_older_data() -> None:
    r = Reassembler()
    r.add(5000, b"", fin=False)  # a bare ACK says nothing about the stream start
    r.add(1000, b"abc")
    r.add(990, b"0123456789")  # before the first segment seen: old data
    r.add(997, b"xyzab")  # old, overlapping what was already taken
    r.add(1003, b"def")
    assert r.pop() == [b"abc", b"def"]
    assert r.stats.retransmitted == 15
    assert r.stats.overlapping == 0


def test_mid_flow_start_partial_overlap_keeps_the_new_tail() -> None:
    r = Reassembler()
    r.add(1000, b"abc")
    r.add(998, b"xxabcdef")
    assert normalise(r.pop()) == [b"abcdef"]
    assert r.stats.overlapping == 5


def test_sequence_wrap_around_mid_flow() -> None:
    r = Reassembler()
    r.add(MOD - 3, b"abc")
    r.add(3, b"ghi")  # ahead of the hole at 0..3 after the wrap
    r.add(0, b"def")
    assert normalise(r.pop()) == [b"abcdefghi"]
    r.add(MOD - 1, b"c")  # a retransmission from before the wrap
    assert r.stats.retransmitted == 1


def test_wrap_around_beyond_four_gigabytes_of_stream() -> None:
    r = Reassembler()
    r.add(7, b"", syn=True)
    pos = 0
    block = b"x" * (1 << 16)
    # Deliver 5 GiB worth of offsets cheaply: the same block object repeatedly.
    for _ in range(5 * (1 << 14)):
        r.add((8 + pos) % MOD, block)
        pos += len(block)
        r.pop()
    r.add((8 + pos + 2) % MOD, b"yz")
    r.add((8 + pos) % MOD, b"ab")
    assert r.pop() == [b"ab", b"yz"]
    assert r.offset == 5 * (1 << 30) + 4


def test_first_copy_wins() -> None:
    r = Reassembler()
    r.add(0, b"", syn=True)
    r.add(5, b"EFGH")
    r.add(3, b"cdefghij")
    r.add(1, b"ab")
    assert normalise(r.pop()) == [b"abcdEFGHij"]
    assert r.stats.overlapping == 4


def test_buffer_bound_skips_the_hole() -> None:
    r = Reassembler(max_buffered=10)
    r.add(0, b"", syn=True)
    r.add(1, b"01234")
    r.add(11, b"ABCDEFGHIJ")  # offsets 10..20, 10 bytes held: at the bound
    assert r.pop() == [b"01234"]
    assert r.buffered == 10
    r.add(21, b"K")  # 11 bytes held: give up on 5..10
    assert r.pop() == [Gap(5, 5), b"ABCDEFGHIJ", b"K"]
    assert r.buffered == 0
    assert r.stats.gap_bytes == 5
    r.add(6, b"late!")  # the skipped bytes arriving after all are not delivered
    assert r.pop() == []
    assert r.stats.retransmitted == 5


def test_segment_count_bound_skips_the_hole() -> None:
    r = Reassembler(max_segments=2)
    r.add(0, b"", syn=True)
    r.add(3, b"b")
    r.add(5, b"d")
    assert r.pop() == []
    r.add(7, b"f")
    assert r.pop() == [Gap(0, 2), b"b"]
    assert r.close() == [Gap(3, 1), b"d", Gap(5, 1), b"f"]


def test_fin_ends_the_stream() -> None:
    r = Reassembler()
    r.add(41, b"", syn=True)
    r.add(42, b"hello", fin=True)
    assert r.finished
    assert r.pop() == [b"hello"]
    r.add(47, b"junk")  # past the FIN
    assert r.stats.after_fin == 4
    assert r.close() == []
    assert r.offset == 5


def test_fin_with_a_hole_before_it() -> None:
    r = Reassembler()
    r.add(0, b"", syn=True)
    r.add(1, b"ab")
    r.add(9, b"", fin=True)  # FIN at offset 8: 2..8 never arrived
    assert r.pop() == [b"ab"]
    assert not r.finished
    assert r.close() == [Gap(2, 6)]
    assert r.finished


def test_fin_learned_late_trims_buffered_data() -> None:
    r = Reassembler()
    r.add(0, b"", syn=True)
    r.add(6, b"fghij")  # offsets 5..10
    r.add(12, b"lm")  # offsets 11..13
    r.add(4, b"de", fin=True)  # FIN at offset 5 after all
    assert r.stats.after_fin == 7
    assert r.close() == [Gap(0, 3), b"de"]


def test_syn_with_data_and_retransmitted_syn() -> None:
    r = Reassembler()
    r.add(MOD - 1, b"GET", syn=True)  # data starts at ISN + 1 = 0 after the wrap
    r.add(MOD - 1, b"GET", syn=True)
    r.add(3, b" /")
    assert normalise(r.pop()) == [b"GET /"]
    assert r.stats.retransmitted == 3


def test_close_keeps_the_reassembler_usable() -> None:
    r = Reassembler()
    r.add(0, b"", syn=True)
    r.add(1, b"ab")
    r.add(5, b"ef")
    assert r.close() == [b"ab", Gap(2, 2), b"ef"]
    r.add(7, b"g")
    assert r.pop() == [b"g"]
    assert r.offset == 7


def test_negative_bounds_are_refused() -> None:
    with pytest.raises(ValueError):
        Reassembler(max_buffered=-1)


def test_a_hole_given_up_at_the_bound_is_marked_bounded() -> None:
    r = Reassembler(max_buffered=4)
    r.add(0, b"", syn=True)
    r.add(3, b"cdef")  # bytes 2..5 held behind the hole 0..1
    r.add(7, b"g")  # 5 bytes held: over the bound
    (gap, *_rest) = r.pop()
    assert isinstance(gap, Gap) and gap.bounded
    r.add(20, b"x")
    (end_gap, *_rest) = r.close()  # a hole still open at the end of the flow is not the bound's doing
    assert isinstance(end_gap, Gap) and not end_gap.bounded
