"""quick_init: the same objects as the dataclass's own __init__, still frozen; with the C slot
stores (phonehome._slots) and without them."""

from __future__ import annotations

import dataclasses
import gc
import pickle
import weakref
from collections.abc import Iterator

import pytest

from phonehome import quickinit
from phonehome.model import Exchange, Finding, Part
from phonehome.quickinit import quick_init
from phonehome.sources.capture import Packet

try:
    from phonehome import _slots
except ImportError:  # pragma: no cover - depends on the build
    _slots = None  # type: ignore[assignment]
needs_c = pytest.mark.skipif(_slots is None, reason="the C slot stores (phonehome._slots) are not built here")


@pytest.fixture(autouse=True, params=["C stores", "Python stores"])
def stores(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Every test with the __init__ quick_init makes with the C Filler, and with its Python reference."""
    if request.param == "C stores" and _slots is None:
        pytest.skip("the C slot stores (phonehome._slots) are not built here")
    if request.param == "Python stores":
        monkeypatch.setattr(quickinit, "Filler", None)
    yield request.param


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


def test_the_init_uses_the_c_stores_where_they_are_built(stores: str) -> None:
    _plain, quick = _pair()
    filler = quick.__init__.__globals__.get("fill")
    assert (filler is not None and type(filler).__name__ == "Filler") == (stores == "C stores")


class _Slotted:
    __slots__ = ("a", "b")


class _Sub(_Slotted):
    __slots__ = ("c",)


class _Watched:
    """An object a weak reference can watch."""


@needs_c
def test_a_filler_stores_each_value_in_its_slot_and_releases_the_old_one() -> None:
    fill = _slots.Filler(_Sub, ("a", "c", "b"))
    obj = _Sub()
    old = _Watched()
    fill(obj, old, 2, 3)
    assert (obj.a, obj.b, obj.c) == (old, 3, 2)  # type: ignore[attr-defined]
    gone = weakref.ref(old)
    del old
    fill(obj, 1, 2, 3)
    gc.collect()
    assert gone() is None
    assert (obj.a, obj.b, obj.c) == (1, 3, 2)  # type: ignore[attr-defined]


@needs_c
@pytest.mark.parametrize(
    ("cls", "names"),
    [(_Sub, ("a", "nope")), (_Sub, ("__class__",)), (_Sub, (1,)), (int, ("real",))],
)
def test_a_filler_is_refused_for_what_is_not_a_writable_object_slot(cls: type, names: tuple) -> None:
    with pytest.raises((TypeError, AttributeError)):
        _slots.Filler(cls, names)


@needs_c
def test_a_filler_refuses_other_objects_and_other_counts() -> None:
    fill = _slots.Filler(_Sub, ("a", "c"))
    with pytest.raises(TypeError, match="given a _Slotted"):
        fill(_Slotted(), 1, 2)
    for values in ((1,), (1, 2, 3)):
        with pytest.raises(TypeError, match="takes the object and 2 values"):
            fill(_Sub(), *values)
    with pytest.raises(TypeError, match="no keyword"):
        fill(_Sub(), 1, c=2)
    with pytest.raises(TypeError):
        fill()
