"""Types of the optional C header split (_http1.c): http1.split_head."""

def split_head(
    buf: bytes | bytearray, avail: int, max_header_bytes: int, max_headers: int, /
) -> (
    tuple[
        int,
        int,
        int,
        bytes,
        bytes,
        bytes,
        list[tuple[bytes, bytes]] | None,
        list[bytes],
        list[bytes],
        list[bytes],
    ]
    | None
): ...
