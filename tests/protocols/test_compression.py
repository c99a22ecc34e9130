"""Bounded decompression: round trips, bombs stopped at the limit, damage reported not raised."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable

import brotli
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from phonehome.protocols.compression import (
    KEPT_AS_SENT,
    decode_body,
    decode_content,
    decompress,
    sniff_compression,
)

MESSAGE = b"imei=356938035643809&android_id=9774d56d682e549c " * 200 + bytes(range(256))
GB = 1 << 30
MB = 1 << 20


def raw_deflate(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return c.compress(data) + c.flush()


COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress,
    "x-gzip": gzip.compress,
    "deflate": zlib.compress,
    "br": brotli.compress,
    "zstd": zstandard.ZstdCompressor().compress,
    "identity": bytes,
}
KINDS = sorted(COMPRESSORS)


@pytest.mark.parametrize("kind", KINDS)
def test_round_trip(kind: str) -> None:
    assert decompress(kind, COMPRESSORS[kind](MESSAGE), 10 * MB) == (MESSAGE, None)


@pytest.mark.parametrize("kind", KINDS)
def test_output_cut_at_the_limit(kind: str) -> None:
    out, warning = decompress(kind, COMPRESSORS[kind](MESSAGE), 1000)
    assert out == MESSAGE[:1000]
    assert warning == "decompressed size exceeds 1000 bytes; truncated"


@pytest.mark.parametrize("kind", KINDS)
def test_exactly_the_limit_is_not_a_bomb(kind: str) -> None:
    assert decompress(kind, COMPRESSORS[kind](MESSAGE), len(MESSAGE)) == (MESSAGE, None)


@pytest.mark.parametrize("kind", KINDS)
def test_empty_input_is_empty_output(kind: str) -> None:
    assert decompress(kind, b"", 100) == (b"", None)


def test_kind_names_are_case_insensitive() -> None:
    assert decompress(" GZIP ", gzip.compress(b"x"), 10) == (b"x", None)


def test_unknown_kind_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="compress"):
        decompress("compress", b"\x1f\x9d", 10)


def test_deflate_falls_back_to_raw_deflate() -> None:
    # RFC 9110 §8.4.1.2: "deflate" is zlib-wrapped, but some senders send raw deflate.
    assert decompress("deflate", raw_deflate(MESSAGE), 10 * MB) == (MESSAGE, None)


def test_gzip_members_are_all_decoded() -> None:
    data = gzip.compress(b"first ") + gzip.compress(b"second ") + gzip.compress(b"third")
    assert decompress("gzip", data, 100) == (b"first second third", None)


def test_gzip_zero_padding_is_accepted_but_garbage_is_reported() -> None:
    assert decompress("gzip", gzip.compress(b"abc") + bytes(10), 100) == (b"abc", None)
    out, warning = decompress("gzip", gzip.compress(b"abc") + b"junk", 100)
    assert out == b"abc"
    assert warning == "gzip: 4 bytes of trailing data ignored"


def test_gzip_members_count_against_one_limit() -> None:
    data = gzip.compress(bytes(600)) * 3
    out, warning = decompress("gzip", data, 1000)
    assert out == bytes(1000)
    assert warning == "decompressed size exceeds 1000 bytes; truncated"


def test_zstd_frames_are_all_decoded() -> None:
    c = zstandard.ZstdCompressor()
    assert decompress("zstd", c.compress(b"one ") + c.compress(b"two"), 100) == (b"one two", None)


def test_zstd_skippable_frame_and_checksum() -> None:
    skippable = b"\x50\x2a\x4d\x18" + (3).to_bytes(4, "little") + b"abc"
    framed = zstandard.ZstdCompressor(write_checksum=True, write_content_size=False).compress(MESSAGE)
    assert decompress("zstd", skippable + framed, 10 * MB) == (MESSAGE, None)


@pytest.mark.parametrize("kind", ["gzip", "deflate", "br", "zstd"])
def test_truncated_input_gives_what_decoded_and_a_warning(kind: str) -> None:
    data = COMPRESSORS[kind](MESSAGE + bytes(MESSAGE[::-1]))
    for cut in (1, len(data) // 3, len(data) - 1):
        out, warning = decompress(kind, data[:cut], 10 * MB)
        assert (MESSAGE + bytes(MESSAGE[::-1])).startswith(out)
        assert warning is not None
        assert warning.startswith(kind + ":")


@pytest.mark.parametrize("kind", ["gzip", "deflate", "br", "zstd"])
def test_trailing_garbage_keeps_the_output(kind: str) -> None:
    out, warning = decompress(kind, COMPRESSORS[kind](MESSAGE) + b"\xffjunk", 10 * MB)
    assert out == MESSAGE
    assert warning is not None
    assert "trailing" in warning


CHECKED: dict[str, Callable[[bytes], bytes]] = {
    **COMPRESSORS,
    # Without its optional checksum, damage to zstd literals decodes silently to wrong bytes.
    "zstd": zstandard.ZstdCompressor(write_checksum=True).compress,
}


@pytest.mark.parametrize("kind", ["gzip", "deflate", "br", "zstd"])
def test_corrupt_input_is_a_warning(kind: str) -> None:
    data = bytearray(CHECKED[kind](MESSAGE))
    data[len(data) // 2 : len(data) // 2 + 8] = b"\xff" * 8
    out, warning = decompress(kind, bytes(data), 10 * MB)
    assert out != MESSAGE
    assert warning is not None
    assert warning.startswith(kind + ":")


@pytest.mark.parametrize("kind", ["gzip", "deflate", "br", "zstd"])
def test_not_compressed_at_all(kind: str) -> None:
    out, warning = decompress(kind, b"plain text, not compressed", 100)
    assert out == b""
    assert warning is not None


def _stream(compressor: Callable[[bytes], bytes], finish: Callable[[], bytes], size: int) -> bytes:
    block = bytes(MB)
    parts = [compressor(block) for _ in range(size // MB)]
    parts.append(finish())
    return b"".join(parts)


def _gzip_bomb() -> bytes:
    c = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return _stream(c.compress, c.flush, GB)


def _zlib_bomb() -> bytes:
    c = zlib.compressobj(1, zlib.DEFLATED, zlib.MAX_WBITS)
    return _stream(c.compress, c.flush, GB)


def _brotli_bomb() -> bytes:
    c = brotli.Compressor(quality=1)
    return _stream(c.process, c.finish, GB)


def _zstd_bomb() -> bytes:
    c = zstandard.ZstdCompressor(level=1).compressobj()
    return _stream(c.compress, c.flush, GB)


BOMBS: dict[str, Callable[[], bytes]] = {
    "gzip": _gzip_bomb,
    "deflate": _zlib_bomb,
    "br": _brotli_bomb,
    "zstd": _zstd_bomb,
}


@pytest.fixture(scope="module")
def bombs() -> dict[str, bytes]:
    return {kind: build() for kind, build in BOMBS.items()}


@pytest.mark.parametrize("kind", sorted(BOMBS))
def test_gigabyte_bomb_stops_at_the_limit(kind: str, bombs: dict[str, bytes]) -> None:
    bomb = bombs[kind]
    assert len(bomb) < 8 * MB  # a real bomb: 1 GiB of zeros in a few MB or less
    out, warning = decompress(kind, bomb, 4 * MB)
    assert out == bytes(4 * MB)
    assert warning == f"decompressed size exceeds {4 * MB} bytes; truncated"


def test_decode_content_undoes_codings_last_first() -> None:
    # RFC 9110 §8.4: "gzip, br" means gzip was applied first, then br.
    data = brotli.compress(gzip.compress(MESSAGE))
    assert decode_content("gzip, br", data, 10 * MB) == (MESSAGE, [])
    assert decode_content("GZip ,  BR", data, 10 * MB) == (MESSAGE, [])


def test_decode_content_identity_and_empty() -> None:
    assert decode_content("", b"abc", 10) == (b"abc", [])
    assert decode_content("identity", b"abc", 10) == (b"abc", [])
    assert decode_content("gzip", b"", 10) == (b"", [])


def test_decode_content_unknown_coding_leaves_data_as_is() -> None:
    data = gzip.compress(b"inner")
    assert decode_content("gzip, compress", data, 100) == (
        data,
        ["unsupported content coding 'compress'; data left as is"],
    )
    # Undone up to the layer that cannot be undone.
    assert decode_content("compress, gzip", data, 100) == (
        b"inner",
        ["unsupported content coding 'compress'; data left as is"],
    )


def test_decode_content_bounds_every_layer() -> None:
    out, warnings = decode_content("gzip", gzip.compress(bytes(5000)), 100)
    assert out == bytes(100)
    assert warnings == ["decompressed size exceeds 100 bytes; truncated"]
    out, warnings = decode_content("identity", bytes(500), 100)
    assert out == bytes(100)
    assert warnings == ["decompressed size exceeds 100 bytes; truncated"]


def test_decode_content_damage_is_a_warning() -> None:
    out, warnings = decode_content("br", b"not brotli at all", 100)
    assert out == b""
    assert len(warnings) == 1
    assert warnings[0].startswith("br:")


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (gzip.compress(b"x"), "gzip"),
        (zlib.compress(b"x"), "zlib"),
        (zlib.compress(b"x", 9), "zlib"),
        (zlib.compress(b"x", 1), "zlib"),
        (zstandard.ZstdCompressor().compress(b"x"), "zstd"),
        (brotli.compress(b"x"), None),
        (b"\x1f\x8b\x07", None),  # gzip magic with a method other than deflate
        (b"x\x9d", None),  # zlib check bits wrong
        (b"\x78\xbb", None),  # valid check bits but a preset dictionary
        (b"\x88\x1d", None),  # window size beyond 32K
        (b"", None),
        (b"x", None),
        (b"GET / HTTP/1.1", None),
    ],
)
def test_sniff_compression(data: bytes, kind: str | None) -> None:
    assert sniff_compression(data) == kind


@settings(max_examples=150, deadline=None)
@given(kind=st.sampled_from(KINDS), data=st.binary(max_size=300), limit=st.integers(0, 400))
def test_arbitrary_bytes_never_raise(kind: str, data: bytes, limit: int) -> None:
    out, _warning = decompress(kind, data, limit)
    assert len(out) <= limit


@settings(max_examples=100, deadline=None)
@given(
    kind=st.sampled_from(["gzip", "deflate", "br", "zstd"]),
    payload=st.binary(max_size=2000),
    cut=st.integers(0, 5000),
    flip=st.integers(0, 5000),
)
def test_damaged_streams_never_raise(kind: str, payload: bytes, cut: int, flip: int) -> None:
    data = bytearray(COMPRESSORS[kind](payload))
    if data:
        data[flip % len(data)] ^= 0x55
    out, _warning = decompress(kind, bytes(data[: cut % (len(data) + 1)]), 1500)
    assert len(out) <= 1500


@settings(max_examples=60, deadline=None)
@given(kind=st.sampled_from(KINDS), payload=st.binary(max_size=3000), limit=st.integers(0, 4000))
def test_round_trip_within_any_limit(kind: str, payload: bytes, limit: int) -> None:
    out, warning = decompress(kind, COMPRESSORS[kind](payload), limit)
    assert out == payload[:limit]
    assert (warning is not None) == (len(payload) > limit)


def test_decode_body_keeps_a_body_it_cannot_decode_as_sent() -> None:
    assert decode_body("gzip", gzip.compress(MESSAGE), 10 * MB) == (MESSAGE, [])
    assert decode_body("", b"abc", 10) == (b"abc", [])  # no codings declared
    assert decode_body("gzip", b"", 10) == (b"", [])
    body, warnings = decode_body("gzip", b"not gzip at all", 10 * MB)
    assert body == b"not gzip at all"
    assert len(warnings) == 2 and warnings[-1] == KEPT_AS_SENT
    # Decoded in part: what came out is kept, with the warning, and nothing more is said.
    cut = gzip.compress(MESSAGE)[:-40]
    body, warnings = decode_body("gzip", cut, 10 * MB)
    assert body and MESSAGE.startswith(body) and KEPT_AS_SENT not in warnings
