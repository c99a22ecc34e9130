"""Types of the optional C fast lane (_lane.c): classic pcap records and pcapng EPBs."""

from collections.abc import Callable
from typing import Any

def walk_pcap(
    buf: bytes,
    pos: int,
    end: int,
    hlen: int,
    big: bool,
    div: float,
    limit: int,
    ip_off: int,
    etype_off: int,
    lanes: dict[bytes, tuple[Any, bool]],
    pass_over: Callable[[Any, float, int], bool],
    passable: Callable[[], int],
    last_sec: int,
    take: Callable[..., bool],
    /,
) -> tuple[int, int, int, int]: ...
def walk_pcapng(
    buf: bytes,
    pos: int,
    end: int,
    big: bool,
    links: tuple[tuple[int, int, float, float] | None, ...],
    max_block: int,
    lanes: dict[bytes, tuple[Any, bool]],
    pass_over: Callable[[Any, float, int], bool],
    passable: Callable[[], int],
    take: Callable[..., bool],
    /,
) -> tuple[int, int, int, int]: ...
