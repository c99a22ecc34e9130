"""Needles: every byte string that would show that an identifier left the phone.

Each identifier of the profile is expanded into its normal forms (:mod:`forms`), and each form
into the encodings apps use on the wire. Literal needles go to the multi-pattern matcher; digests,
which are fixed-length random-looking tokens, go to a lookup table keyed by the raw digest so
their cost does not grow with the profile (a 10,000-contact profile has millions of digests).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote, quote_plus

from phonehome.detect.forms import forms_of


class IdentifierLike(Protocol):
    @property
    def label(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def category(self) -> str: ...
    @property
    def value(self) -> str: ...
    @property
    def region(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Needle:
    ident: int  # index into the identifier list
    form: str  # which normal form
    encoding: str  # encoding applied to the form on the wire ("plain", "url", "base64", "hex")
    pattern: bytes
    boundary: bool  # must not touch a character of the same class on either side


# Shortest text worth searching: below this, even token boundaries do not keep false matches away.
MIN_TEXT = 3
# Shortest base64 fragment searched: 8 characters of base64 are 48 bits of the value.
MIN_B64_FRAGMENT = 8

# Categories whose identifiers are few per profile, so every literal encoding and nested digest
# is affordable.
_RICH_CATEGORIES = frozenset({"device", "subscriber", "network", "account", "custom"})


def _url_variants(text: str) -> list[bytes]:
    out = []
    for enc in (quote(text, safe=""), quote_plus(text, safe="")):
        out.append(enc.encode())
        out.append(_lower_percent(enc).encode())
    return out


def _lower_percent(text: str) -> str:
    parts = text.split("%")
    return parts[0] + "".join("%" + p[:2].lower() + p[2:] for p in parts[1:])


def base64_fragments(raw: bytes) -> list[bytes]:
    """The part of base64(prefix + raw + suffix) that depends only on ``raw``, for each alignment.

    A value inside a longer base64 blob starts at byte offset 0, 1 or 2 modulo 3; the characters
    that straddle its edges depend on its neighbours, so each alignment keeps only the characters
    whose six bits all come from the value (RFC 4648 §4).
    """
    out = []
    n = len(raw)
    for align in (0, 1, 2):
        enc = base64.b64encode(b"\0" * align + raw + b"\0\0")
        first = -(-8 * align // 6)  # ceil
        last = (8 * (align + n)) // 6
        frag = enc[first:last]
        if len(frag) >= MIN_B64_FRAGMENT:
            out.append(frag)
            url_frag = frag.translate(_URLSAFE)
            if url_frag != frag:
                out.append(url_frag)
    return out


_URLSAFE = bytes.maketrans(b"+/", b"-_")

# Literal encodings of one form: name -> function producing patterns. Tables, not if-chains.
_LITERAL: dict[str, Callable[[str], Iterable[bytes]]] = {
    "plain": lambda t: [t.encode()],
    "url": _url_variants,
    "base64": lambda t: base64_fragments(t.encode()),
    "hex": lambda t: [t.encode().hex().encode(), t.encode().hex().upper().encode()],
}
_BOUNDED = frozenset({"plain", "url"})
# Contacts and messages: the plain forms. Their other URL, base64 and hex encodings are found by
# the decoders that peel those layers, and their digests by single-level lookups, so a profile of
# tens of thousands of contacts stays a few needles per value.
_BULK = {"plain": _LITERAL["plain"]}
# ... and the URL-encoded canonical form, so "%2B91..." is one URL-encoded E.164 match rather
# than a plain match of the digits after the "%2B".
_BULK_CANONICAL = {"plain": _LITERAL["plain"], "url": _LITERAL["url"]}
_LABELS = 4096

DIGESTS: dict[str, Callable[[bytes], bytes]] = {
    "md5": lambda b: hashlib.md5(b, usedforsecurity=False).digest(),
    "sha1": lambda b: hashlib.sha1(b, usedforsecurity=False).digest(),
    "sha256": lambda b: hashlib.sha256(b).digest(),
}
DIGEST_SIZES = frozenset({16, 20, 32})


class NeedleSet:
    """All needles of a profile: literal patterns for the matcher, and the digest table."""

    def __init__(self, identifiers: Sequence[IdentifierLike]) -> None:
        self.identifiers = tuple(identifiers)
        self.needles: list[Needle] = []
        # raw digest -> packed entry (ident * _LABELS + label code), or a list of them on collision.
        # Ints, not objects: a 10,000-contact profile has hundreds of thousands of digests.
        self.digests: dict[bytes, int | list[int]] = {}
        self._labels: list[tuple[str, str]] = []  # (form, encoding) for each label code
        self._label_codes: dict[tuple[str, str], int] = {}
        self.skipped: list[str] = []
        seen: set[tuple[int, bytes]] = set()
        for idx, ident in enumerate(self.identifiers):
            if ident.kind in ("text", "name") and len(ident.value) < MIN_TEXT:
                self.skipped.append(
                    f"{ident.label} {ident.value!r} is shorter than {MIN_TEXT} characters; not searched"
                )
                continue
            rich = ident.category in _RICH_CATEGORIES
            for n, (form, text) in enumerate(forms_of(ident.kind, ident.value, ident.region)):
                encodings = _LITERAL if rich else _BULK_CANONICAL if n == 0 else _BULK
                for enc_name, enc in encodings.items():
                    for pattern in enc(text):
                        if (idx, pattern) in seen or len(pattern) < 2:
                            continue
                        seen.add((idx, pattern))
                        self.needles.append(Needle(idx, form, enc_name, pattern, enc_name in _BOUNDED))
                # Digests of digests for every form of the few device identifiers; for bulk
                # identifiers, of the canonical form (E.164, the address as given) only.
                self._add_digests(idx, form, text.encode(), nested=rich or n == 0, raw_inner=rich)

    def _code(self, form: str, encoding: str) -> int:
        key = (form, encoding)
        code = self._label_codes.get(key)
        if code is None:
            code = self._label_codes[key] = len(self._labels)
            self._labels.append(key)
            if code >= _LABELS:
                raise RuntimeError("too many distinct digest labels")
        return code

    def _put(self, digest: bytes, idx: int, form: str, encoding: str) -> None:
        packed = idx * _LABELS + self._code(form, encoding)
        old = self.digests.get(digest)
        if old is None:
            self.digests[digest] = packed
        elif isinstance(old, list):
            if packed not in old:
                old.append(packed)
        elif old != packed:
            self.digests[digest] = [old, packed]

    def _add_digests(self, idx: int, form: str, raw: bytes, *, nested: bool, raw_inner: bool) -> None:
        for name, fn in DIGESTS.items():
            inner = fn(raw)
            self._put(inner, idx, form, name)
            if not nested:
                continue
            # Digests of digests: the inner digest hashed as lower hex (the usual), upper hex, or raw.
            inner_hex = inner.hex()
            variants = [("", inner_hex.encode()), ("-upper", inner_hex.upper().encode())]
            if raw_inner:
                variants.append(("-raw", inner))
            for variant, data in variants:
                for outer_name, outer in DIGESTS.items():
                    self._put(outer(data), idx, form, f"{outer_name}({name}{variant})")

    def digest_entries(self, digest: bytes) -> list[tuple[int, str, str]]:
        """(identifier index, form, digest encoding) of every needle whose digest is ``digest``."""
        found = self.digests.get(digest)
        if found is None:
            return []
        out = []
        for packed in found if isinstance(found, list) else (found,):
            idx, code = divmod(packed, _LABELS)
            form, encoding = self._labels[code]
            out.append((idx, form, encoding))
        return out

    @property
    def digest_labels(self) -> list[tuple[str, str]]:
        """(form, digest encoding) of each label code packed into :attr:`digests`."""
        return list(self._labels)

    @property
    def patterns(self) -> list[bytes]:
        return [n.pattern for n in self.needles]
