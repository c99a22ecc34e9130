"""The HTML report: one self-contained file to open offline, mail, and trust.

Everything is rendered here, server-side: the tables, the world map, the flow diagram and the
timeline are plain HTML and inline SVG, so the page reads with JavaScript disabled. The small
script shipped with it only adds filtering and sorting. Nothing is fetched when the page opens:
styles, script and map geometry are inline, and a Content-Security-Policy that allows exactly the
inline style and script (CSP Level 3 hash sources), ``data:`` images and nothing else stops any
other load or any inline handler.

Captured traffic is hostile input. Every string from a capture or a profile goes through
:class:`Html` building, which escapes it (``html.escape``), and through :func:`visible`, which
replaces control, format (bidi overrides, zero-width), surrogate, private-use and unassigned
characters, and stacks of combining marks, with visible ``\\x..``/``\\u....`` markers. Capture data
never reaches a ``<script>`` or ``<style>`` element, an URL attribute or an event handler.

With ``redact=True`` every identifier value, in every encoded form, is masked in every view
(:mod:`phonehome.report.redact`).
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any

from phonehome import __version__
from phonehome.attribute.geo import ATTRIBUTION as GEO_ATTRIBUTION
from phonehome.audit import AuditResult
from phonehome.diff import Change, DiffResult, Side
from phonehome.model import Finding
from phonehome.policy import countries as names
from phonehome.profile import Identifier, Profile
from phonehome.report.redact import Redactor, mask, split_evidence

MAP_ATTRIBUTION = "Map: Natural Earth 1:110m countries (public domain), Equal Earth projection."
# Beyond this many findings the evidence table lists the first ones and says so; the JSON
# document always has them all.
MAX_EVIDENCE_ROWS = 5000
MAX_WARNINGS = 200

CATEGORY_ORDER = ("device", "subscriber", "network", "account", "contacts", "messages", "custom")
UNKNOWN = "unknown"


# --- building markup -----------------------------------------------------------------------------


class Html(str):
    """Markup that is already safe: built by :func:`tag` or escaped by :func:`esc`."""

    __slots__ = ()


Child = Html | str | int | None


def esc(value: Child) -> Html:
    if value is None:
        return Html("")
    if isinstance(value, Html):
        return value
    return Html(html.escape(str(value), quote=True))


def join(children: Iterable[Child]) -> Html:
    return Html("".join(esc(c) for c in children))


def tag(name: str, /, *children: Child, **attrs: str | int | float | bool | None) -> Html:
    """``<name attrs>children</name>``; a trailing ``_`` is dropped and ``_`` reads as ``-`` in names."""
    parts = [name]
    for key, value in attrs.items():
        if value is None or value is False:
            continue
        attr = key.rstrip("_").replace("_", "-")
        parts.append(attr if value is True else f'{attr}="{html.escape(str(value), quote=True)}"')
    opening = "<" + " ".join(parts) + ">"
    if name in _VOID:
        return Html(opening)
    return Html(opening + join(children) + f"</{name}>")


_VOID = frozenset({"meta", "link", "br", "input", "img", "hr"})


# --- making hostile text visible -----------------------------------------------------------------

# Unicode general categories that never belong in a URL, a header or an evidence excerpt as
# shown: they are drawn as markers instead (Unicode §4.5 General Category; UAX #9 for the bidi
# controls in Cf; UTS #39 §3 for zero-width and invisible characters).
_ODD = {
    "Cc": "control",
    "Cf": "invisible format character",
    "Cs": "lone surrogate",
    "Co": "private use",
    "Cn": "unassigned",
    "Zl": "line separator",
    "Zp": "paragraph separator",
}
_MAX_MARKS = 2  # combining marks kept on one base character; more are a stack meant to overflow


def _notation(ch: str) -> str:
    cp = ord(ch)
    if cp < 0x100:
        return f"\\x{cp:02x}"
    return f"\\u{cp:04x}" if cp < 0x10000 else f"\\U{cp:08x}"


def visible(text: str) -> list[tuple[str, str | None]]:
    """``text`` as pieces: (plain text, None) or (marker, why) for each character not shown as is."""
    if text.isascii() and text.isprintable():
        return [(text, None)]
    out: list[tuple[str, str | None]] = []
    plain: list[str] = []
    marks = 0
    based = False  # the last character shown is a letter or a number that marks may sit on
    for ch in text:
        cat = unicodedata.category(ch)
        why = _ODD.get(cat)
        if why is None and cat in ("Mn", "Me"):
            marks += 1
            if not based or marks > _MAX_MARKS:
                why = "combining mark without a base character" if not based else "stacked combining mark"
        elif why is None:
            marks = 0
            based = cat[0] in "LN"
        if why is None:
            plain.append(ch)
            continue
        if plain:
            out.append(("".join(plain), None))
            plain = []
        name = unicodedata.name(ch, "") if cat != "Cs" else ""
        out.append((_notation(ch), f"U+{ord(ch):04X} {name or why}".strip()))
        based = False
    if plain:
        out.append(("".join(plain), None))
    return out


def show(text: str | None) -> Html:
    """Capture text as markup, odd characters as marked ``\\u....`` notation."""
    if not text:
        return Html("")
    return join(p if why is None else tag("span", p, class_="esc", title=why) for p, why in visible(text))


def flat(text: str | None) -> str:
    """Capture text for an attribute or SVG text: odd characters as ``\\u....`` notation."""
    return "".join(p for p, _ in visible(text or ""))


# --- context shared by every view ----------------------------------------------------------------


class View:
    """How capture and profile text is shown: escaped, made visible, masked when redacting."""

    def __init__(self, identifiers: Sequence[Identifier], findings: Iterable[Finding], redact: bool) -> None:
        self.redact = redact
        self._redactor: Redactor | None = None
        if redact:
            spans = [split_evidence(f.evidence).match for f in findings]
            self._redactor = Redactor(identifiers, [s for s in spans if s])
        self._values: dict[str, list[Identifier]] = defaultdict(list)
        for ident in identifiers:
            self._values[ident.label].append(ident)

    def text(self, text: str | None) -> str:
        if not text:
            return ""
        return self._redactor.text(text) if self._redactor else text

    def cap(self, text: str | None) -> Html:
        """Text from a capture or a profile, as markup."""
        return tag("span", show(self.text(text)), class_="cap") if text else Html("")

    def label(self, text: str | None) -> Html:
        """An identifier label (a profile key): wraps only where words do."""
        return tag("span", show(self.text(text)), class_="cap ident") if text else Html("")

    def code(self, text: str | None) -> Html:
        return tag("code", show(self.text(text)), class_="cap") if text else Html("")

    def attr(self, text: str | None) -> str:
        return flat(self.text(text))

    def evidence(self, text: str) -> Html:
        shown = self._redactor.evidence(text) if self._redactor else text
        ev = split_evidence(shown)
        return tag(
            "code",
            "…" if ev.lead else None,
            _escapes(ev.before),
            tag("mark", "«", _escapes(ev.match), "»") if ev.match or "«" in shown else None,
            _escapes(ev.after),
            "…" if ev.trail else None,
            class_="ev cap",
        )

    def value(self, label: str) -> Html:
        """The profile value behind an identifier label (masked when redacting)."""
        idents = self._values.get(label, [])
        if len(idents) != 1:
            return tag("span", f"one of {len(idents)} values", class_="note") if idents else Html("")
        value = idents[0].value
        return tag("code", show(mask(value) if self.redact else value), class_="cap")


def _escapes(text: str) -> Html:
    """Evidence text with its ``\\xNN`` escapes marked, so a reader tells them from bytes as sent."""
    out: list[Child] = []
    pos = 0
    while (i := text.find("\\x", pos)) >= 0:
        out.append(show(text[pos:i]))
        code = text[i : i + 4]
        out.append(tag("span", code, class_="esc", title="byte " + code[2:].upper()))
        pos = i + 4
    out.append(show(text[pos:]))
    return join(out)


# --- small helpers -------------------------------------------------------------------------------


def plural(n: int, word: str, words: str | None = None) -> str:
    return f"{n:,} {word if n == 1 else words or word + 's'}"


def country_name(code: str | None) -> str:
    """English name of an ISO 3166 alpha-2 code (the package's country table); "unknown" for none."""
    if not code:
        return UNKNOWN
    return names.country_name(code) or code


def category_rank(category: str) -> tuple[int, str]:
    return (CATEGORY_ORDER.index(category) if category in CATEGORY_ORDER else len(CATEGORY_ORDER), category)


def destination(f: Finding) -> str:
    return f.host or f.ip


def organisation(f: Finding) -> str:
    """Who runs the destination, and in what role, as far as the attribution tables know."""
    owner = f.owner or "owner unknown"
    return f"{owner} ({f.role})" if f.role and f.role != UNKNOWN else owner


def transport_label(f: Finding) -> str:
    if f.encrypted:
        return f.tls_version or "TLS"
    return "cleartext"


def utc(t: float) -> str:
    stamp = datetime.fromtimestamp(t, UTC)
    return stamp.strftime("%Y-%m-%d %H:%M:%S.") + f"{stamp.microsecond // 1000:03d} UTC"


def default_verdict(findings: Sequence[Finding]) -> str:
    if not findings:
        return "No declared identifier was found in the traffic."
    idents = len({f.identifier for f in findings})
    dests = len({destination(f) for f in findings})
    countries = len({f.country for f in findings if f.country})
    where = f" in {plural(countries, 'country', 'countries')}" if countries else ""
    return (
        f"{plural(idents, 'identifier')} left the phone for {plural(dests, 'destination')}{where}: "
        f"{plural(len(findings), 'finding')}, all counted as violations (no policy given)."
    )


def verdict_mark(verdict: str | None) -> Html:
    if verdict is None:
        return tag("span", "— none", class_="note")
    if verdict == "violation":
        return tag("span", "✖ violation", class_="bad")
    return tag("span", "✓ " + verdict, class_="good")


def stats(items: Sequence[tuple[str, int]]) -> Html:
    return tag(
        "dl", *(tag("div", tag("dt", label), tag("dd", f"{n:,}")) for label, n in items), class_="stats"
    )


def table(
    headers: Sequence[str | tuple[str, str]],
    rows: Iterable[Html],
    *,
    caption: str | None = None,
    cls: str = "",
    id_: str | None = None,
    filterable: bool = False,
) -> Html:
    """A table with a header row; headers given as (text, class) get that class."""
    heads = [
        tag("th", h, scope="col") if isinstance(h, str) else tag("th", h[0], scope="col", class_=h[1])
        for h in headers
    ]
    return tag(
        "table",
        tag("caption", caption) if caption else None,
        tag("thead", tag("tr", *heads)),
        tag("tbody", *rows),
        class_=cls or None,
        id=id_,
        data_filter=filterable,
    )


def td(label: str, *children: Child, cls: str | None = None, sort: str | None = None) -> Html:
    return tag("td", *children, data_label=label, class_=cls, data_sort=sort)


# --- sections of the audit report ----------------------------------------------------------------


def summary_by_category(findings: Sequence[Finding], view: View) -> Html:
    by_ident: dict[tuple[str, str], list[Finding]] = defaultdict(list)
    for f in findings:
        by_ident[(f.category, f.identifier)].append(f)
    bodies = []
    categories = sorted({c for c, _ in by_ident}, key=category_rank)
    for category in categories:
        rows = [tag("tr", tag("th", category, colspan=7, scope="rowgroup"))]
        for (cat, ident), items in sorted(by_ident.items(), key=lambda kv: kv[0][1]):
            if cat != category:
                continue
            dests = sorted({destination(f) for f in items})
            countries = sorted({f.country or UNKNOWN for f in items})
            clear = sum(1 for f in items if not f.encrypted)
            rows.append(
                tag(
                    "tr",
                    tag("th", view.label(ident), scope="row", data_label="identifier"),
                    td("value", view.value(ident)),
                    td("findings", len(items), cls="num"),
                    td(
                        "encodings",
                        join(tag("span", e, class_="pill") for e in sorted({f.encoding for f in items})),
                    ),
                    td("sent to", join(tag("span", view.cap(d), class_="pill") for d in dests)),
                    td(
                        "countries",
                        ", ".join(f"{country_name(c)} ({c})" if c != UNKNOWN else c for c in countries),
                    ),
                    td(
                        "cleartext",
                        tag("span", f"⚠ {clear} in cleartext", class_="warn") if clear else "✓ none",
                    ),
                )
            )
        bodies.append(tag("tbody", *rows))
    heads = ["identifier", "value", ("findings", "num"), "encodings", "sent to", "countries", "cleartext"]
    head = tag(
        "thead",
        tag(
            "tr",
            *(
                tag("th", h, scope="col") if isinstance(h, str) else tag("th", h[0], scope="col", class_=h[1])
                for h in heads
            ),
        ),
    )
    return tag(
        "table",
        tag("caption", "Each declared identifier found in the traffic."),
        head,
        *bodies,
        class_="cards",
    )


def destinations(findings: Sequence[Finding], view: View) -> Html:
    groups: dict[str, list[Finding]] = defaultdict(list)
    for f in findings:
        groups[destination(f)].append(f)
    rows = []
    for dest, items in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        owners = sorted({organisation(f) for f in items})
        addresses = sorted({f"{f.ip}:{f.port}" for f in items})
        countries = sorted({f.country or UNKNOWN for f in items})
        transports = sorted({transport_label(f) for f in items})
        idents = sorted({f.identifier for f in items})
        rows.append(
            tag(
                "tr",
                tag("th", view.cap(dest), scope="row", data_label="destination", class_="cap"),
                td(
                    "organisation",
                    view.cap(", ".join(owners)),
                ),
                td("address", join(tag("span", view.code(a), class_="sub addr") for a in addresses)),
                td(
                    "country", ", ".join(f"{country_name(c)} ({c})" if c != UNKNOWN else c for c in countries)
                ),
                td(
                    "transport",
                    join(
                        tag("span", "⚠ cleartext", class_="warn")
                        if t == "cleartext"
                        else tag("span", "encrypted (" + t + ")")
                        for t in transports
                    ),
                ),
                td("identifiers", join(tag("span", view.cap(i), class_="pill") for i in idents)),
                td("findings", len(items), cls="num"),
            )
        )
    return table(
        [
            "destination",
            "organisation",
            "address",
            "country",
            "transport",
            "identifiers",
            ("findings", "num"),
        ],
        rows,
        caption="Where the identifiers went, by host name (or address when no name was seen).",
        cls="cards sortable",
    )


@cache
def world() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(_asset("world.json"))
    return data


def _asset(name: str) -> str:
    return resources.files("phonehome.report").joinpath("assets", name).read_text(encoding="utf-8")


def world_map(marks: dict[str, tuple[str, str, str]], title: str) -> Html:
    """The world with countries marked: code -> (CSS class, label drawn on the map, tooltip)."""
    geo = world()
    paths = []
    for code, d in geo["paths"].items():
        cls, _, tip = marks.get(code, ("", "", ""))
        paths.append(
            tag(
                "path",
                tag("title", tip or country_name(code)),
                d=d,
                class_=("land " + cls).strip(),
            )
        )
    dots, labels = [], []
    for code, (cls, label, tip) in sorted(marks.items()):
        if code in geo["paths"]:
            x, y = geo["labels"][code]
        elif code in geo["points"]:
            x, y = geo["points"][code]
            dots.append(tag("circle", tag("title", tip), cx=x, cy=y, r=7, class_="dot " + cls))
        else:
            continue
        labels.append(
            tag(
                "text",
                label,
                x=x,
                y=y - 8 if code in geo["points"] else y,
                class_="halo",
                text_anchor="middle",
            )
        )
    vb = " ".join(str(v) for v in geo["viewBox"])
    return tag(
        "svg",
        tag("title", title),
        tag("g", *paths),
        tag("g", *dots),
        tag("g", *labels),
        viewBox=vb,
        role="img",
        aria_label=title,
        class_="map",
        xmlns="http://www.w3.org/2000/svg",
    )


def _hit_class(n: int, top: int) -> str:
    if top <= 1:
        return "h2"
    share = n / top
    return "h3" if share > 0.66 else "h2" if share > 0.33 else "h1"


def map_section(findings: Sequence[Finding], view: View) -> Html:
    by_country: dict[str | None, list[Finding]] = defaultdict(list)
    for f in findings:
        by_country[f.country].append(f)
    top = max((len(v) for k, v in by_country.items() if k), default=0)
    marks = {}
    rows = []
    for code, items in sorted(by_country.items(), key=lambda kv: (-len(kv[1]), kv[0] or "~")):
        idents = sorted({f.identifier for f in items})
        name = country_name(code)
        if code:
            tip = f"{name}: {plural(len(items), 'finding')} ({', '.join(view.attr(i) for i in idents)})"
            marks[code.upper()] = (_hit_class(len(items), top), f"{code} {len(items)}", tip)
        drawn = code is not None and (code.upper() in world()["paths"] or code.upper() in world()["points"])
        rows.append(
            tag(
                "tr",
                tag(
                    "th",
                    f"{name} ({code})" if code else "not located",
                    None if drawn or not code else tag("span", "too small to draw on the map", class_="sub"),
                    scope="row",
                    data_label="country",
                ),
                td("findings", len(items), cls="num"),
                td("what reached it", join(tag("span", view.cap(i), class_="pill") for i in idents)),
                td(
                    "destinations",
                    join(
                        tag("span", view.cap(d), class_="pill")
                        for d in sorted({destination(f) for f in items})
                    ),
                ),
            )
        )
    if not findings:
        return tag("p", "No identifier reached any country.", class_="note")
    legend = tag(
        "ul",
        tag("li", tag("span", class_="sw h3"), "most findings"),
        tag("li", tag("span", class_="sw h2"), "some"),
        tag("li", tag("span", class_="sw h1"), "fewest"),
        tag("li", "labels give the country code and the number of findings"),
        class_="legend",
    )
    return tag(
        "div",
        tag("figure", world_map(marks, "World map of the countries the identifiers reached"), legend),
        table(
            ["country", ("findings", "num"), "what reached it", "destinations"],
            rows,
            caption="Countries by the address each request went to (offline geolocation).",
            cls="cards sortable",
        ),
        class_="map-wrap",
    )


def flow_diagram(findings: Sequence[Finding], view: View) -> Html:
    """Category → organisation → country, band widths proportional to the number of findings."""
    if not findings:
        return tag("p", "Nothing to draw.", class_="note")
    cats = Counter(f.category for f in findings)
    orgs = Counter(_org_node(f) for f in findings)
    lands = Counter(f.country or UNKNOWN for f in findings)
    columns = [
        sorted(cats, key=category_rank),
        sorted(orgs, key=lambda o: (-orgs[o], o)),
        sorted(lands, key=lambda c: (-lands[c], c)),
    ]
    counts = [cats, orgs, lands]
    total = len(findings)
    width, node_w, gap, min_h = 900, 12, 16, 4.0
    tallest = max(len(c) for c in columns)
    unit = max(1.0, min(24.0, 360 / total))
    height = max(
        sum(max(min_h, counts[i][n] * unit) for n in col) + gap * (len(col) - 1)
        for i, col in enumerate(columns)
    )
    height = max(height, tallest * 22)
    xs = [150, 440, width - 170 - node_w]
    boxes: list[dict[str, tuple[float, float]]] = []
    for i, col in enumerate(columns):
        used = sum(max(min_h, counts[i][n] * unit) for n in col) + gap * (len(col) - 1)
        y = (height - used) / 2 + 10
        boxes.append({})
        for n in col:
            h = max(min_h, counts[i][n] * unit)
            boxes[i][n] = (y, h)
            y += h + gap
    cat_class = {c: f"k{i % 7}" for i, c in enumerate(columns[0])}
    links: list[Html] = []
    stage_keys: list[Callable[[Finding], tuple[str, str]]] = [
        lambda f: (f.category, _org_node(f)),
        lambda f: (_org_node(f), f.country or UNKNOWN),
    ]
    for stage, key in enumerate(stage_keys):
        flows = Counter((key(f), f.category) for f in findings)
        out_off: dict[str, float] = defaultdict(float)
        in_off: dict[str, float] = defaultdict(float)
        order = {n: i for i, n in enumerate(columns[stage + 1])}
        src_order = {n: i for i, n in enumerate(columns[stage])}
        for ((src, dst), cat), count in sorted(
            flows.items(),
            key=lambda kv: (src_order[kv[0][0][0]], order[kv[0][0][1]], category_rank(kv[0][1])),
        ):
            thick = count * unit
            y0 = boxes[stage][src][0] + out_off[src] + thick / 2
            y1 = boxes[stage + 1][dst][0] + in_off[dst] + thick / 2
            out_off[src] += thick
            in_off[dst] += thick
            x0, x1 = xs[stage] + node_w, xs[stage + 1]
            xm = (x0 + x1) / 2
            tip = f"{view.attr(src)} → {view.attr(dst)} ({cat}): {plural(count, 'finding')}"
            links.append(
                tag(
                    "path",
                    tag("title", tip),
                    d=f"M{x0} {y0:.1f}C{xm} {y0:.1f} {xm} {y1:.1f} {x1} {y1:.1f}",
                    class_="link " + cat_class[cat],
                    stroke_width=f"{max(thick, 1.5):.1f}",
                )
            )
    nodes: list[Html] = []
    for i, col in enumerate(columns):
        for n in col:
            y, h = boxes[i][n]
            name = f"{country_name(n)} ({n})" if i == 2 and n != UNKNOWN else view.attr(n)
            label = f"{name}: {counts[i][n]}"
            anchor = "end" if i == 0 else "start"
            tx = xs[i] - 6 if i == 0 else xs[i] + node_w + 6
            nodes.append(
                tag(
                    "rect",
                    tag("title", label),
                    x=xs[i],
                    y=f"{y:.1f}",
                    width=node_w,
                    height=f"{h:.1f}",
                    class_=cat_class[n] if i == 0 else "node",
                )
            )
            nodes.append(
                tag("text", label, x=tx, y=f"{y + h / 2 + 4:.1f}", text_anchor=anchor, class_="halo")
            )
    heads = [
        tag(
            "text",
            t,
            x=x + (node_w if i else 0),
            y=12,
            text_anchor="end" if i == 0 else "start",
            class_="halo",
        )
        for i, (t, x) in enumerate(zip(("data category", "organisation", "country"), xs, strict=True))
    ]
    title = "Flow of findings from data category to organisation to country"
    return tag(
        "figure",
        _scroll(
            "svg",
            tag("title", title),
            *heads,
            tag("g", *links),
            tag("g", *nodes),
            viewBox=f"0 0 {width} {height + 20:.0f}",
            role="img",
            aria_label=title,
            class_="flow",
            xmlns="http://www.w3.org/2000/svg",
        ),
        tag(
            "figcaption",
            "Band widths are proportional to the number of findings; each band's colour and its tooltip "
            "name the data category. An organisation shown as a domain is one whose owner is not known.",
        ),
    )


def _scroll(name: str, /, *children: Child, **attrs: str | int | float | bool | None) -> Html:
    """A wide drawing in a box that scrolls sideways on a narrow screen rather than shrink to nothing."""
    return tag("div", tag(name, *children, **attrs), class_="scroll")


def _org_node(f: Finding) -> str:
    if f.owner:
        return organisation(f)
    return f"{f.domain or destination(f)} (owner unknown)"


_STEPS = (
    0.001,
    0.002,
    0.005,
    0.01,
    0.02,
    0.05,
    0.1,
    0.2,
    0.5,
    1,
    2,
    5,
    10,
    15,
    30,
    60,
    120,
    300,
    600,
    900,
    1800,
    3600,
)


def _seconds(value: float, step: float) -> str:
    if step < 1:
        digits = max(0, -math.floor(math.log10(step)))
        return f"{value:.{digits}f} s"
    if step < 60:
        return f"{value:.0f} s"
    if step < 3600:
        return f"{value / 60:.0f} min"
    return f"{value / 3600:.1f} h"


_BUCKET = 3.0  # timeline units under one marker


def _mark_tip(group: Sequence[Finding], t0: float, view: View) -> str:
    f = group[0]
    if len(group) == 1:
        return (
            f"+{f.time - t0:.3f} s, {view.attr(f.identifier)} to {view.attr(destination(f))}"
            f" ({f.country or UNKNOWN}), {f.encoding} in {view.attr(f.where)}: {f.verdict}"
        )
    dests = sorted({view.attr(destination(g)) for g in group})
    verdicts = Counter(g.verdict for g in group)
    return (
        f"{len(group)} findings of {view.attr(f.identifier)} from +{f.time - t0:.3f} s to "
        f"+{group[-1].time - t0:.3f} s, to {', '.join(dests[:5])}{' ...' if len(dests) > 5 else ''}: "
        + ", ".join(f"{n} {v}" for v, n in sorted(verdicts.items()))
    )


def timeline(findings: Sequence[Finding], view: View) -> Html:
    """One lane per identifier; a mark per finding at its time since the first finding."""
    if not findings:
        return tag("p", "Nothing to draw.", class_="note")
    t0 = min(f.time for f in findings)
    span = max(f.time for f in findings) - t0
    lanes = sorted({(f.category, f.identifier) for f in findings}, key=lambda k: (category_rank(k[0]), k[1]))
    lane_y = {k: 30 + i * 24 for i, k in enumerate(lanes)}
    left, right, width = 240, 20, 960
    plot = width - left - right
    height = 30 + len(lanes) * 24 + 30
    step = next((s for s in _STEPS if span / s <= 8), 3600 * math.ceil(span / 3600 / 8)) if span else 1

    def x_of(t: float) -> float:
        return left + (plot * (t - t0) / span if span else plot / 2)

    parts: list[Html] = []
    for (cat, ident), y in lane_y.items():
        parts.append(tag("line", x1=left, x2=width - right, y1=y, y2=y, class_="lane"))
        label = f"{view.attr(ident)} ({cat})"
        short = label if len(label) <= 30 else label[:29] + "…"
        parts.append(tag("text", tag("title", label), short, x=left - 8, y=y + 4, text_anchor="end"))
    axis_y = height - 24
    parts.append(tag("line", x1=left, x2=width - right, y1=axis_y, y2=axis_y, class_="axis"))
    ticks = int(span / step + 1e-9) if span else 0  # floor division of floats drops the last tick
    for i in range(ticks + 1):
        x = x_of(t0 + i * step)
        parts.append(tag("line", x1=f"{x:.1f}", x2=f"{x:.1f}", y1=axis_y, y2=axis_y + 5, class_="axis"))
        parts.append(
            tag("text", "+" + _seconds(i * step, step), x=f"{x:.1f}", y=axis_y + 17, text_anchor="middle")
        )
    cat_class = {
        c: f"k{i % 7}" for i, c in enumerate(sorted({f.category for f in findings}, key=category_rank))
    }
    # Findings closer than a marker's width on one lane share a marker, so a capture of a million
    # findings draws at most a few hundred marks per lane.
    buckets: dict[tuple[tuple[str, str], int], list[Finding]] = defaultdict(list)
    for f in sorted(findings, key=lambda f: f.time):
        buckets[((f.category, f.identifier), int((x_of(f.time) - left) / _BUCKET))].append(f)
    for (lane, _), group in buckets.items():
        first, last = group[0], group[-1]
        x, y = x_of((first.time + last.time) / 2), lane_y[lane]
        violation = any(f.verdict == "violation" for f in group)
        tip = _mark_tip(group, t0, view)
        if violation:
            parts.append(
                tag("circle", tag("title", tip), cx=f"{x:.1f}", cy=y, r=5, class_=cat_class[lane[0]])
            )
        else:
            parts.append(
                tag(
                    "rect",
                    tag("title", tip),
                    x=f"{x - 4:.1f}",
                    y=y - 4,
                    width=8,
                    height=8,
                    class_="allowed " + cat_class[lane[0]],
                )
            )
    title = f"Timeline of findings, from the first at {utc(t0)}"
    return tag(
        "figure",
        _scroll(
            "svg",
            tag("title", title),
            *parts,
            viewBox=f"0 0 {width} {height}",
            role="img",
            aria_label=title,
            class_="timeline",
            xmlns="http://www.w3.org/2000/svg",
        ),
        tag(
            "figcaption",
            f"Time since the first finding ({utc(t0)}); the capture spans {span:.3f} s of findings. "
            "A filled circle is a violation, a hollow square a finding the policy allows.",
        ),
    )


def _request(f: Finding, view: View) -> Html:
    """The request line as far as the finding knows it."""
    if f.url:
        return join([tag("span", f.protocol.upper(), class_="sub"), view.code(f.url)])
    if f.protocol == "dns":
        return join([tag("span", "DNS query", class_="sub"), view.code(f.host)])
    if f.protocol == "tls":
        return join([tag("span", "TLS ClientHello", class_="sub"), view.code(f.host)])
    return join([tag("span", f"{f.protocol} {f.transport}", class_="sub"), view.code(f.flow)])


def evidence_rows(findings: Sequence[Finding], view: View, prefix: str, t0: float) -> list[Html]:
    rows = []
    for n, f in enumerate(findings[:MAX_EVIDENCE_ROWS], 1):
        rows.append(
            tag(
                "tr",
                tag("th", f"{n}", scope="row", id=f"{prefix}{n}", data_label="finding", class_="num"),
                td(
                    "time",
                    f"+{f.time - t0:.3f} s",
                    tag("span", utc(f.time), class_="sub"),
                    sort=f"{f.time:.6f}",
                ),
                td("identifier", view.label(f.identifier), tag("span", f.category, class_="sub")),
                td(
                    "sent to",
                    view.cap(destination(f)),
                    tag("span", view.code(f"{f.ip}:{f.port}"), class_="sub addr"),
                    tag(
                        "span",
                        f"{country_name(f.country)} ({f.country})" if f.country else "country unknown",
                        class_="sub",
                    ),
                    tag("span", view.cap(organisation(f)), class_="sub"),
                    tag(
                        "span",
                        "⚠ cleartext" if not f.encrypted else f"encrypted ({transport_label(f)})",
                        class_="sub " + ("warn" if not f.encrypted else ""),
                    ),
                ),
                td("request", _request(f, view)),
                td(
                    "where and how",
                    view.code(f.where),
                    tag("span", "encoding: ", tag("code", f.encoding), class_="sub"),
                    tag("span", "form: " + f.form, class_="sub"),
                ),
                td("evidence", view.evidence(f.evidence)),
                td(
                    "verdict",
                    verdict_mark(f.verdict),
                    tag("span", view.cap(f.rule), class_="sub") if f.rule else None,
                ),
            )
        )
    return rows


EVIDENCE_HEADERS = [
    "#",
    "time",
    "identifier",
    "sent to",
    "request",
    "where and how",
    "evidence",
    "verdict",
]


def evidence_table(
    findings: Sequence[Finding], view: View, id_: str = "evidence-table", prefix: str = "f"
) -> Html:
    if not findings:
        return tag("p", "No findings.", class_="note")
    t0 = min(f.time for f in findings)
    ordered = sorted(findings, key=lambda f: (f.time, f.flow, f.where, f.identifier))
    more = len(ordered) - MAX_EVIDENCE_ROWS
    return join(
        [
            table(
                EVIDENCE_HEADERS,
                evidence_rows(ordered, view, prefix, t0),
                caption=(
                    "Every finding: the request, where the value sat, the chain of encodings from the value "
                    "to the wire, and the bytes around it with the match between « and »."
                ),
                cls="cards sortable",
                id_=id_,
                filterable=True,
            ),
            tag("p", f"… and {more:,} more findings: see the JSON report.", class_="alert")
            if more > 0
            else None,
        ]
    )


def inputs_section(result: AuditResult, view: View) -> Html:
    rows = [
        tag(
            "tr",
            tag("th", view.code(i.path), scope="row", data_label="file"),
            td("format", i.format or "unreadable"),
            td("size", f"{i.size:,} bytes", cls="num"),
            td("exchanges", f"{i.exchanges:,}", cls="num"),
            td(
                "status",
                tag("span", "⚠ ", view.cap(i.error), class_="warn") if i.error else "✓ read to its end",
            ),
        )
        for i in result.inputs
    ]
    warnings = [tag("li", view.cap(str(w))) for w in result.warnings[:MAX_WARNINGS]]
    extra = len(result.warnings) - MAX_WARNINGS
    return join(
        [
            table(["file", "format", ("size", "num"), ("exchanges", "num"), "status"], rows, cls="cards"),
            tag("h3", plural(len(result.warnings), "warning")) if result.warnings else None,
            tag("ul", *warnings) if warnings else None,
            tag("p", f"… and {extra:,} more (see the JSON report).", class_="note") if extra > 0 else None,
        ]
    )


# --- the page ------------------------------------------------------------------------------------


def _hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def page(
    title: str,
    header: Html,
    sections: Sequence[tuple[str, str, Html]],
    footer: Sequence[str],
    skip: tuple[str, str] = ("evidence", "Skip to the evidence"),
) -> str:
    """The whole document: (id, heading, body) sections under a table of contents."""
    style = "\n" + _asset("report.css")
    script = "\n" + _asset("report.js")
    # CSP Level 3: only the inline style and script with these hashes run; nothing is fetched.
    csp = (
        f"default-src 'none'; style-src {_hash(style)}; script-src {_hash(script)}; img-src data:; "
        "base-uri 'none'; form-action 'none'"
    )
    toc = tag(
        "nav",
        tag("ul", *(tag("li", tag("a", heading, href="#" + sid)) for sid, heading, _ in sections)),
        class_="toc",
        aria_label="Sections",
    )
    body = join(
        [
            tag("a", skip[1], href="#" + skip[0], class_="skip"),
            header,
            toc,
            tag(
                "main",
                *(
                    tag("section", tag("h2", heading), content, id=sid, aria_label=heading)
                    for sid, heading, content in sections
                ),
            ),
            tag("footer", *(tag("p", line) for line in footer)),
        ]
    )
    head = join(
        [
            Html('<meta charset="utf-8">'),
            tag("meta", http_equiv="Content-Security-Policy", content=csp),
            tag("meta", name="viewport", content="width=device-width, initial-scale=1"),
            tag("meta", name="referrer", content="no-referrer"),
            tag("meta", name="generator", content=f"phonehome {__version__}"),
            tag("link", rel="icon", href="data:,"),
            tag("title", title),
            Html(f"<style>{style}</style>"),
        ]
    )
    return (
        f'<!DOCTYPE html>\n<html lang="en" dir="ltr">\n<head>\n{head}\n</head>\n'
        f"<body>\n{body}\n<script>{script}</script>\n</body>\n</html>\n"
    )


def _footer(engine: str, redacted: bool) -> list[str]:
    lines = [
        f"Generated by phonehome {__version__}" + (f" (matching engine: {engine})." if engine else "."),
        "Countries are located offline from the destination address. " + GEO_ATTRIBUTION,
        MAP_ATTRIBUTION,
    ]
    if redacted:
        lines.insert(1, "Identifier values are masked: only their first and last two characters are shown.")
    return lines


def _verdict_block(sentence: Html, clean: bool) -> Html:
    return tag("p", sentence, class_="verdict clean" if clean else "verdict", role="status")


def render(result: AuditResult, redact: bool = False) -> str:
    """The audit as one self-contained HTML document."""
    findings = list(result.findings)
    view = View(result.profile.identifiers, findings, redact)
    violations = [f for f in findings if f.verdict == "violation"]
    device = view.text(result.profile.name)
    sentence = result.verdict or default_verdict(findings)
    notes: list[Child] = []
    if result.incomplete:
        notes.append(
            tag("p", "⚠ The audit was interrupted: this report covers what was read.", class_="alert")
        )
    for error in result.errors:
        notes.append(tag("p", "⚠ ", view.cap(error), class_="alert"))
    if redact:
        notes.append(tag("p", "Identifier values are masked in this report.", class_="note"))
    header = tag(
        "header",
        tag("p", "phonehome audit", class_="kicker"),
        tag("h1", "What ", view.cap(device), " told the world"),
        _verdict_block(view.cap(sentence), clean=not violations),
        stats(
            [
                ("findings", len(findings)),
                ("violations", len(violations)),
                ("identifiers", len({f.identifier for f in findings})),
                ("destinations", len({destination(f) for f in findings})),
                ("countries", len({f.country for f in findings if f.country})),
                ("in cleartext", sum(1 for f in findings if not f.encrypted)),
            ]
        ),
        *notes,
        class_="top",
    )
    sections: list[tuple[str, str, Html]] = [
        (
            "what",
            "What left the phone",
            summary_by_category(findings, view) if findings else tag("p", "Nothing."),
        ),
        ("where", "Where it went", destinations(findings, view) if findings else tag("p", "Nowhere.")),
        ("map", "Countries", map_section(findings, view)),
        ("flow", "From data to organisation to country", flow_diagram(findings, view)),
        ("timeline", "Timeline", timeline(findings, view)),
        ("evidence", "Evidence", evidence_table(findings, view)),
        ("inputs", "Inputs and warnings", inputs_section(result, view)),
    ]
    title = f"phonehome audit: {flat(device)}"
    return page(title, header, sections, _footer(result.engine, redact))


# --- the diff report -----------------------------------------------------------------------------


def _change_rows(changes: Sequence[Change], view: View) -> list[Html]:
    rows = []
    for c in sorted(changes, key=lambda c: (category_rank(c.category), c.identifier, c.host or "")):
        rows.append(
            tag(
                "tr",
                tag(
                    "th",
                    view.label(c.identifier),
                    tag("span", c.category, class_="sub"),
                    scope="row",
                    data_label="identifier",
                ),
                td(
                    "destination",
                    view.cap(c.host or UNKNOWN),
                    tag(
                        "span",
                        f"{country_name(c.country)} ({c.country})" if c.country else "country unknown",
                        class_="sub",
                    ),
                ),
                td(
                    "before",
                    verdict_mark(c.verdict_before),
                    tag("span", plural(len(c.before), "finding"), class_="sub") if c.before else None,
                ),
                td(
                    "after",
                    verdict_mark(c.verdict_after),
                    tag("span", plural(len(c.after), "finding"), class_="sub") if c.after else None,
                ),
            )
        )
    return rows


_DIFF_GROUPS = (
    ("stopped", "Stopped", "sent before, not after"),
    ("started", "Started", "sent after, not before"),
    ("persisted", "Persisted", "sent in both"),
)


def render_diff(diff: DiffResult, redact: bool = False, profile: Profile | None = None) -> str:
    """Two audits compared: what stopped, started and persisted, side by side.

    Redaction masks every matched span of either side wherever it appears; with the ``profile``
    it also masks every other form of every profile value.
    """
    findings = [*diff.before.findings, *diff.after.findings]
    view = View(profile.identifiers if profile else (), findings, redact)
    groups = {name: getattr(diff, name) for name, _, _ in _DIFF_GROUPS}
    columns = []
    for name, heading, meaning in _DIFF_GROUPS:
        changes: Sequence[Change] = groups[name]
        columns.append(
            tag(
                "section",
                tag("h2", f"{heading} ({len(changes)})"),
                tag("p", meaning, class_="note"),
                table(
                    ["identifier", "destination", "before", "after"], _change_rows(changes, view), cls="cards"
                )
                if changes
                else tag("p", "None.", class_="note"),
                aria_label=heading,
                id=f"{name}-list",
            )
        )
    header = tag(
        "header",
        tag("p", "phonehome comparison", class_="kicker"),
        tag("h1", view.cap(diff.before.label), " → ", view.cap(diff.after.label)),
        _side_verdict("Before", diff.before, view),
        _side_verdict("After", diff.after, view),
        stats([(heading.lower(), len(groups[name])) for name, heading, _ in _DIFF_GROUPS]),
        tag("p", "Identifier values are masked in this report.", class_="note") if redact else None,
        class_="top",
    )
    sections: list[tuple[str, str, Html]] = [
        ("changes", "Changes side by side", tag("div", *columns, class_="cols")),
        ("map", "Countries", _diff_map(diff, view)),
    ]
    for name, heading, _ in _DIFF_GROUPS:
        changes = groups[name]
        side = [f for c in changes for f in (c.before if name == "stopped" else c.after)]
        if side:
            label = "before" if name == "stopped" else "after"
            sections.append(
                (
                    f"evidence-{name}",
                    f"Evidence: {heading.lower()} ({label})",
                    evidence_table(side, view, id_=f"evidence-{name}-table", prefix=name[:2]),
                )
            )
    title = f"phonehome comparison: {view.attr(diff.before.label)} → {view.attr(diff.after.label)}"
    return page(title, header, sections, _footer("", redact), skip=("changes", "Skip to the changes"))


def _side_verdict(label: str, side: Side, view: View) -> Html:
    sentence = side.verdict or default_verdict(side.findings)
    clean = not any(f.verdict == "violation" for f in side.findings)
    return tag(
        "div",
        tag("p", tag("strong", label), " (", view.cap(side.label), "):", class_="note"),
        _verdict_block(view.cap(sentence), clean),
    )


def _diff_map(diff: DiffResult, view: View) -> Html:
    status: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for name, _, _ in _DIFF_GROUPS:
        for c in getattr(diff, name):
            if c.country:
                status[c.country.upper()][name].add(view.attr(c.identifier))
    if not status:
        return tag("p", "No located destination on either side.", class_="note")
    marks = {}
    rows = []
    for code, by in sorted(status.items()):
        cls = next(n for n in ("started", "persisted", "stopped") if by.get(n))
        label = " ".join(
            f"{sym}{len(by[n])}"
            for n, sym in (("started", "+"), ("persisted", "="), ("stopped", "−"))
            if by.get(n)
        )
        tip = f"{country_name(code)}: " + "; ".join(f"{n}: {', '.join(sorted(by[n]))}" for n in by)
        marks[code] = (cls, f"{code} {label}", tip)
        rows.append(
            tag(
                "tr",
                tag("th", f"{country_name(code)} ({code})", scope="row", data_label="country"),
                *(td(n, ", ".join(sorted(by.get(n, ()))) or "—") for n, _, _ in _DIFF_GROUPS),
            )
        )
    legend = tag(
        "ul",
        tag("li", tag("span", class_="sw started"), "a leak started (+)"),
        tag("li", tag("span", class_="sw persisted"), "leaks persisted (=)"),
        tag("li", tag("span", class_="sw stopped"), "leaks stopped (−), none started"),
        class_="legend",
    )
    return tag(
        "div",
        tag("figure", world_map(marks, "World map of where leaks started, persisted or stopped"), legend),
        table(
            ["country", "stopped", "started", "persisted"],
            rows,
            caption="Identifiers by country and change.",
            cls="cards",
        ),
        class_="map-wrap",
    )
