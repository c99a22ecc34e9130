"""quick_init: the same objects as the dataclass's own __init__, still frozen."""

from __future__ import annotations

import dataclasses
import pickle

import pytest

from phonehome.model import Exchange, Finding, Part
from phonehome.quickinit import quick_init
from phonehome.sources.capture import Packet


def _pair() -> tuple[type, type]:
    """The same class twice: as dataclass writes it, and with quick_init."""

    def make() -> type:
        @dataclasses.dataclass(frozen=True, slots=True)
        class Sample:
            a: int
            b: str = "b"
            c: list[int] = dataclasses.field(default_factory=list)
            d: bytes = dataclasses.field(default=b"d", kw_only=True)

        return Sample

    return make(), quick_init(make())


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [((1,), {}), ((1, "x"), {}), ((1, "x", [2]), {"d": b"e"}), ((), {"a": 3, "c": [4]}), ((5,), {"d": b""})],
)
def test_the_same_fields_and_defaults_as_the_dataclass_init(args: tuple, kwargs: dict) -> None:
    plain, quick = _pair()
    slow, fast = plain(*args, **kwargs), quick(*args, **kwargs)
    assert dataclasses.astuple(fast) == dataclasses.astuple(slow)


def test_a_default_factory_makes_a_new_value_each_time() -> None:
    _plain, quick = _pair()
    assert quick(1).c == [] and quick(1).c is not quick(1).c


@pytest.mark.parametrize(("args", "kwargs"), [((), {}), ((1, "x", [], b"d"), {}), ((1,), {"e": 2})])
def test_the_same_arguments_are_refused(args: tuple, kwargs: dict) -> None:
    plain, quick = _pair()
    with pytest.raises(TypeError):
        plain(*args, **kwargs)
    with pytest.raises(TypeError):
        quick(*args, **kwargs)


def test_instances_stay_frozen_and_hashable() -> None:
    _plain, quick = _pair()
    sample = quick(1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        sample.a = 2
    packet = Packet(1.5, 7, 6, b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02", 1, 2, 0x18, 9, b"x")
    assert hash(packet) == hash(
        Packet(1.5, 7, 6, b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02", 1, 2, 0x18, 9, b"x")
    )
    with pytest.raises(AttributeError):
        packet.sport = 1  # type: ignore[misc]


def test_the_model_classes_use_it() -> None:
    for cls in (Part, Exchange, Finding, Packet):
        assert cls.__init__.__doc__ is not None and "quickinit" in cls.__init__.__doc__
    part = Part("query", b"x=1")
    assert part.content_type is None
    assert pickle.loads(pickle.dumps(part)) == part


def test_classes_it_cannot_serve_are_refused() -> None:
    @dataclasses.dataclass(slots=True)
    class Mutable:
        a: int

    @dataclasses.dataclass(frozen=True, slots=True)
    class Checked:
        a: int

        def __post_init__(self) -> None:
            pass

    @dataclasses.dataclass(frozen=True)
    class NoSlots:
        a: int

    for cls in (Mutable, Checked, NoSlots):
        with pytest.raises(TypeError):
            quick_init(cls)
