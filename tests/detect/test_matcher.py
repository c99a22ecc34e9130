"""Both engines report every occurrence of every pattern, overlapping ones included."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phonehome.detect.matcher import AhoCorasick, Hyperscan, hyperscan_available, patterns_key


def _naive(patterns: list[bytes], data: bytes) -> list[tuple[int, int]]:
    out = []
    for idx, p in enumerate(patterns):
        start = data.find(p)
        while start != -1:
            out.append((idx, start + len(p)))
            start = data.find(p, start + 1)
    return sorted(out)


@settings(max_examples=200, deadline=None)
@given(
    patterns=st.lists(
        st.binary(min_size=1, max_size=4).map(lambda b: bytes(x % 3 + 97 for x in b)),
        min_size=1,
        max_size=12,
        unique=True,
    ),
    data=st.binary(max_size=64).map(lambda b: bytes(x % 3 + 97 for x in b)),
)
def test_aho_corasick_finds_exactly_what_a_naive_search_finds(patterns: list[bytes], data: bytes) -> None:
    assert sorted(AhoCorasick(patterns).scan(data)) == _naive(patterns, data)


@pytest.mark.skipif(not hyperscan_available(), reason="the hyperscan package does not load here")
@settings(max_examples=100, deadline=None)
@given(
    patterns=st.lists(st.binary(min_size=1, max_size=4), min_size=1, max_size=12, unique=True),
    data=st.binary(max_size=64),
)
def test_hyperscan_agrees_with_aho_corasick_on_any_bytes(patterns: list[bytes], data: bytes) -> None:
    assert sorted(Hyperscan(patterns, cache_dir=None).scan(data)) == sorted(AhoCorasick(patterns).scan(data))


@pytest.mark.skipif(not hyperscan_available(), reason="the hyperscan package does not load here")
def test_compiled_database_is_cached_and_reused(tmp_path: Path) -> None:
    patterns = [f"needle-{i:05d}".encode() for i in range(5000)]
    first = Hyperscan(patterns, cache_dir=tmp_path)
    files = list(tmp_path.glob("hs-*.db"))
    assert len(files) == 1
    second = Hyperscan(patterns, cache_dir=tmp_path)
    data = b"xx needle-04242 yy needle-00007"
    assert sorted(first.scan(data)) == sorted(second.scan(data)) == [(7, 31), (4242, 15)]
    files[0].write_bytes(b"corrupt")
    third = Hyperscan(patterns, cache_dir=tmp_path)  # a broken cache is ignored
    assert sorted(third.scan(data)) == [(7, 31), (4242, 15)]


@pytest.mark.skipif(not hyperscan_available(), reason="the hyperscan package does not load here")
def test_the_cache_key_tells_apart_pattern_lists_that_join_alike() -> None:
    keys = {patterns_key(patterns) for patterns in ([b"ab", b"c"], [b"a", b"bc"], [b"abc"], [b"c", b"ab"])}
    assert len(keys) == 4


@pytest.mark.skipif(not hyperscan_available(), reason="the hyperscan package does not load here")
def test_a_database_is_found_by_its_key_without_the_patterns(tmp_path: Path) -> None:
    patterns = [f"needle-{i:05d}".encode() for i in range(5000)]
    key = patterns_key(patterns)
    assert Hyperscan.cached(key, tmp_path) is None  # nothing compiled yet
    Hyperscan(patterns, cache_dir=tmp_path)
    found = Hyperscan.cached(key, tmp_path)
    assert found is not None
    assert sorted(found.scan(b"xx needle-04242 yy needle-00007")) == [(7, 31), (4242, 15)]
    assert Hyperscan.cached(patterns_key(patterns[1:]), tmp_path) is None
    (entry,) = tmp_path.glob("hs-*.db")
    entry.write_bytes(b"corrupt")
    assert Hyperscan.cached(key, tmp_path) is None
