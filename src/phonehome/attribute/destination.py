"""One description per destination: the name the phone used, its registrable domain, who runs it
in what role, and the country its server is in with the source that said so.

:class:`Destinations` is built once per audit, before any capture is read, so that a bad
``--geoip`` or ``--trackers`` file fails at start; ``describe`` is memoised per (host, address).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from phonehome.attribute.domains import normalise
from phonehome.attribute.geo import Geo
from phonehome.attribute.owners import Owners
from phonehome.model import Exchange, Finding


@dataclass(frozen=True, slots=True)
class Destination:
    name: str | None  # the host name in normal form (Host, SNI or the DNS name), None for a bare address
    domain: str | None  # registrable domain, public-suffix aware
    owner: str | None
    role: str  # one of owners.ROLES; "unknown" when no table knows the name
    country: str | None  # where the server is
    country_source: str | None  # which source placed it, e.g. "aws ip-ranges 2026-10-26 ap-south-1"
    owner_source: str | None = None  # which table named the owner

    def finding(
        self,
        exchange: Exchange,
        *,
        identifier: str,
        category: str,
        encoding: str,
        where: str,
        evidence: str,
        form: str,
        extra: dict[str, str] | None = None,
        verdict: tuple[str, str | None] = ("violation", None),
    ) -> Finding:
        """What was found (identifier, encoding, place, evidence) in ``exchange``, sent here.

        ``verdict`` and its rule are known before judging only where the policy gives every
        finding the same (``policy.rules.fixed_verdict``); the policy judges the finding anyway.
        """
        # Positionally, in Finding's field order: half the cost of naming all 27, once per finding.
        return Finding(
            identifier,
            category,
            encoding,
            where,
            exchange.host,
            exchange.server_ip,
            exchange.server_port,
            exchange.url,
            self.country,
            self.country_source,
            exchange.transport,
            exchange.protocol,
            exchange.encrypted,
            exchange.time,
            exchange.flow,
            exchange.source,
            evidence,
            form,
            exchange.tls_version,
            exchange.tls_cipher,
            exchange.name_source,
            self.domain,
            self.owner,
            self.role,
            verdict[0],
            verdict[1],
            extra or {},
        )


class Destinations:
    """Names, owners and countries of destinations, from bundled data and the user's own files."""

    def __init__(
        self,
        geoip: str | None = None,
        trackers: Sequence[str] = (),
        *,
        discover: bool = True,
    ) -> None:
        self.geo = Geo(geoip, discover=discover)
        self.owners = Owners(trackers)
        self._memo: dict[tuple[str | None, str], Destination] = {}

    def describe(self, host: str | None, ip: str) -> Destination:
        key = (host, ip)
        found = self._memo.get(key)
        if found is None:
            found = self._describe(host, ip)
            if len(self._memo) < 1 << 16:
                self._memo[key] = found
        return found

    def _describe(self, host: str | None, ip: str) -> Destination:
        name = normalise(host)
        country, country_source = self.geo.country(ip)
        owner = self.owners.lookup(name.host) if name is not None else None
        if owner is not None:
            return Destination(
                name.host if name else None,
                name.domain if name else None,
                owner.name,
                owner.role,
                country,
                country_source,
                owner.source,
            )
        if name is None or name.address:
            # No name to go by: the address's cloud provider is the one owner that can be named,
            # as the platform the server runs on, not as the service's operator.
            cloud = self.geo.cloud(ip)
            if cloud is not None:
                return Destination(
                    name.host if name else None,
                    None,
                    cloud.owner,
                    cloud.role,
                    country,
                    country_source,
                    cloud.source,
                )
        return Destination(
            name.host if name else None,
            name.domain if name else None,
            None,
            "unknown",
            country,
            country_source,
        )
