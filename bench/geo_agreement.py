"""How often phonehome's country answer agrees with the best other source available offline.

Not a test: it prints figures (the README quotes them). Two deterministic samples:

* ``general``: public IPv4 addresses drawn uniformly from the address space, plus IPv6 addresses
  drawn from the reference's IPv6 networks (weighed by size up to a /32), kept where the
  reference places them. The reference
  is the IPFire Location database as exported for Tor (Debian package ``tor-geoipdb``:
  ``/usr/share/tor/geoip`` and ``geoip6``; CC BY-SA 4.0), an independent geolocation source
  newer than the GeoLite2 snapshot phonehome bundles. ``--mmdb FILE`` adds a MaxMind DB as a
  second reference.
* ``cloud``: addresses drawn from the cloud providers' regional ranges, where the truth is the
  provider's own region (the most specific published range holding the address).

For each sample and each source (phonehome's layered answer, and every layer alone), it prints how
many addresses the source answered and how many of those agree with the reference.

    python bench/geo_agreement.py [--n 3000] [--seed 1] [--tor /usr/share/tor] [--mmdb FILE]
"""

from __future__ import annotations

import argparse
import bisect
import ipaddress
import random
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from phonehome.attribute.geo import Address, Geo, GeoLite2, Mmdb, Registry, cloud_ranges, regional_ranges


class TorGeoip:
    """Tor's geoip/geoip6 files: ``low,high,CC`` per line (IPv4 as integers, IPv6 as text)."""

    def __init__(self, folder: Path) -> None:
        self.starts: dict[int, list[int]] = {4: [], 6: []}
        self.rows: dict[int, list[tuple[int, int, str]]] = {4: [], 6: []}
        self.header = ""
        for name, version in (("geoip", 4), ("geoip6", 6)):
            for line in (folder / name).read_text(encoding="ascii").splitlines():
                if line.startswith("#"):
                    if "Generated:" in line and not self.header:
                        self.header = line.split("Generated:", 1)[1].strip()
                    continue
                low, high, cc = line.split(",")
                if cc == "??":
                    continue
                lo = int(low) if version == 4 else int(ipaddress.IPv6Address(low))
                hi = int(high) if version == 4 else int(ipaddress.IPv6Address(high))
                self.rows[version].append((lo, hi, cc))
            self.rows[version].sort()
            self.starts[version] = [r[0] for r in self.rows[version]]

    def country(self, addr: Address) -> str | None:
        value = int(addr)
        i = bisect.bisect_right(self.starts[addr.version], value) - 1
        if i >= 0:
            lo, hi, cc = self.rows[addr.version][i]
            if lo <= value <= hi:
                return cc
        return None


def general_sample(
    ref: Callable[[Address], str | None], tor: TorGeoip, n: int, rng: random.Random
) -> list[Address]:
    out: list[Address] = []
    want4 = n * 3 // 4
    while len(out) < want4:
        addr = ipaddress.IPv4Address(rng.getrandbits(32))
        if addr.is_global and ref(addr) is not None:
            out.append(addr)
    # IPv6: uniform over the whole space would be a handful of huge allocations, uniform over the
    # reference's networks a swarm of tiny VPN and geofeed carve-outs; weigh each network by its
    # size capped at a /32 (a typical ISP allocation) instead.
    rows6 = tor.rows[6]
    cumulative, total = [], 0
    for lo, hi, _cc in rows6:
        total += min(hi - lo + 1, 1 << 96)
        cumulative.append(total)
    while len(out) < n:
        lo, hi, _cc = rows6[bisect.bisect_right(cumulative, rng.randrange(total))]
        addr6 = ipaddress.IPv6Address(lo + rng.randrange(hi - lo + 1))
        if addr6.is_global:
            out.append(addr6)
    return out


def cloud_sample(n: int, rng: random.Random) -> list[tuple[Address, str, str]]:
    ranges = cloud_ranges()
    regional = [(net, p) for net, p, region in regional_ranges() if ranges.providers[p].regions.get(region)]
    by_provider: dict[str, list[ipaddress.IPv4Network | ipaddress.IPv6Network]] = {}
    for net, p in regional:
        by_provider.setdefault(p, []).append(net)
    providers = sorted(by_provider)
    out: list[tuple[Address, str, str]] = []
    while len(out) < n:
        # Providers in turn, so Azure's hundred thousand small service-tag ranges do not drown the rest.
        nets = by_provider[providers[len(out) % len(providers)]]
        net = nets[rng.randrange(len(nets))]
        addr = net.network_address + rng.randrange(min(net.num_addresses, 1 << 62))
        hit = ranges.lookup(addr)
        if addr.is_global and hit is not None and hit.country is not None:
            out.append((addr, hit.country, hit.provider))
    return out


def table(
    title: str,
    addrs: Iterable[Address],
    truth: Callable[[Address], str | None],
    sources: dict[str, Callable[[Address], str | None]],
) -> None:
    rows = list(addrs)
    print(f"\n{title} ({len(rows)} addresses)")
    print(f"  {'source':<34} {'answered':>9} {'agrees':>9} {'agreement':>10}")
    for name, ask in sources.items():
        answered = agrees = 0
        for addr in rows:
            got, want = ask(addr), truth(addr)
            if got is None or want is None:
                continue
            answered += 1
            agrees += got == want
        rate = f"{100 * agrees / answered:.1f}%" if answered else "-"
        print(f"  {name:<34} {answered:>9} {agrees:>9} {rate:>10}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=3000, help="addresses per sample (default 3000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--tor", default="/usr/share/tor", help="folder holding Tor's geoip and geoip6")
    parser.add_argument("--mmdb", help="a MaxMind DB to compare with as well")
    args = parser.parse_args()
    folder = Path(args.tor)
    if not (folder / "geoip").exists():
        print(f"no Tor geoip files in {folder}: apt-get install tor-geoipdb, or pass --tor", file=sys.stderr)
        return 2
    start = time.monotonic()
    tor = TorGeoip(folder)
    geo = Geo(discover=False)
    lite, registry, ranges = GeoLite2(), Registry(), cloud_ranges()
    mmdb = Mmdb(args.mmdb) if args.mmdb else None

    def layered(addr: Address) -> str | None:
        return geo.country(str(addr))[0]

    def cloud(addr: Address) -> str | None:
        hit = ranges.lookup(addr)
        return hit.country if hit else None

    lite.country(ipaddress.ip_address("8.8.8.8"))  # loads the data, fixing its source string
    sources: dict[str, Callable[[Address], str | None]] = {
        "phonehome (layered)": layered,
        f"cloud ranges {ranges.date}": cloud,
        lite.source: lite.country,
        registry.source: registry.country,
    }
    reference = f"IPFire Location via tor-geoipdb ({tor.header})"
    rng = random.Random(args.seed)
    general = general_sample(tor.country, tor, args.n, rng)
    for version in (4, 6):
        part = [a for a in general if a.version == version]
        table(f"general sample, IPv{version}, vs {reference}", part, tor.country, sources)
    if mmdb is not None:
        table(f"general sample vs {mmdb.source}", general, mmdb.country, sources | {reference: tor.country})
    clouds = cloud_sample(args.n, rng)
    truth = {addr: cc for addr, cc, _p in clouds}
    table(
        "cloud sample vs the provider's own region",
        truth,
        truth.get,
        {k: v for k, v in sources.items() if k != "phonehome (layered)"}
        | {"IPFire Location (tor-geoipdb)": tor.country},
    )
    per: dict[str, int] = {}
    for _addr, _cc, p in clouds:
        per[p] = per.get(p, 0) + 1
    print("  cloud sample by provider: " + ", ".join(f"{p} {n}" for p, n in sorted(per.items())))
    print(f"\n{time.monotonic() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
