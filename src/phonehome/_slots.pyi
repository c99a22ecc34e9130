"""Types of the optional C slot stores (_slots.c): quickinit's one-call __init__ body."""

from typing import Any

class Filler:
    def __init__(self, cls: type, names: tuple[str, ...], /) -> None: ...
    def __call__(self, obj: object, /, *values: Any) -> None: ...
