"""TOML documents read with their errors located.

:func:`parse_toml` reads a document with :mod:`tomllib`, and a syntax error becomes an
:class:`~phonehome.errors.InputError` naming the file, line and column. :func:`key_lines` maps each
dotted key of the document's text to its line, so an error about a value (found after parsing)
names the line it stands on too: the profile, the policy and the fleet's device map use both.
"""

from __future__ import annotations

import re
import tomllib
from typing import Any

from phonehome.errors import InputError

__all__ = ["key_line", "key_lines", "parse_toml"]

_TOML_WHERE = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_TOML_END = re.compile(r"\s*\(at end of document\)\s*$")


def parse_toml(text: str, source: str) -> dict[str, Any]:
    """The TOML document ``text``; when it is not one, InputError naming ``source``, line and column."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        line: int | None = None
        if where := _TOML_WHERE.search(message):
            line = int(where.group(1))
            message = f"{message[: where.start()]} (column {where.group(2)})"
        elif end := _TOML_END.search(message):
            line = text.count("\n") + 1
            message = f"{message[: end.start()]} (at the end of the file)"
        raise InputError(f"TOML syntax error: {message}", source=source, line=line) from None
    except RecursionError:
        # tomllib recurses once per level of nested arrays and inline tables: a few hundred levels
        # (a handful of bytes each) exhaust Python's stack.
        raise InputError("TOML nested too deeply (arrays or inline tables)", source=source) from None


# --- key -> line map over the TOML source -----------------------------------------------------------------

_BARE_KEY = r"[A-Za-z0-9_-]+"
_BASIC_STRING = r'"(?:[^"\\\n]|\\.)*"'
_LITERAL_STRING = r"'[^'\n]*'"
_SIMPLE_KEY = rf"(?:{_BARE_KEY}|{_BASIC_STRING}|{_LITERAL_STRING})"
_DOTTED_KEY = rf"{_SIMPLE_KEY}(?:[ \t]*\.[ \t]*{_SIMPLE_KEY})*"
_KEY_LINE = re.compile(rf"[ \t]*({_DOTTED_KEY})[ \t]*=")
_HEADER_LINE = re.compile(rf"[ \t]*(\[\[?)[ \t]*({_DOTTED_KEY})[ \t]*\]")
_KEY_PART = re.compile(_SIMPLE_KEY)
# What matters for structure in a value: strings (which may hide anything), comments, brackets, and the
# bare scalars that count as array elements.
_VALUE_TOKEN = re.compile(
    r"(\"\"\"|''')|" + _BASIC_STRING + "|" + _LITERAL_STRING + r"|(#.*)|([\[\]{}])|[A-Za-z0-9_+.:-]+"
)


def _key_parts(dotted: str) -> list[str]:
    parts = []
    for match in _KEY_PART.finditer(dotted):
        part = match.group()
        parts.append(part[1:-1] if part[0] in "\"'" else part)
    return parts


def _close_multiline(line: str, pos: int, quote: str) -> int:
    """Where the multi-line string opened with ``quote`` ends in ``line`` after ``pos``, or -1."""
    while True:
        end = line.find(quote, pos)
        if end < 0:
            return -1
        if quote == '"""':
            backslashes = len(line[:end]) - len(line[:end].rstrip("\\"))
            if backslashes % 2:
                pos = end + 1
                continue
        end += 3
        # TOML 1.0: up to two quotes may end the content right before the closing delimiter.
        for _ in range(2):
            if end < len(line) and line[end] == quote[0]:
                end += 1
        return end


def key_lines(text: str) -> dict[str, int]:
    """Map each dotted key of a TOML document to the 1-based line it stands on.

    Keys look like ``device.name``, ``contacts[2].phone`` (array-of-tables index from 0) and
    ``identifiers.imei[1]`` (the line of an element of a multi-line array). Tables map to their header
    line. Multi-line strings and arrays are skipped over, so text inside them is never read as a key.
    """
    lines: dict[str, int] = {}
    arrays: dict[tuple[str, ...], int] = {}
    table = ""
    multiline: str | None = None  # the delimiter of a multi-line string still open
    stack: list[str] = []  # the [ and { a value has open
    array_key: str | None = None  # the key whose value is open, for the lines of its array's elements
    element = -1

    for number, line in enumerate(text.splitlines(), 1):
        pos = 0
        if multiline is not None:
            pos = _close_multiline(line, 0, multiline)
            if pos < 0:
                continue
            multiline = None
        elif not stack:
            if header := _HEADER_LINE.match(line):
                parts = _key_parts(header.group(2))
                if header.group(1) == "[[":
                    path = tuple(parts)
                    arrays[path] = arrays.get(path, 0) + 1
                    for nested in [p for p in arrays if len(p) > len(path) and p[: len(path)] == path]:
                        del arrays[nested]
                rendered = []
                for index, part in enumerate(parts):
                    count = arrays.get(tuple(parts[: index + 1]))
                    rendered.append(part if count is None else f"{part}[{count - 1}]")
                    lines.setdefault(".".join(rendered), number)
                table = ".".join(rendered)
                continue
            if key_match := _KEY_LINE.match(line):
                full = table
                for part in _key_parts(key_match.group(1)):
                    full = f"{full}.{part}" if full else part
                    lines.setdefault(full, number)
                array_key, element = full, -1
                pos = key_match.end()
        while token := _VALUE_TOKEN.search(line, pos):
            pos = token.end()
            if token.group(2) is not None:  # a comment runs to the end of the line
                break
            bracket = token.group(3)
            if bracket in ("]", "}"):
                if stack:
                    stack.pop()
                continue
            if stack == ["["] and array_key is not None:  # an element of the array the key opened
                element += 1
                lines.setdefault(f"{array_key}[{element}]", number)
            if bracket is not None:
                stack.append(bracket)
            elif token.group(1) is not None:
                pos = _close_multiline(line, pos, token.group(1))
                if pos < 0:
                    multiline = token.group(1)
                    break
        if not stack and multiline is None:
            array_key = None
    return lines


def key_line(lines: dict[str, int], key: str) -> int | None:
    """The line of ``key``, or of its nearest enclosing key or table that has one."""
    while key:
        if key in lines:
            return lines[key]
        cut = max(key.rfind("."), key.rfind("["))
        key = key[:cut] if cut > 0 else ""
    return None
