"""Country of a destination address, from data installed with the package (no network at run time).

The bundled source is the GeoLite2 Country data shipped inside the ``geoip2fast`` package
(MaxMind GeoLite2, CC BY-SA 4.0: "This product includes GeoLite2 data created by MaxMind,
available from https://www.maxmind.com"). Every answer says which source gave it, so later
sources (cloud region ranges, a user's own database) can refine it without hiding where the
country came from.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import Any

ATTRIBUTION = (
    "This product includes GeoLite2 data created by MaxMind, available from https://www.maxmind.com "
    "(CC BY-SA 4.0), as packaged by geoip2fast."
)


class Geo:
    """Offline IP-to-country lookups with their source."""

    def __init__(self) -> None:
        self._db: Any = None
        self.source = "geolite2"

    def _load(self) -> Any:
        if self._db is None:
            from geoip2fast import GeoIP2Fast

            # The IPv6 file carries the IPv4 networks too.
            self._db = GeoIP2Fast(geoip2fast_data_file="geoip2fast-ipv6.dat.gz", verbose=False)
            info = self._db.get_database_info().get("source_info", "")
            stamp = str(info).rsplit("-", 1)[-1]
            if stamp.isdigit() and len(stamp) == 8:
                self.source = f"geolite2 {stamp[:4]}-{stamp[4:6]}-{stamp[6:]}"
        return self._db

    @lru_cache(maxsize=65536)  # noqa: B019 - one Geo per run; addresses repeat heavily
    def country(self, ip: str) -> tuple[str | None, str | None]:
        """ISO 3166 alpha-2 code and the source that gave it; (None, reason) when there is none."""
        if not ip:
            return None, None
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return None, None
        if not addr.is_global:
            return None, "not a public address"
        result = self._load().lookup(ip)
        code = getattr(result, "country_code", "--")
        if not code or code == "--":
            return None, self.source
        return str(code), self.source
