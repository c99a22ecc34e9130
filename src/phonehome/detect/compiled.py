"""A profile's needles and digests compiled into flat arrays, built once and kept on disk.

Expanding a 10,000-contact profile into its needles takes seconds and, held as Python objects,
hundreds of megabytes (a dictionary of close to a million digests). :class:`CompiledNeedles` holds
the same information in a few byte strings and integer arrays: the patterns end to end with their
offsets, each pattern's needles (identifier, label, boundary), and per digest size the digests in
sorted order with a directory by their first two bytes. It answers what :class:`NeedleSet` answers
(the needles of a matched pattern, the entries of a digest, in the same order) and is saved under
the user's cache folder, keyed by the identifiers and the code that expands them, so the next
audit with the same profile loads it in milliseconds. A cache that cannot be read is rebuilt.

The file is not a pickle: a JSON header (labels, section lengths) and raw array sections, read
with bounds checked, so a damaged or foreign file is refused rather than executed.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import sys
from array import array
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, TypeAlias

from phonehome.cache import cache_folder, map_entry, package_version, save_entry
from phonehome.detect import forms, needles
from phonehome.detect.matcher import patterns_key
from phonehome.detect.needles import IdentifierLike, NeedleSet

__all__ = ["CompiledNeedles", "compile_needles", "load_needles"]

FORMAT = "phonehome-needles/3"
_MAGIC = b"phonehome-needles\n"
# Below this many identifiers, expanding is faster than reading a file.
CACHE_MIN_IDENTIFIERS = 500
_LABELS = 4096  # as needles._LABELS: packed entry = identifier * _LABELS + label code
_BUCKET_BITS = 16  # digests are bucketed by their first two bytes


class CompiledNeedles:
    """The needles and digest table of one profile, in flat arrays."""

    __slots__ = (
        "_bounds",
        "_codes",
        "_digest_labels",
        "_digests",
        "_groups",
        "_idents",
        "_labels",
        "_offsets",
        "_patterns",
        "digest_count",
        "engine_key",
    )

    def __init__(
        self,
        patterns: _Bytes,
        offsets: _Ints,
        groups: _Ints,
        idents: _Ints,
        codes: _Ints,
        bounds: _Bytes,
        labels: list[tuple[str, str]],
        digest_labels: list[tuple[str, str]],
        digests: dict[int, tuple[_Bytes, _Ints, _Ints]],
        engine_key: str | None,
    ) -> None:
        self._patterns = patterns  # every distinct pattern, end to end
        self._offsets = offsets  # pattern i is _patterns[_offsets[i]:_offsets[i + 1]]
        self._groups = groups  # pattern i's needles are entries _groups[i] .. _groups[i + 1] - 1
        self._idents = idents  # per needle: identifier index
        self._codes = codes  # per needle: index into _labels
        self._bounds = bounds  # per needle: 1 when it must not touch a token of its own class
        self._labels = labels  # (form, encoding)
        self._digest_labels = digest_labels
        # digest size -> (sorted digests end to end, packed entry of each, bucket directory)
        self._digests = digests
        self.digest_count = sum(len(values) for _keys, values, _dir in digests.values())
        # Names the matcher's compiled patterns in the cache (see matcher.Hyperscan), so a cached
        # database is found without making the patterns; None when a pattern holds a NUL byte.
        self.engine_key = engine_key

    @property
    def pattern_count(self) -> int:
        return len(self._offsets) - 1

    def patterns(self) -> list[bytes]:
        data, offsets = bytes(self._patterns), self._offsets
        return [data[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]

    def matched(self, pid: int) -> tuple[bytes, tuple[tuple[int, str, str], ...], bool]:
        """What a match of pattern ``pid`` needs, each array read once: the pattern, the
        (identifier, form, encoding) of its needles in profile order, and whether the first is
        bounded. A pattern is looked up on its first match; the arrays are far apart in memory."""
        idents, codes, labels = self._idents, self._codes, self._labels
        lo, hi = self._groups[pid], self._groups[pid + 1]
        found = tuple((idents[n], *labels[codes[n]]) for n in range(lo, hi))
        start, stop = self._offsets[pid], self._offsets[pid + 1]
        return bytes(self._patterns[start:stop]), found, bool(self._bounds[lo])

    def digest_entries(self, digest: bytes) -> list[tuple[int, str, str]]:
        """(identifier, form, digest encoding) of every needle whose digest is ``digest``, in order."""
        table = self._digests.get(len(digest))
        if table is None:
            return []
        keys, values, directory = table
        size = len(digest)
        bucket = digest[0] << 8 | digest[1]
        lo, hi = directory[bucket], directory[bucket + 1]
        if lo == hi:
            return []
        # The bucket's digests (a few: a directory entry per two leading bytes), searched at once;
        # equal digests are next to each other, the first found first.
        block = bytes(keys[lo * size : hi * size])
        at = block.find(digest)
        while at > 0 and at % size:
            at = block.find(digest, at + 1)
        if at < 0:
            return []
        out = []
        labels = self._digest_labels
        for i in range(lo + at // size, hi):
            if block[(i - lo) * size : (i - lo + 1) * size] != digest:
                break
            ident, code = divmod(values[i], _LABELS)
            form, encoding = labels[code]
            out.append((ident, form, encoding))
        return out

    # -- on disk -----------------------------------------------------------------------------------

    def dump(self) -> bytes:
        sections: list[tuple[str, bytes]] = [
            ("patterns", bytes(self._patterns)),
            ("offsets", self._offsets.tobytes()),
            ("groups", self._groups.tobytes()),
            ("idents", self._idents.tobytes()),
            ("codes", self._codes.tobytes()),
            ("bounds", bytes(self._bounds)),
        ]
        for size, (keys, values, directory) in sorted(self._digests.items()):
            sections += [
                (f"digests{size}", bytes(keys)),
                (f"values{size}", values.tobytes()),
                (f"directory{size}", directory.tobytes()),
            ]
        header = {
            "format": FORMAT,
            "byteorder": sys.byteorder,
            "labels": self._labels,
            "digest_labels": self._digest_labels,
            "sizes": sorted(self._digests),
            "engine_key": self.engine_key,
            "sections": [[name, len(data)] for name, data in sections],
        }
        head = json.dumps(header).encode()
        out = [_MAGIC, len(head).to_bytes(8, "little"), head]
        pos = sum(map(len, out))
        for _name, data in sections:
            # Each section starts 8-aligned, so the arrays can be read in place from a mapping.
            out.append(b"\0" * (-pos % 8))
            out.append(data)
            pos += -pos % 8 + len(data)
        return b"".join(out)

    @classmethod
    def load(cls, blob: bytes | mmap.mmap) -> CompiledNeedles:
        """The table ``dump`` wrote, read in place (no copy of its arrays); ValueError for anything else."""
        view = memoryview(blob)
        if bytes(view[: len(_MAGIC)]) != _MAGIC:
            raise ValueError("not a compiled needle file")
        pos = len(_MAGIC)
        size = int.from_bytes(view[pos : pos + 8], "little")
        pos += 8
        header = json.loads(bytes(view[pos : pos + size]))
        pos += size
        if header.get("format") != FORMAT or header.get("byteorder") != sys.byteorder:
            raise ValueError("compiled needle file of another format")
        parts: dict[str, memoryview] = {}
        for name, length in header["sections"]:
            pos += -pos % 8
            data = view[pos : pos + length]
            if len(data) != length:
                raise ValueError("compiled needle file is truncated")
            pos += length
            typecode = _TYPECODES.get(name.rstrip("0123456789"))
            parts[name] = data.cast(typecode) if typecode else data
        digests: dict[int, tuple[_Bytes, _Ints, _Ints]] = {
            int(s): (parts[f"digests{s}"], parts[f"values{s}"], parts[f"directory{s}"])
            for s in header["sizes"]
        }
        return cls(
            parts["patterns"],
            parts["offsets"],
            parts["groups"],
            parts["idents"],
            parts["codes"],
            parts["bounds"],
            [(form, encoding) for form, encoding in header["labels"]],
            [(form, encoding) for form, encoding in header["digest_labels"]],
            digests,
            header["engine_key"],
        )


# Array sections and their item types (the rest are bytes).
_TYPECODES: dict[str, Literal["Q", "I", "H"]] = {
    "offsets": "Q",
    "groups": "Q",
    "idents": "I",
    "codes": "H",
    "values": "Q",
    "directory": "Q",
}
_Ints: TypeAlias = "array[int] | memoryview"
_Bytes: TypeAlias = "bytes | memoryview"


def compile_needles(identifiers: Sequence[IdentifierLike]) -> CompiledNeedles:
    """Expand the identifiers (through :class:`NeedleSet`) into the flat tables."""
    needle_set = NeedleSet(identifiers)
    # Identical patterns (two contacts sharing a number) share one entry, needles in profile order.
    index: dict[bytes, list[needles.Needle]] = {}
    for needle in needle_set.needles:
        index.setdefault(needle.pattern, []).append(needle)
    labels: dict[tuple[str, str], int] = {}
    offsets, groups = array("Q", [0]), array("Q", [0])
    idents, codes = array("I"), array("H")
    bounds = bytearray()
    for pattern, group in index.items():
        offsets.append(offsets[-1] + len(pattern))
        for needle in group:
            idents.append(needle.ident)
            codes.append(labels.setdefault((needle.form, needle.encoding), len(labels)))
            bounds.append(needle.boundary)
        groups.append(len(idents))
    digests: dict[int, tuple[_Bytes, _Ints, _Ints]] = {}
    by_size: dict[int, list[tuple[bytes, int]]] = {}
    for digest, packed in needle_set.digests.items():
        for entry in packed if isinstance(packed, list) else (packed,):
            by_size.setdefault(len(digest), []).append((digest, entry))
    for size, entries in by_size.items():
        entries.sort(key=lambda e: e[0])  # stable: a digest's entries stay in insertion order
        directory = array("Q", [0] * ((1 << _BUCKET_BITS) + 1))
        for digest, _entry in entries:
            directory[(digest[0] << 8 | digest[1]) + 1] += 1
        for b in range(1 << _BUCKET_BITS):
            directory[b + 1] += directory[b]
        digests[size] = (b"".join(d for d, _e in entries), array("Q", (e for _d, e in entries)), directory)
    patterns = list(index)
    return CompiledNeedles(
        b"".join(patterns),
        offsets,
        groups,
        idents,
        codes,
        bytes(bounds),
        list(labels),
        list(needle_set.digest_labels),
        digests,
        None if any(b"\0" in p for p in patterns) else patterns_key(patterns),
    )


def _code_digest() -> bytes:
    """What the expansion depends on besides the identifiers: the code and the phone-number data."""
    digest = hashlib.sha256(FORMAT.encode())
    for module in (forms, needles):
        digest.update(Path(module.__file__ or "").read_bytes())
    digest.update(package_version("phonenumbers").encode())
    return digest.digest()


def _cache_path(identifiers: Sequence[IdentifierLike], cache_dir: Path | None) -> Path | None:
    directory = cache_folder(cache_dir)
    if directory is None:
        return None
    digest = hashlib.sha256(_code_digest())
    # A profile's IdentifierTable names itself (a digest of its rows): its identifiers stay unmade.
    named = getattr(identifiers, "digest", None)
    if isinstance(named, str):
        digest.update(b"table\0" + named.encode())
    else:
        fields = [(i.label, i.kind, i.category, i.value, i.region or "") for i in identifiers]
        digest.update(json.dumps(fields).encode())
    return directory / f"needles-{digest.hexdigest()[:32]}.bin"


def load_needles(identifiers: Sequence[IdentifierLike], cache_dir: Path | None = None) -> CompiledNeedles:
    """The compiled needles of ``identifiers``: from the cache when there, else built (and saved)."""
    path = _cache_path(identifiers, cache_dir) if len(identifiers) >= CACHE_MIN_IDENTIFIERS else None
    # Mapped, not read: pages of the digest tables are touched only when looked up.
    mapping = map_entry(path) if path is not None else None
    if mapping is not None:
        try:
            return CompiledNeedles.load(mapping)
        except (ValueError, KeyError, TypeError):
            pass  # unreadable: build it again
    compiled = compile_needles(identifiers)
    if path is not None:
        save_entry(path, compiled.dump())
    return compiled
