"""Compiled needles answer as the NeedleSet they come from, survive the disk, and refuse damage."""

from __future__ import annotations

import hashlib
import pickle
from array import array
from pathlib import Path

import pytest

from factories import SAMPLES
from phonehome.detect import compiled
from phonehome.detect.compiled import CompiledNeedles, compile_needles, load_needles
from phonehome.detect.matcher import patterns_key
from phonehome.detect.needles import NeedleSet
from phonehome.profile import Identifier, IdentifierTable

IDENTIFIERS = list(SAMPLES.values())


def contacts(n: int) -> list[Identifier]:
    out = []
    for i in range(n):
        out.append(Identifier("contact.phone", "phone", "contacts", f"+9198{i:08d}", f"P {i}", "IN"))
        out.append(Identifier("contact.email", "email", "contacts", f"p{i}@example.org", f"P {i}"))
    return out


def grouped(needle_set: NeedleSet) -> dict[bytes, list[tuple[int, str, str, bool]]]:
    index: dict[bytes, list[tuple[int, str, str, bool]]] = {}
    for n in needle_set.needles:
        index.setdefault(n.pattern, []).append((n.ident, n.form, n.encoding, n.boundary))
    return index


def same_answers(table: CompiledNeedles, needle_set: NeedleSet) -> None:
    index = grouped(needle_set)
    assert table.patterns() == list(index)
    for pid, pattern in enumerate(index):
        needles = index[pattern]
        assert table.matched(pid) == (pattern, tuple(n[:3] for n in needles), needles[0][3])
    assert table.digest_count == sum(
        len(v) if isinstance(v, list) else 1 for v in needle_set.digests.values()
    )
    for digest in needle_set.digests:
        assert table.digest_entries(digest) == needle_set.digest_entries(digest)


def test_compiled_tables_answer_as_the_needle_set() -> None:
    idents = [*IDENTIFIERS, *contacts(20)]
    same_answers(compile_needles(idents), NeedleSet(idents))


def test_digests_that_are_not_there_find_nothing() -> None:
    table = compile_needles(IDENTIFIERS)
    imei = SAMPLES["imei"].value.encode()
    assert table.digest_entries(hashlib.md5(imei, usedforsecurity=False).digest())
    for absent in (b"\0" * 16, b"\xff" * 20, hashlib.sha256(b"nobody").digest(), b"", b"short"):
        assert table.digest_entries(absent) == []


def test_shared_digests_keep_every_entry_in_profile_order() -> None:
    # Two contacts with the same number: every digest of it belongs to both, first one first.
    twin = Identifier("contact.phone", "phone", "contacts", "+919811122233", "Twin", "IN")
    idents = [SAMPLES["contact.phone"], twin]
    needle_set = NeedleSet(idents)
    table = compile_needles(idents)
    digest = hashlib.sha1(b"+919811122233", usedforsecurity=False).digest()
    assert [e[0] for e in table.digest_entries(digest)] == [0, 1]
    same_answers(table, needle_set)


def test_dump_and_load_round_trip_and_damage_is_refused() -> None:
    table = compile_needles([*IDENTIFIERS, *contacts(5)])
    blob = table.dump()
    same_answers(CompiledNeedles.load(blob), NeedleSet([*IDENTIFIERS, *contacts(5)]))
    for damaged in (
        blob[:-1],
        b"not a table",
        blob[:40],
        blob.replace(compiled.FORMAT.encode(), b"phonehome-needles/0"),
    ):
        with pytest.raises(ValueError):
            CompiledNeedles.load(damaged)


def test_large_profiles_are_cached_and_read_back(tmp_path: Path) -> None:
    idents = contacts(compiled.CACHE_MIN_IDENTIFIERS // 2)
    first = load_needles(idents, tmp_path)
    files = list(tmp_path.glob("needles-*.bin"))
    assert len(files) == 1
    again = load_needles(idents, tmp_path)
    assert again.dump() == first.dump()
    # A damaged cache file is rebuilt, not trusted.
    files[0].write_bytes(b"phonehome-needles\n garbage")
    rebuilt = load_needles(idents, tmp_path)
    assert rebuilt.dump() == first.dump()
    assert files[0].read_bytes() == first.dump()
    # Another profile gets its own file.
    load_needles(contacts(compiled.CACHE_MIN_IDENTIFIERS // 2 + 1), tmp_path)
    assert len(list(tmp_path.glob("needles-*.bin"))) == 2


def test_a_table_of_identifiers_is_cached_by_its_own_name_and_keeps_them_unmade(tmp_path: Path) -> None:
    idents = contacts(compiled.CACHE_MIN_IDENTIFIERS // 2)
    reference = load_needles(idents, tmp_path)
    table = IdentifierTable.of(idents)
    assert load_needles(table, tmp_path).dump() == reference.dump()
    again = pickle.loads(pickle.dumps(table))  # the same rows, none made yet
    assert load_needles(again, tmp_path).dump() == reference.dump()
    assert not again._made  # found by the table's digest: not one identifier was made
    assert len(list(tmp_path.glob("needles-*.bin"))) == 2  # the list's key and the table's


def test_the_engine_key_names_the_patterns_unless_one_holds_a_nul() -> None:
    table = compile_needles(IDENTIFIERS)
    assert table.engine_key == patterns_key(table.patterns())
    assert CompiledNeedles.load(table.dump()).engine_key == table.engine_key
    with_nul = compile_needles([Identifier("custom", "opaque", "custom", "ab\0cd")])
    assert any(b"\0" in p for p in with_nul.patterns()) and with_nul.engine_key is None


def test_small_profiles_are_not_cached(tmp_path: Path) -> None:
    load_needles(IDENTIFIERS, tmp_path)
    assert not list(tmp_path.iterdir())


def test_a_digest_spanning_two_neighbours_in_its_bucket_is_not_taken_for_one() -> None:
    # Three sorted 16-byte digests of one bucket (leading bytes 00 00): the third also appears,
    # misaligned, across the end of the first and the start of the second.
    first = b"\0\0\0\0" + b"C" * 12
    second = b"\0\0\0\1" + b"D" * 12
    third = first[2:] + second[:2]
    assert first < second < third and (first + second).find(third) == 2
    directory = array("Q", [0] + [3] * (1 << 16))
    digests = {16: (first + second + third, array("Q", [7 * 4096, 8 * 4096, 9 * 4096]), directory)}
    table = CompiledNeedles(
        b"",
        array("Q", [0]),
        array("Q", [0]),
        array("I"),
        array("H"),
        b"",
        [],
        [("hex", "md5")],
        digests,
        None,
    )
    assert table.digest_entries(third) == [(9, "hex", "md5")]
    assert table.digest_entries(first) == [(7, "hex", "md5")]
    assert table.digest_entries(first[:15] + b"X") == []
