"""Peeling layers: every view within the depth, and a tower of encodings stopped with a warning."""

from __future__ import annotations

import base64
import gzip

from phonehome.detect.decoders import MAX_DEPTH, Budget, peel

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
