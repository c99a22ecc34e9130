"""ISO 3166-1 alpha-2 country codes and their English names, from data already installed.

The names come from the locale tables of ``phonenumbers`` (Google's libphonenumber geocoding data),
which cover every ISO 3166-1 code; nothing is downloaded. Used to check the country codes a policy
names and to say "China" rather than "CN" in a verdict.
"""

from __future__ import annotations

from phonenumbers.geodata.locale import LOCALE_DATA


def _english(names: dict[str, str]) -> str:
    # Entries like "*aa" point at another language's entry of the same table.
    name = names.get("en", "")
    seen = 0
    while name.startswith("*") and seen < 8:
        name = names.get(name[1:], "")
        seen += 1
    return name


COUNTRY_NAMES: dict[str, str] = {
    code: name for code, names in LOCALE_DATA.items() if len(code) == 2 and (name := _english(names))
}


def country_name(code: str | None) -> str | None:
    """ "China" for "CN"; the code itself when it has no name; None for None."""
    if code is None:
        return None
    return COUNTRY_NAMES.get(code.upper(), code)
