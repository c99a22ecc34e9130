"""Peeling layers: every view within the depth, and a tower of encodings stopped with a warning."""

from __future__ import annotations

import base64
import gzip
import re

from hypothesis import given
from hypothesis import strategies as st

from phonehome.detect.decoders import B64_CLASS, HEX_CLASS, MAX_DEPTH, Budget, peel, runs

IMEI = b"865123456789019"


def _tower(layers: int, wrap: str = "base64") -> bytes:
    data = b'{"imei":"' + IMEI + b'"}'
    for _ in range(layers):
        data = base64.b64encode(data) if wrap == "base64" else gzip.compress(data)
    return data


def test_layers_up_to_the_depth_are_peeled_without_a_warning() -> None:
    budget = Budget()
    views = list(peel(_tower(MAX_DEPTH), budget))
    assert (("base64",) * MAX_DEPTH, b'{"imei":"' + IMEI + b'"}') in views
    assert budget.warnings is None


def test_a_base64_tower_is_stopped_at_the_depth_with_a_warning() -> None:
    budget = Budget()
    views = list(peel(_tower(MAX_DEPTH + 3), budget))
    assert max(len(chain) for chain, _ in views) == MAX_DEPTH
    assert not any(IMEI in view for _, view in views)
    assert budget.warnings == [f"encoded more than {MAX_DEPTH} layers deep; the inner layers not decoded"]


def test_a_gzip_tower_is_stopped_at_the_depth_with_a_warning() -> None:
    budget = Budget()
    views = list(peel(_tower(MAX_DEPTH + 1, "gzip"), budget))
    gzip_chains = [chain for chain, _ in views if set(chain) == {"gzip"}]
    assert gzip_chains == [("gzip",) * n for n in range(1, MAX_DEPTH + 1)]
    assert max(len(chain) for chain, _ in views) == MAX_DEPTH
    assert budget.warnings is not None
    assert any("layers deep" in w for w in budget.warnings)


def test_plain_text_at_the_depth_gives_no_warning() -> None:
    # Four layers around a value that is not itself encoded: nothing was left undone.
    data = b"865123456789019"
    for _ in range(MAX_DEPTH):
        data = gzip.compress(data)
    budget = Budget()
    list(peel(data, budget))
    assert budget.warnings is None


def _hex_views(data: bytes) -> list[bytes]:
    return [view for chain, view in peel(data, Budget()) if chain == ("hex",)]


def test_hex_tokens_are_whole_even_runs_of_hex_digits() -> None:
    value = b"imei=" + IMEI
    token = value.hex().encode()  # 40 hex digits, some of them letters
    assert _hex_views(b"x=" + token + b"&y") == [value]
    # Odd runs, and runs glued to more hex digits, are not tokens of their own.
    assert _hex_views(b"x=" + token + b"a&y") == []
    assert _hex_views(b"x=a" + token + b"&y") == []
    assert _hex_views(b"x=" + token + b"g") == [value]  # "g" is not a hex digit
    assert _hex_views(b"1234567890123456") == []  # digits only: a number, not hex


def test_hex_tokens_past_the_limit_warn() -> None:
    budget = Budget()
    data = b" ".join([(b"imei=" + IMEI).hex().encode()] * 70)
    views = [view for chain, view in peel(data, budget) if chain == ("hex",)]
    assert len(views) == 64
    assert "more than 64 hex tokens in one part; the rest not decoded" in (budget.warnings or [])


# Bytes rich in runs of both classes, their edges, and padding.
_RUNNY = st.binary(max_size=300) | st.lists(
    st.sampled_from(
        [b"a", b"F", b"0", b"9", b"g", b"Z", b"+", b"/", b"_", b"-", b"=", b" ", b"&", b"\x00", b"\xff"]
    ),
    max_size=300,
).map(b"".join)


@given(_RUNNY, st.sampled_from([1, 8, 12, 16, 22]))
def test_runs_are_the_maximal_runs_a_regular_expression_finds(data: bytes, least: int) -> None:
    for table, cls in ((B64_CLASS, rb"[A-Za-z0-9+/_-]"), (HEX_CLASS, rb"[0-9A-Fa-f]")):
        pattern = re.compile(rb"(?<!%s)%s{%d,}" % (cls, cls, least))
        assert runs(data, table, least) == [m.span() for m in pattern.finditer(data)]
