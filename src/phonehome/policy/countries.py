"""ISO 3166-1 alpha-2 country codes and their English names, from a table installed with the package.

``data/countries.tsv`` was taken from the locale tables of ``phonenumbers`` (libphonenumber's
geocoding data, every ISO 3166-1 code); reading those tables at run time costs a second and over
100 MB, a small file costs nothing. Used to check the country codes a policy names and to say
"China" rather than "CN" in a verdict or a report.
"""

from __future__ import annotations

from importlib.resources import files


def _load() -> dict[str, str]:
    table: dict[str, str] = {}
    text = files("phonehome").joinpath("data/countries.tsv").read_text(encoding="utf-8")
    for line in text.splitlines():
        if line and not line.startswith("#"):
            code, _, name = line.partition("\t")
            table[code] = name
    return table


COUNTRY_NAMES: dict[str, str] = _load()


def country_name(code: str | None) -> str | None:
    """ "China" for "CN"; the code itself when it has no name; None for None."""
    if code is None:
        return None
    return COUNTRY_NAMES.get(code.upper(), code)
