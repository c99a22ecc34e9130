"""Types of the optional C walk (_detect.c): Detector._scan for one part's bytes."""

from collections.abc import Callable, Sequence
from typing import Any

def collect(id: int, start: int, end: int, flags: int, context: list[tuple[int, int]], /) -> None: ...

class Walker:
    def __init__(
        self,
        *,
        scan: Callable[[bytes], Sequence[tuple[int, int]]],
        hs_scan: Callable[..., Any] | None,
        matched: dict[int, Any],
        entry: Callable[[int], Any],
        digests: Callable[[bytes], Sequence[tuple[int, str, str]]] | None,
        decompress: Callable[[str, bytes, int], tuple[bytes, str | None]],
        b64decode: Callable[[bytes], bytes],
        b64url: Callable[[bytes], bytes],
        b64errors: type[BaseException] | tuple[type[BaseException], ...],
        hit: Callable[[int, str, str, str], Any],
        messages: tuple[str, str, str, str],
        max_depth: int,
        max_tokens: int,
        min_b64: int,
        min_b64_nested: int,
        min_hex: int,
        context: int,
        budget_bytes: int,
        budget_views: int,
    ) -> None: ...
    def walk(self, data: bytes, /) -> tuple[list[Any], list[str]]: ...
    def views(self, data: bytes, /) -> list[tuple[tuple[str, ...], bytes]]: ...
    def scan_parts(
        self, parts: Sequence[Any], recent: dict[bytes, Any], max_size: int, max_entries: int, /
    ) -> list[tuple[int, Any, Any]]: ...
