"""The HTML report, read back with the standard library's HTML parser (the browser tests are apart)."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import html
import re
import unicodedata
from html.parser import HTMLParser
from pathlib import Path

import pytest

from phonehome.audit import AuditResult, audit
from phonehome.cli import main
from phonehome.commands import Env, ExitStatus
from phonehome.detect.needles import NeedleSet
from phonehome.detect.scan import escape_bytes
from phonehome.diff import DiffResult, Side
from phonehome.profile import Profile, load_profile
from phonehome.report.html import country_name, render, render_diff, visible
from phonehome.report.redact import Redactor, mask, split_evidence
from report.report_inputs import (
    CONTACT,
    DEVICE_NAME,
    HOSTILE_MARKERS,
    IMEI,
    SCRIPT,
    demo,
    demo_diff,
    hostile_har,
    hostile_profile,
)


class Page(HTMLParser):
    """Elements, attributes, text and raw script and style text of a document, as a tokenizer sees them."""

    def __init__(self, document: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.raw: dict[str, list[str]] = {"script": [], "style": []}
        self._in: str | None = None
        self.feed(document)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))
        if tag in self.raw:
            self._in = tag

    def handle_endtag(self, tag: str) -> None:
        if tag == self._in:
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._in:
            self.raw[self._in].append(data)
        else:
            self.text.append(data)

    def count(self, tag: str, **attrs: str) -> int:
        return sum(1 for t, a in self.elements if t == tag and all(a.get(k) == v for k, v in attrs.items()))

    @property
    def all_text(self) -> str:
        return "".join(self.text)


def csp_of(page: Page) -> str:
    policy = next(a["content"] for t, a in page.elements if t == "meta" and a.get("http-equiv"))
    assert policy is not None
    return policy


def sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def assert_inert(document: str) -> Page:
    """No markup of the page's own beyond one style and one script, no handler, nothing to fetch."""
    page = Page(document)
    assert page.count("script") == 1 and page.count("style") == 1
    assert page.count("img") == page.count("iframe") == page.count("object") == page.count("embed") == 0
    for tag, attrs in page.elements:
        assert not [name for name in attrs if name.startswith("on")], (tag, attrs)
        for name in ("href", "src", "action", "formaction", "xlink:href"):
            value = attrs.get(name)
            assert value is None or value.startswith(("#", "data:")), (tag, attrs)
    policy = csp_of(page)
    # The policy allows exactly the inline style and script there are, by hash, and no other source.
    assert f"style-src {sha256(page.raw['style'][0])};" in policy
    assert f"script-src {sha256(page.raw['script'][0])};" in policy
    assert "default-src 'none'" in policy and "unsafe" not in policy and "http" not in policy
    # Nothing a browser would run or reorder survives as a raw character.
    odd = {c for c in document if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn") and c != "\n"}
    assert odd == set(), sorted(f"U+{ord(c):04X}" for c in odd)
    document.encode("utf-8")
    return page


def encoded_forms(profile: Profile) -> set[str]:
    """Every form of every profile value the detector searches for, as text could show it."""
    needles = NeedleSet(profile.identifiers)
    forms = set()
    for needle in needles.needles:
        forms.add(needle.pattern.decode("utf-8", "surrogatepass"))
        forms.add(escape_bytes(needle.pattern))
    for digest in needles.digests:
        for text in (
            digest.hex(),
            digest.hex().upper(),
            base64.b64encode(digest).decode(),
            base64.urlsafe_b64encode(digest).decode(),
            escape_bytes(digest),
        ):
            forms.add(text)
            forms.add(text.rstrip("="))
    return forms


def leaked(document: str, profile: Profile) -> set[str]:
    plain = html.unescape(document)
    return {form for form in encoded_forms(profile) if form in document or form in plain}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> AuditResult:
    folder = tmp_path_factory.mktemp("hostile")
    (folder / "hostile.har").write_bytes(hostile_har())
    (folder / "phone.toml").write_text(hostile_profile(), encoding="utf-8")
    return audit([str(folder / "hostile.har")], load_profile(folder / "phone.toml"))


# --- the audit report ----------------------------------------------------------------------------


def test_demo_report_holds_every_view() -> None:
    _, results = demo()
    result = results["factory"]
    document = render(result)
    page = assert_inert(document)
    text = page.all_text
    assert result.verdict and result.verdict in text
    assert page.count("svg") == 3  # map, flow, timeline
    # Every finding has its evidence row, its match marked, its request line and encoding chain.
    assert page.count("mark") == len(result.findings)
    assert len([t for t, a in page.elements if t == "th" and a.get("data-label") == "finding"]) == len(
        result.findings
    )
    for f in result.findings:
        assert split_evidence(f.evidence).match in text
        assert f.url and f.url in text
        assert f.encoding in text
    # The map marks China (the only destination country) with a label and a table row.
    assert page.count("path", **{"class": "land h3"}) == 1
    assert "CN 9" in text and "China (CN)" in text
    # The flow diagram goes from each category through the vendor to the country.
    for label in (
        "device: 4",
        "subscriber: 3",
        "contacts: 1",
        "messages: 1",
        "Xiaomi (vendor): 9",
        "China (CN): 9",
    ):
        assert label in text
    # The timeline marks every finding (violations are circles); close ones share a mark.
    marks = timeline_marks(document)
    assert {shape for shape, _ in marks} == {"circle"}
    assert sum(n for _, n in marks) == len(result.findings)
    # The table of contents points at sections that exist.
    ids = {a.get("id") for _, a in page.elements}
    for _, attrs in page.elements:
        href = attrs.get("href")
        if href and href.startswith("#"):
            assert href[1:] in ids


def test_allowed_findings_read_as_allowed_and_size_stays_small() -> None:
    _, results = demo()
    sizes = {name: len(render(result).encode()) for name, result in results.items()}
    assert all(size < 300_000 for size in sizes.values()), sizes  # the map geometry is about 35 kB
    opted_in = render(results["opted-in"])
    assert "✓ allowed" in opted_in and "✖ violation" not in opted_in
    assert 'class="verdict clean"' in opted_in
    # Allowed findings are drawn as hollow squares on the timeline, not as circles.
    marks = timeline_marks(opted_in)
    assert {shape for shape, _ in marks} == {"rect"}
    assert sum(n for _, n in marks) == len(results["opted-in"].findings)


def timeline_marks(document: str) -> list[tuple[str, int]]:
    """(shape, number of findings its tooltip counts) for each mark on the timeline."""
    timeline = document[document.index('class="timeline"') :]
    marks = re.findall(r'<(circle|rect) [^>]*class="(?:allowed )?k\d"[^>]*><title>([^<]*)</title>', timeline)
    return [(shape, int(tip.split()[0]) if " findings of " in tip else 1) for shape, tip in marks]


def test_no_findings_and_no_verdict_say_so() -> None:
    profile, results = demo()
    empty = AuditResult(profile=profile, inputs=results["factory"].inputs)
    text = Page(render(empty)).all_text
    assert "No declared identifier was found in the traffic." in text
    unjudged = dataclasses.replace(results["factory"], verdict="")
    assert "all counted as violations (no policy given)" in Page(render(unjudged)).all_text


def test_unknown_owner_and_country_render_as_unknown() -> None:
    _, results = demo()
    result = results["factory"]
    blank = [
        dataclasses.replace(f, owner=None, role=None, country=None, domain=None, rule=None)
        for f in result.findings
    ]
    text = assert_inert(render(dataclasses.replace(result, findings=blank))).all_text
    assert "owner unknown" in text and "not located" in text and "country unknown" in text


# --- hostile input -------------------------------------------------------------------------------


def test_hostile_har_is_shown_never_run(hostile: AuditResult) -> None:
    assert {f.identifier for f in hostile.findings} >= {"imei", "phone", "email", "contact.name"}
    page = assert_inert(render(hostile))
    text = page.all_text
    for marker in HOSTILE_MARKERS:
        assert marker in text, marker
    assert html.unescape(page.raw["script"][0]).count("<script") == 0  # capture data never in the script
    title = re.search(r"<title>(.*?)</title>", render(hostile), re.S)
    assert title is not None and html.unescape(title.group(1)) == f"phonehome audit: {DEVICE_NAME}"
    assert "javascript: URL is served on the device" in text  # the skipped entry is reported


def test_visible_marks_what_would_hide_or_reorder_text() -> None:
    def marks(text: str) -> list[str]:
        return [piece for piece, why in visible(text) if why]

    assert marks("plain ascii") == []
    assert marks("Zoë Ŝmith, नमस्ते, 東京") == []  # letters with their marks stay as written
    assert marks("a\u202eb\u2066c") == ["\\u202e", "\\u2066"]  # bidi overrides and isolates
    assert marks("a\u200bb\ufeff\u2060") == ["\\u200b", "\\ufeff", "\\u2060"]  # zero-width
    assert marks("\x00\x1b\x85\x9b\x7f") == ["\\x00", "\\x1b", "\\x85", "\\x9b", "\\x7f"]  # C0, C1, DEL
    assert marks("\ud800x") == ["\\ud800"]  # a lone surrogate
    assert marks("\u0301x") == ["\\u0301"]  # a mark with nothing to sit on
    assert marks("e\u0301\u0302\u0303\u0304") == ["\\u0303", "\\u0304"]  # a stack beyond two
    assert marks("\U000e0041") == ["\\U000e0041"]  # a tag character


# --- redaction -----------------------------------------------------------------------------------


def test_mask_keeps_two_characters_each_side_of_long_values() -> None:
    assert mask(IMEI) == "86•••••••••••19"
    assert mask("airtel") == "••••••"


def test_redacted_demo_reports_hold_no_form_of_any_value() -> None:
    profile, results = demo()
    for result in results.values():
        plain, redacted = render(result), render(result, redact=True)
        assert leaked(plain, profile)  # the check finds values where they are ...
        assert leaked(redacted, profile) == set()  # ... and none after redaction
        assert "86•••••••••••19" in redacted
        assert_inert(redacted)


def test_redacted_hostile_report_holds_no_form_of_any_value(hostile: AuditResult) -> None:
    plain, redacted = render(hostile), render(hostile, redact=True)
    assert leaked(plain, hostile.profile)
    assert leaked(redacted, hostile.profile) == set()
    assert SCRIPT in Page(redacted).all_text  # what is not an identifier is still shown


def test_redacted_diff_holds_no_form_of_any_value() -> None:
    profile, results = demo()
    diff = demo_diff(results)
    assert leaked(render_diff(diff, redact=True, profile=profile), profile) == set()
    # Without the profile, every matched span is still masked wherever it appears.
    spans = {split_evidence(f.evidence).match for f in [*diff.before.findings, *diff.after.findings]}
    document = render_diff(diff, redact=True)
    assert not [s for s in spans if s in document]


def test_redactor_masks_values_split_by_the_evidence_cut_and_inside_escapes() -> None:
    profile, _ = demo()
    redactor = Redactor(profile.identifiers)
    md5 = hashlib.md5(IMEI.encode()).hexdigest()
    # The match, another value in the context, and a digest cut at the end of the excerpt.
    evidence = f"…{IMEI[4:]}&x=\\x00«+919876543210»\\xff&m={md5[:20]}…"
    masked = redactor.evidence(evidence)
    assert masked.startswith("…") and masked.endswith("…") and "&x=" in masked
    assert IMEI[4:] not in masked and md5[:20] not in masked and "9876543210" not in masked
    assert "\\x00" in masked and "\\xff" in masked  # escapes outside values are kept
    # A value written with bytes that evidence escapes is found through the escapes.
    contact = Redactor([*profile.identifiers, *load_profile_text(hostile_profile()).identifiers])
    escaped = escape_bytes(CONTACT.encode())
    assert escaped not in contact.evidence(f"n={escaped}&«{IMEI}»")
    # Text with a digest inside a longer token, base64 of a digest, and the raw digest bytes.
    raw = hashlib.sha256(IMEI.encode()).digest()
    for carrier in (f"id=ab{raw.hex()}cd", "t=" + base64.urlsafe_b64encode(raw).decode().rstrip("=")):
        assert redactor.text(carrier) != carrier
    assert escape_bytes(raw) not in redactor.evidence(f"«{IMEI}»" + escape_bytes(raw))


def load_profile_text(text: str) -> Profile:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "p.toml"
        path.write_text(text, encoding="utf-8")
        return load_profile(path)


# --- the diff report -----------------------------------------------------------------------------


def test_diff_report_shows_changes_side_by_side() -> None:
    _, results = demo()
    diff = demo_diff(results)
    page = assert_inert(render_diff(diff))
    text = page.all_text
    for name, changes in (
        ("stopped", diff.stopped),
        ("started", diff.started),
        ("persisted", diff.persisted),
    ):
        assert changes
        assert f"{name.title()} ({len(changes)})" in text
    assert "tracker.example.net" in text and "United States (US)" in text
    assert diff.before.verdict in text and diff.after.verdict in text
    # Both verdicts, the three columns, a map with each change's country, evidence for each group.
    assert page.count("section", id="stopped-list") == 1 and page.count("section", id="started-list") == 1
    assert "US +1" in text and "CN −2" in text
    assert page.count("table", id="evidence-started-table") == 1


def test_empty_diff() -> None:
    profile, _ = demo()
    empty = DiffResult(Side("a", ()), Side("b", ()))
    text = assert_inert(render_diff(empty, profile=profile)).all_text
    assert "Stopped (0)" in text and "No located destination on either side." in text


def test_country_names_come_from_bundled_tables() -> None:
    assert country_name("CN") == "China" and country_name("SG") == "Singapore"
    assert country_name(None) == "unknown" and country_name("ZZ") == "ZZ"


# --- the command line ----------------------------------------------------------------------------


def test_audit_writes_html_and_redacts(tmp_path: Path) -> None:
    profile, results = demo()
    capture = results["factory"].inputs[0].path
    out = tmp_path / "report.html"
    err = tmp_path / "err"
    with open(err, "w") as stderr, open(tmp_path / "out", "w") as stdout:
        env = Env(stdout=stdout, stderr=stderr, progress=False)
        args = ["audit", capture, "--device", profile.source, "--format", "html", "-o", str(out), "--redact"]
        assert main(args, env) == ExitStatus.LEAKS
        assert main(["audit", capture, "--device", profile.source, "--redact"], env) == ExitStatus.BAD_INPUT
    document = out.read_text(encoding="utf-8")
    assert document.startswith("<!DOCTYPE html>")
    assert leaked(document, profile) == set()
    assert "--redact applies to --format html only" in err.read_text()


def test_every_asset_is_inline() -> None:
    _, results = demo()
    document = render(results["factory"])
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:|//)""", document)
    assert "@import" not in document and "url(" not in document
