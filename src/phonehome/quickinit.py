"""Frozen dataclasses built as fast as plain ones.

The ``__init__`` that ``dataclass(frozen=True)`` writes stores each field with
``object.__setattr__``, which looks the attribute up again for every field. phonehome makes
millions of packets, parts, exchanges and findings, so :func:`quick_init` gives such a class an
``__init__`` with the same parameters and defaults that stores each field through its slot
descriptor: the same object, made in about half the time. Where the optional C extension
``phonehome._slots`` is built, the ``__init__`` stores every field in one call to it (a
``Filler``, holding the slots' offsets) rather than one call per field: a third of the time
again. The instances stay frozen.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

# The optional C slot stores (setup.py); without them each field is stored through its descriptor.
Filler: Callable[[type, tuple[str, ...]], Callable[..., None]] | None
try:
    from phonehome._slots import Filler
except ImportError:  # pragma: no cover - depends on the build
    Filler = None

T = TypeVar("T")


def quick_init(cls: type[T]) -> type[T]:
    """Give the frozen, slotted dataclass ``cls`` a faster ``__init__`` of the same signature."""
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen or "__slots__" not in cls.__dict__:
        raise TypeError(f"{cls.__name__} is not a frozen dataclass with slots")
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__} has a __post_init__, which quick_init would not call")
    namespace: dict[str, Any] = {"MISSING": dataclasses.MISSING}
    positional: list[str] = []
    keyword: list[str] = []
    body: list[str] = []
    names: list[str] = []
    for i, f in enumerate(dataclasses.fields(cls)):  # type: ignore[arg-type]
        if not f.init:
            raise TypeError(f"{cls.__name__}.{f.name} is not an __init__ field")
        param = f.name
        if f.default is not dataclasses.MISSING:
            namespace[f"default{i}"] = f.default
            param += f"=default{i}"
        elif f.default_factory is not dataclasses.MISSING:
            namespace[f"factory{i}"] = f.default_factory
            param += "=MISSING"
            body.append(f"    if {f.name} is MISSING: {f.name} = factory{i}()")
        (keyword if f.kw_only else positional).append(param)
        names.append(f.name)
    if Filler is not None and names:
        namespace["fill"] = Filler(cls, tuple(names))
        body.append(f"    fill(self, {', '.join(names)})")
    else:
        for i, name in enumerate(names):
            namespace[f"set{i}"] = getattr(cls, name).__set__
            body.append(f"    set{i}(self, {name})")
    signature = ", ".join(["self", *positional, *(["*", *keyword] if keyword else [])])
    exec(f"def __init__({signature}):\n" + "\n".join(body or ["    pass"]), namespace)
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    init.__doc__ = f"Stores each field of a {cls.__name__} through its slot (see quickinit)."
    setattr(cls, "__init__", init)  # noqa: B010 - mypy rejects assigning to a method
    return cls
