"""The one error type for bad input.

Anything a user, a profile or a capture supplied that phonehome cannot accept raises
:class:`InputError`; every other exception is a bug in phonehome. The message always names
where the problem is (file, and byte offset or line and key where known), so the CLI can print
it on one line and exit with status 2.
"""

from __future__ import annotations


class InputError(Exception):
    """Input that cannot be read or accepted (a capture, a HAR, a profile, a command line)."""

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        offset: int | None = None,
        line: int | None = None,
        key: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.source = source
        self.offset = offset
        self.line = line
        self.key = key

    def located(self, source: str) -> InputError:
        """The same error, naming ``source`` if it did not name a file yet."""
        if self.source is None:
            self.source = source
        return self

    def __str__(self) -> str:
        where = []
        if self.source:
            where.append(self.source)
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.offset is not None:
            where.append(f"offset {self.offset}")
        if self.key:
            where.append(f"key {self.key!r}")
        prefix = ", ".join(where)
        return f"{prefix}: {self.message}" if prefix else self.message
