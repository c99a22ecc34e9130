"""The shared data model: findings survive the trip between processes exactly."""

from __future__ import annotations

import pickle
from dataclasses import fields

from hypothesis import given
from hypothesis import strategies as st

from factories import finding
from phonehome.model import Finding

_text = st.text(max_size=20)


@given(
    identifier=_text,
    host=st.none() | _text,
    port=st.integers(0, 65535),
    encrypted=st.booleans(),
    time=st.floats(allow_nan=False),
    country=st.none() | st.sampled_from(["IN", "CN", "SG"]),
    rule=st.none() | _text,
    extra=st.dictionaries(_text, _text, max_size=3),
)
def test_a_pickled_finding_comes_back_equal_field_for_field(**values: object) -> None:
    original = finding(**values)
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        back = pickle.loads(pickle.dumps(original, protocol=protocol))
        assert type(back) is Finding
        assert back == original and hash(back) == hash(original)
        for f in fields(Finding):  # extra too, which equality leaves out
            assert getattr(back, f.name) == getattr(original, f.name)
