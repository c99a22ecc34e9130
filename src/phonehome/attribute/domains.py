"""Host names as the phone used them, and their registrable domains, from the Public Suffix List.

The list is the snapshot bundled in the ``publicsuffixlist`` package (its version ends in the
snapshot's date); nothing is fetched at run time. Two readings of the list are kept apart:

* ``domain``: the registrable domain under the whole list, private section included, so that a
  tenant of a shared platform keeps its own name (``myapp.appspot.com``, ``d1.cloudfront.net``);
* ``site``: the registrable domain under the ICANN section only (``appspot.com``,
  ``cloudfront.net``), which is as far up as an owner lookup walks.

Names arrive from HTTP ``Host`` headers, TLS SNI, DNS and HAR files, so they may carry a port, a
trailing dot, upper case or Unicode labels; :func:`normalise` turns them into one form.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from dataclasses import dataclass
from functools import cache, lru_cache

from publicsuffixlist import PSLFILE, PublicSuffixList

from phonehome.cache import cache_folder, package_version, read_entry, save_entry

# RFC 1035 §2.3.4: a name is at most 255 octets on the wire, 253 characters written out.
MAX_NAME = 253


def psl_date() -> str:
    """The date of the bundled Public Suffix List snapshot, e.g. ``2026-10-23``."""
    stamp = package_version("publicsuffixlist").rsplit(".", 1)[-1]
    return f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:]}" if len(stamp) == 8 and stamp.isdigit() else stamp


def psl_lines() -> list[str]:
    """The bundled list's lines, each rule in Unicode followed by its A-label form.

    The parser would otherwise put every one of its ten thousand rules through the IDNA codec
    (``accept_encoded_idn``), most of them plain ASCII, for each list built: a tenth of a second.
    """
    with open(PSLFILE, encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    out = []
    for line in lines:
        out.append(line)
        rule = line.lower().split(" ")[0].rstrip()
        if rule and not rule.isascii() and not rule.startswith("//"):
            bang = "!" if rule.startswith("!") else ""
            out.append(bang + rule.removeprefix("!").encode("idna").decode("ascii"))
    return out


# The markers around the ICANN section of the list; what follows the end is the private section.
_ICANN_BEGIN, _ICANN_END = "// ===BEGIN ICANN DOMAINS===", "// ===END ICANN DOMAINS==="


def psl_rules() -> tuple[list[str], list[str]]:
    """Every rule of the bundled list, and those of its ICANN section, each rule in Unicode and in
    its A-label form (see :func:`psl_lines`), lower case, without comments.

    Kept in the cache folder, keyed by the list's own bytes: reading and IDNA-encoding ten
    thousand rules is most of what building the lists costs.
    """
    with open(PSLFILE, "rb") as fh:
        source = fh.read()
    directory = cache_folder()
    path = None
    if directory is not None:
        digest = hashlib.sha256(b"psl-rules 1\0" + source).hexdigest()[:32]
        path = directory / f"psl-{digest}.json"
        data = read_entry(path)
        if data is not None:
            try:
                doc = json.loads(data)
                rules, icann = doc["all"], doc["icann"]
                if all(isinstance(x, list) and all(isinstance(r, str) for r in x) for x in (rules, icann)):
                    return rules, icann
            except (ValueError, KeyError, TypeError):
                pass  # unreadable: built again
    rules, icann = [], []
    in_icann = False
    for line in psl_lines():
        marker = line.rstrip()
        if marker in (_ICANN_BEGIN, _ICANN_END):
            in_icann = marker == _ICANN_BEGIN
            continue
        rule = line.lower().split(" ")[0].rstrip()
        if not rule or rule.startswith("//"):
            continue
        rules.append(rule)
        if in_icann:
            icann.append(rule)
    if path is not None:
        save_entry(path, json.dumps({"all": rules, "icann": icann}).encode("utf-8"))
    return rules, icann


class _Rules(PublicSuffixList):
    """A list built from rules :func:`psl_rules` already read: lower case, without comments.

    Its parser would read each of them again as a line of the file (decode, lower-case, split,
    strip) to reach the same set: a third of every run's start-up. What it keeps of a parse is
    that set and the most labels a rule has (publicsuffixlist 1.1, pinned; a test compares both
    lists with the parser's own reading of the file).
    """

    def _parse(self, source: object, accept_encoded_idn: bool, only_icann: bool = False) -> None:
        assert isinstance(source, list) and not accept_encoded_idn and not only_icann
        self._publicsuffix = frozenset(source)
        self._maxlabel = max((rule.count(".") + 1 for rule in source), default=0)


@cache
def _lists() -> tuple[PublicSuffixList, PublicSuffixList]:
    # Built once per process, on first use: the whole list, and its ICANN section alone.
    rules, icann = psl_rules()
    return (
        _Rules(rules, accept_encoded_idn=False),
        _Rules(icann, accept_encoded_idn=False),
    )


@dataclass(frozen=True, slots=True)
class Name:
    """A destination name in one normal form, with its registrable domains."""

    host: str  # lower case, A-labels, no port, no trailing dot
    address: bool  # an IP literal rather than a name
    domain: str | None  # registrable domain under the whole list (private section included)
    site: str | None  # registrable domain under the ICANN section only

    def candidates(self) -> tuple[str, ...]:
        """Owner-table keys from the full host up to ``site``, most specific first."""
        if self.address:
            return (self.host,)
        labels = self.host.split(".")
        top = len(self.site.split(".")) if self.site else 1
        return tuple(".".join(labels[i:]) for i in range(len(labels) - top + 1))


def _strip_port(text: str) -> str:
    if text.startswith("["):  # RFC 3986 §3.2.2: an IPv6 literal is bracketed, a port may follow
        end = text.find("]")
        return text[1:end] if end > 0 else text[1:]
    head, sep, tail = text.rpartition(":")
    if sep and ":" not in head and tail.isdigit():  # one colon: host:port; more: a bare IPv6 address
        return head
    if sep and ":" not in head and not tail:
        return head
    return text


def _to_ascii(host: str) -> str | None:
    if host.isascii():
        return host
    labels = []
    for label in host.split("."):
        try:
            # RFC 3490 ToASCII per label; the A-label is what the phone put on the wire.
            labels.append(label.encode("idna").decode("ascii") if not label.isascii() else label)
        except UnicodeError:
            return None
    return ".".join(labels)


@lru_cache(maxsize=65536)
def normalise(raw: str | None) -> Name | None:
    """The name in normal form, or None when there is no usable name."""
    if not raw:
        return None
    text = _strip_port(raw.strip()).rstrip(".").lower()
    if not text or len(text) > MAX_NAME + 8:
        return None
    try:
        return Name(str(ipaddress.ip_address(text.split("%", 1)[0])), True, None, None)
    except ValueError:
        pass
    host = _to_ascii(text)
    if host is None or len(host) > MAX_NAME or "" in host.split("."):
        return None
    full, icann = _lists()
    site = icann.privatesuffix(host)
    domain = full.privatesuffix(host) or site
    return Name(host, False, domain, site)


def registrable(raw: str | None) -> str | None:
    """The registrable domain of a host name (public-suffix aware); None for addresses and suffixes."""
    name = normalise(raw)
    return name.domain if name else None
