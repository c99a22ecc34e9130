"""Every identifier kind, through every encoding chain, is found; look-alikes are not."""

from __future__ import annotations

import base64
import bz2
import gzip
import hashlib
import json
import re
import zlib
from collections.abc import Callable
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from factories import SAMPLES
from phonehome.detect import scan
from phonehome.detect.decoders import Budget, base64_runs, peel
from phonehome.detect.forms import forms_of
from phonehome.detect.matcher import hyperscan_available
from phonehome.detect.scan import IN_PLACE, Detector, digest_tokens, escape_bytes, evidence, wrap_chain
from phonehome.profile import Identifier

ENGINES = ["aho-corasick", *(["hyperscan"] if hyperscan_available() else [])]
KINDS = sorted(SAMPLES)
# The walk through a part's views: in C where phonehome._detect is built ("auto"), and in Python.
WALKS = [
    "python",
    pytest.param(
        "auto", marks=pytest.mark.skipif(scan._Walker is None, reason="phonehome._detect is not built")
    ),
]


def _md5(b: bytes) -> bytes:
    return hashlib.md5(b, usedforsecurity=False).digest()


def _sha1(b: bytes) -> bytes:
    return hashlib.sha1(b, usedforsecurity=False).digest()


def _sha256(b: bytes) -> bytes:
    return hashlib.sha256(b).digest()


def _b64_token(b: bytes) -> bytes:
    return base64.b64encode(b)


# (expected chain, how the value goes on the wire). Each produces a token that the test embeds
# between delimiters, as a query parameter or JSON field would.
CHAINS: dict[str, Callable[[bytes], bytes]] = {
    "plain": lambda v: v,
    "url": lambda v: quote(v.decode(), safe="").encode()
    if quote(v.decode(), safe="") != v.decode()
    else None,  # type: ignore[return-value]
    "base64": _b64_token,
    "hex": lambda v: v.hex().encode(),
    "md5": lambda v: _md5(v).hex().encode(),
    "sha1": lambda v: _sha1(v).hex().upper().encode(),
    "sha256": lambda v: _sha256(v).hex().encode(),
    "base64(md5)": lambda v: base64.b64encode(_md5(v)),
    "base64(sha1)": lambda v: base64.urlsafe_b64encode(_sha1(v)).rstrip(b"="),
    "base64(sha256)": lambda v: base64.b64encode(_sha256(v)),
    "sha256(md5)": lambda v: _sha256(_md5(v).hex().encode()).hex().encode(),
    "md5(sha1)": lambda v: _md5(_sha1(v).hex().encode()).hex().encode(),
    "sha1(sha256-upper)": lambda v: _sha1(_sha256(v).hex().upper().encode()).hex().encode(),
    "base64(gzip)": lambda v: base64.b64encode(
        gzip.compress(json.dumps({"id": v.decode()}).encode(), mtime=0)
    ),
    "base64(zlib)": lambda v: base64.urlsafe_b64encode(zlib.compress(b"id=" + v)),
    "url(base64)": lambda v: quote(base64.b64encode(b"\x00\x01id=" + v + b"&").decode(), safe="").encode(),
    "json": lambda v: "".join(f"\\u{ord(c):04x}" for c in v.decode()).encode(),
    "base64(base64)": lambda v: base64.b64encode(base64.b64encode(b"{" + v + b"}")),
}


def _wire(kind: str, chain: str) -> tuple[bytes, Identifier] | None:
    ident = SAMPLES[kind]
    form = forms_of(ident.kind, ident.value, ident.region)[0][1].encode()
    token = CHAINS[chain](form)
    if token is None:
        return None
    return token, ident


# Each engine with each walk through a part's views: in C where phonehome._detect is built
# ("auto"), and in Python.
@pytest.fixture(scope="module", params=[(e, w) for e in ENGINES for w in ("python", "auto")])
def detector(request: pytest.FixtureRequest) -> Detector:
    engine, walk = request.param
    if walk == "auto" and scan._Walker is None:
        pytest.skip("phonehome._detect is not built")
    return Detector(list(SAMPLES.values()), engine, walk=walk)


def _accepted(chain: str) -> set[str]:
    # URL-encoding base64 only touches "+/=": the alignment needles may see the value through it.
    return {chain, "base64"} if chain == "url(base64)" else {chain}


# Every (kind, chain) pair whose wire form differs from the plain one (URL-encoding leaves an
# IMEI as it is, so that pair is the plain case again).
PAIRS = [(k, c) for k in KINDS for c in sorted(CHAINS) if _wire(k, c) is not None]


@pytest.mark.parametrize(("kind", "chain"), PAIRS)
def test_every_chain_for_every_kind(detector: Detector, kind: str, chain: str) -> None:
    made = _wire(kind, chain)
    assert made is not None
    token, ident = made
    data = b'{"v":"' + token + b'","t":1700000000}' if chain != "url" else b"a=1&v=" + token + b"&b=2"
    hits, _warnings = detector.scan(data)
    found = {(detector.identifiers[h.ident].label, h.encoding) for h in hits}
    assert any((ident.label, c) in found for c in _accepted(chain)), found


@settings(max_examples=60, deadline=None)
@given(
    kind=st.sampled_from(
        ["imei", "imsi", "phone", "android_id", "advertising_id", "wifi_mac", "serial", "email"]
    ),
    prefix=st.binary(max_size=7),
    suffix=st.binary(max_size=7),
    urlsafe=st.booleans(),
)
def test_base64_at_any_alignment_inside_a_longer_blob(
    kind: str, prefix: bytes, suffix: bytes, urlsafe: bool
) -> None:
    ident = SAMPLES[kind]
    detector = _detector_for(ident)
    value = forms_of(ident.kind, ident.value, ident.region)[0][1].encode()
    blob = (base64.urlsafe_b64encode if urlsafe else base64.b64encode)(prefix + value + suffix)
    hits, _ = detector.scan(b"id" + blob + b"&x=1")  # glued to text: only the alignment needles can see it
    assert any(h.encoding == "base64" for h in hits)


_DETECTORS: dict[str, Detector] = {}


def _detector_for(ident: Identifier) -> Detector:
    if ident.label not in _DETECTORS:
        _DETECTORS[ident.label] = Detector([ident])
    return _DETECTORS[ident.label]


@settings(max_examples=80, deadline=None)
@given(
    kind=st.sampled_from(KINDS),
    chain=st.sampled_from(sorted(CHAINS)),
    left=st.sampled_from([b"", b"x=", b" ", b"\x00\xff"]),
)
def test_chain_found_with_any_neighbours(kind: str, chain: str, left: bytes) -> None:
    made = _wire(kind, chain)
    if made is None:
        return
    token, ident = made
    hits, _ = _detector_for(ident).scan(left + token + b";")
    assert _accepted(chain) & {h.encoding for h in hits}


@pytest.mark.parametrize(
    ("kind", "text"),
    [
        ("carrier", b"carriers=airtelx"),  # inside a longer word
        ("carrier", b"xairtel"),
        ("imei", b"id=9865123456789019"),  # inside a longer number
        ("imei", b"id=8651234567890190"),
        ("imsi", b"4041012345678901"),
        ("phone", b"t=19876543210123"),
        ("android_id", b"ab9e28776354d259e0"),
    ],
)
def test_short_or_common_values_do_not_match_inside_longer_tokens(kind: str, text: bytes) -> None:
    hits, _ = _detector_for(SAMPLES[kind]).scan(text)
    assert list(hits) == []


def test_letters_next_to_a_number_are_a_boundary() -> None:
    hits, _ = _detector_for(SAMPLES["imei"]).scan(b"imei865123456789019&")
    assert [h.encoding for h in hits] == ["plain"]


@pytest.mark.parametrize("kind", KINDS)
def test_made_up_values_of_the_same_shape_find_nothing(kind: str) -> None:
    """Every wire form of the real value, scanned for a look-alike of the same shape: nothing."""
    real = SAMPLES[kind]
    fake_value = _lookalike(real.value)
    fake = Identifier(real.label, real.kind, real.category, fake_value, real.owner, real.region)
    detector = _detector_for_fake(fake)
    for chain in CHAINS:
        made = _wire(kind, chain)
        if made is None:
            continue
        hits, _ = detector.scan(b"v=" + made[0] + b"&")
        assert list(hits) == [], (chain, hits)


def _lookalike(value: str) -> str:
    """Same shape, different value: every digit and letter shifted."""
    out = []
    for c in value:
        if c.isdigit():
            out.append(str((int(c) + 3) % 10))
        elif c.isalpha():
            base = "a" if c.islower() else "A"
            span = 6 if c.lower() in "abcdef" else 26
            out.append(chr(ord(base) + (ord(c.lower()) - ord("a") + 1) % span))
        else:
            out.append(c)
    return "".join(out)


_FAKES: dict[str, Detector] = {}


def _detector_for_fake(ident: Identifier) -> Detector:
    if ident.label not in _FAKES:
        _FAKES[ident.label] = Detector([ident])
    return _FAKES[ident.label]


def test_one_occurrence_is_one_hit() -> None:
    hits, _ = _detector_for(SAMPLES["phone"]).scan(b"p=%2B919876543210")
    assert [(h.form, h.encoding) for h in hits] == [("e164", "url")]


def test_url_decoding_a_plain_value_adds_no_url_finding() -> None:
    hits, _ = _detector_for(SAMPLES["imei"]).scan(b"imei=865123456789019&name=a%20b")
    assert [h.encoding for h in hits] == ["plain"]


def test_wrap_chain() -> None:
    assert wrap_chain((), "plain") == "plain"
    assert wrap_chain(("base64", "gzip"), "plain") == "base64(gzip)"
    assert wrap_chain(("url",), "sha256(md5)") == "url(sha256(md5))"


def test_evidence_marks_the_match_and_escapes_everything_else() -> None:
    text = evidence(b"\x1b[31mimei=865123456789019\x00", 10, 25)
    assert "«865123456789019»" in text
    assert "\x1b" not in text and "\x00" not in text
    assert escape_bytes(b"a\\b\n") == "a\\x5cb\\x0a"


def test_a_decompression_bomb_is_cut_with_a_warning() -> None:
    bomb = base64.b64encode(gzip.compress(b"\0" * (64 << 20)))
    hits, warnings = _detector_for(SAMPLES["imei"]).scan(b"d=" + bomb)
    assert list(hits) == []
    assert any("exceeds" in w or "budget" in w for w in warnings)


def test_engines_agree_on_a_mixed_body() -> None:
    body = json.dumps(
        {
            "imei": "865123456789019",
            "h": hashlib.md5(b"b9e28776354d259e", usedforsecurity=False).hexdigest(),
            "m": "02-1A-11-F0-AA-B3",
            "c": base64.b64encode(bz2.compress(b"x")).decode(),
            "who": "asha%40example.org",
        }
    ).encode()
    results = []
    for engine in ENGINES:
        hits, _ = Detector(list(SAMPLES.values()), engine).scan(body)
        results.append(sorted((h.ident, h.form, h.encoding, h.evidence) for h in hits))
    assert all(r == results[0] for r in results)
    assert len(results[0]) == 4


# The definition of a digest token, as two independent regular expressions: the one-pass scanner
# in digest_tokens must find exactly what these find.
_HEX_REFERENCE = re.compile(
    rb"(?<![0-9A-Za-z])(?:[0-9a-fA-F]{64}|[0-9a-fA-F]{40}|[0-9a-fA-F]{32})(?![0-9A-Za-z])"
)
_B64_REFERENCE = re.compile(
    rb"(?<![A-Za-z0-9+/_-])(?:[A-Za-z0-9+/_-]{43}=?|[A-Za-z0-9+/_-]{27}=?|[A-Za-z0-9+/_-]{22}(?:==)?)"
    rb"(?![A-Za-z0-9+/=_-])"
)


def _reference_tokens(data: bytes) -> set[tuple[int, int, bytes, bool]]:
    out = {
        (m.start(), m.end(), bytes.fromhex(m.group().decode()), False) for m in _HEX_REFERENCE.finditer(data)
    }
    for m in _B64_REFERENCE.finditer(data):
        token = m.group().rstrip(b"=").replace(b"+", b"-").replace(b"/", b"_")
        out.add((m.start(), m.end(), base64.urlsafe_b64decode(token + b"=="), True))
    return out


# Runs of hex and base64 characters of the lengths that matter, and every separator around them.
_PIECES = st.one_of(
    st.sampled_from([b"=", b"==", b"===", b"-", b"_", b"+", b"/", b"&", b" ", b"\x00", b"g", b"Z"]),
    st.integers(20, 66).map(lambda n: (b"0123456789abcdef" * 5)[:n]),
    st.integers(20, 66).map(
        lambda n: (b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")[:n]
    ),
    st.binary(max_size=4),
)


@settings(max_examples=600, deadline=None)
@given(st.lists(_PIECES, max_size=10).map(b"".join))
def test_digest_tokens_are_what_the_reference_patterns_find(data: bytes) -> None:
    assert set(digest_tokens(data)) == _reference_tokens(data)


def test_digest_tokens_on_known_digests() -> None:
    md5 = hashlib.md5(b"865123456789019").digest()
    data = b"a=" + md5.hex().encode() + b"&b=" + base64.b64encode(md5) + b"&c=x" + md5.hex().encode()
    found = digest_tokens(data)
    assert [(raw, b64) for _s, _e, raw, b64 in found] == [(md5, False), (md5, True)]


def _scan_every_view(detector: Detector, data: bytes) -> tuple[list[tuple[int, str, str]], list[str]]:
    """What scanning the part and each view :func:`peel` gives would report, view by view: the
    first hit of each (identifier, chain), a view decoded in place reporting only identifiers its
    parent did not show."""
    budget = Budget()
    found: dict[tuple[int, str], tuple[int, str, str]] = {}
    seen: dict[tuple[str, ...], set[int]] = {}
    for chain, view in [((), data), *peel(data, budget)]:
        hits = detector._scan_view(view, chain, base64_runs(view))
        parent = seen.get(chain[:-1], set()) if chain and chain[-1] in IN_PLACE else set()
        for hit in hits:
            if hit.ident not in parent:
                found.setdefault((hit.ident, hit.encoding), (hit.ident, hit.encoding, hit.evidence))
        seen[chain] = {hit.ident for hit in hits} | parent
    return list(found.values()), budget.warnings or []


# Values of the samples wrapped in layers, with digits, padding and escapes around them.
_LAYERS: list[Callable[[bytes], bytes]] = [
    base64.b64encode,
    base64.urlsafe_b64encode,
    lambda b: b.hex().encode(),
    lambda b: gzip.compress(b, mtime=0),
    zlib.compress,
    lambda b: quote(b.decode("latin-1"), safe="").encode(),
    lambda b: json.dumps(b.decode("latin-1")).encode(),
    lambda b: _md5(b).hex().encode(),
]


@st.composite
def _layered(draw: st.DrawFn) -> bytes:
    value = SAMPLES[draw(st.sampled_from(KINDS))].value.encode()
    for layer in draw(st.lists(st.sampled_from(_LAYERS), max_size=5)):
        value = layer(value)
        if draw(st.booleans()):
            ends = st.sampled_from([b"", b"&x=1", b"==", b"\\n"])
            value = draw(st.binary(max_size=12)) + value + draw(ends)
    return value


_WALK_DETECTOR = Detector(list(SAMPLES.values()), walk="python")
# Escapes and token shapes for the decoders, good and broken.
_ESCAPES = st.lists(
    st.sampled_from(
        [
            b"\\b",
            b"\\n",
            b"\\t",
            b"\\u00e9",
            b"\\u20ac",
            b"\\ud83d",
            b"\\u12",
            b"\\\\",
            b"\\/",
            b'\\"',
            b"\\x",
        ]
    )
    | st.sampled_from(
        [b"%41", b"%4", b"%zz", b"%2B", b"+", b"=", b"==", b"aGVsbG8gd29ybGQ", b"0123456789abcdef"]
    )
    | st.sampled_from([b"-_", b"\x1f\x8b\x08", b"x\x9c", b"(\xb5/\xfd", b"\x00", b"\xff", b" "]),
    max_size=12,
).map(b"".join)
# Every identifier kind on the wire in every encoding chain.
_WIRE_FORMS = [made[0] for made in (_wire(kind, chain) for kind, chain in PAIRS) if made is not None]


@settings(max_examples=300, deadline=None)
@given(st.lists(_layered() | st.binary(max_size=40), min_size=1, max_size=4).map(b" ".join))
def test_the_walk_reports_what_scanning_every_peeled_view_would(data: bytes) -> None:
    detector = _WALK_DETECTOR
    hits, warnings = detector.scan(data)
    assert ([(h.ident, h.encoding, h.evidence) for h in hits], list(warnings)) == _scan_every_view(
        detector, data
    )


@pytest.mark.skipif(scan._Walker is None, reason="phonehome._detect is not built")
@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        _layered() | _ESCAPES | st.binary(max_size=60) | st.sampled_from(_WIRE_FORMS), min_size=1, max_size=5
    ),
    st.sampled_from([b" ", b"&", b"", b"=", b"\\u00"]),
)
def test_the_c_walk_gives_what_the_python_walk_gives(items: list[bytes], separator: bytes) -> None:
    data = separator.join(items)
    assert _C_DETECTOR._scan(data) == _WALK_DETECTOR._scan(data)
    # Through the same views: a view decoded differently may hide no identifier here, and one elsewhere.
    assert _C_DETECTOR._walker.views(data) == list(peel(data, Budget()))


_C_DETECTOR = Detector(list(SAMPLES.values())) if scan._Walker is not None else None


def test_the_c_walk_is_used_where_it_is_built() -> None:
    assert (Detector(list(SAMPLES.values()))._walker is None) == (scan._Walker is None)
    assert Detector(list(SAMPLES.values()), walk="python")._walker is None


@pytest.mark.skipif(scan._Walker is None, reason="phonehome._detect is not built")
@settings(max_examples=100, deadline=None)
@given(st.lists(_layered() | _ESCAPES | st.sampled_from(_WIRE_FORMS[:20]) | st.just(b""), max_size=12))
def test_parts_are_scanned_and_remembered_as_the_python_detector_does(datas: list[bytes]) -> None:
    from phonehome.model import Part

    parts = [Part("query", data) for data in datas + datas[::2]]  # some seen twice
    c_walk, python = _C_DETECTOR, _WALK_DETECTOR
    c_walk._recent.clear()
    python._recent.clear()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(scan, "RECENT_PARTS", 3)  # emptied when full too
        patch.setattr(scan, "RECENT_PART_BYTES", 40)
        found = c_walk.scan_parts(parts)
        expected = python.scan_parts(parts)
    assert [(i, list(hits), list(notes)) for i, hits, notes in found] == [
        (i, list(hits), list(notes)) for i, hits, notes in expected
    ]
    assert list(c_walk._recent.items()) == list(python._recent.items())
    assert len(c_walk._recent) <= 3
