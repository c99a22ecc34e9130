"""Types of the optional C slot module (_slots.c).

Filler: quickinit's one-call __init__ body; Writer: json_report's finding_text.
"""

from collections.abc import Callable
from typing import Any

class Filler:
    def __init__(self, cls: type, names: tuple[str, ...], /) -> None: ...
    def __call__(self, obj: object, /, *values: Any) -> None: ...

class Writer:
    def __init__(
        self,
        cls: type,
        names: tuple[str, ...],
        kinds: bytes,
        keys: tuple[str, ...],
        memo: dict[Any, str],
        memo_max: int,
        text: Callable[[Any], str],
        other: Callable[[Any], str],
        /,
    ) -> None: ...
    def __call__(self, obj: object, /) -> str: ...
