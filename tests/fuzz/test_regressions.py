"""Inputs the fuzzers (``fuzz/run.py``) found to crash or hang a parser, each kept as a test.

Every test feeds the exact kind of input that failed to the parser's public interface, under a
time bound, and checks the rule the fuzzers enforce: a result or an InputError, nothing else.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest

from phonehome.errors import InputError
from phonehome.profile import parse_profile
from phonehome.sources.har import parse_har

TIME_BOUND = 5  # seconds; each of these inputs took minutes, or forever, before its fix


class Hang(Exception):
    pass


def _alarm(_signum: int, _frame: FrameType | None) -> None:
    raise Hang(f"over {TIME_BOUND} s")


@pytest.fixture(autouse=True)
def time_bound() -> Iterator[None]:
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(TIME_BOUND)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_har_cut_inside_a_string_of_escaped_quotes() -> None:
    # har: a HAR truncated inside a long string full of \" (a JSON body held as text). The nesting
    # check's string pattern, failing on the unterminated string, restarted at every quote after
    # it: quadratic, 146 s for these 220 kB.
    data = b'{"log": {"entries": [{"text": "' + b'{\\"k\\": 1} ' * 20000
    with pytest.raises(InputError, match="not valid JSON: Unterminated string"):
        list(parse_har(data, "cut.har"))


def test_har_string_ending_in_a_lone_backslash() -> None:
    data = b'{"log": {"entries": [{"text": "' + b'\\"x' * 20000 + b"\\"
    with pytest.raises(InputError, match="not valid JSON"):
        list(parse_har(data, "cut.har"))


DEEP_TOML = [
    "[identifiers]\nimei = " + "[" * 500 + "]" * 500 + "\n",
    "[identifiers]\nimei = " + "{a = " * 500 + "}" * 500 + "\n",
]


@pytest.mark.parametrize("text", DEEP_TOML, ids=["arrays", "inline-tables"])
def test_profile_nested_too_deeply(text: str) -> None:
    # profile: tomllib recursed once per level and raised RecursionError past ~300 levels.
    with pytest.raises(InputError, match="nested too deeply") as caught:
        parse_profile(text, "deep.toml")
    assert caught.value.source == "deep.toml"


@pytest.mark.parametrize("text", DEEP_TOML, ids=["arrays", "inline-tables"])
def test_policy_nested_too_deeply(text: str) -> None:
    from phonehome.policy.model import parse_policy

    with pytest.raises(InputError, match="nested too deeply"):
        parse_policy(text.replace("[identifiers]", "[policy]"), "deep-policy.toml")


def test_fleet_device_map_nested_too_deeply(tmp_path: Path) -> None:
    from phonehome.fleet import load_device_map

    path = tmp_path / "devices.toml"
    path.write_text('[devices."*"]\nprofile = ' + "[" * 500 + "]" * 500 + "\n", encoding="utf-8")
    with pytest.raises(InputError, match="nested too deeply"):
        load_device_map(path)


def test_diff_side_nested_too_deeply_is_not_taken_for_findings(tmp_path: Path) -> None:
    # diff: a findings file nested past the JSON parser's recursion limit raised RecursionError;
    # it is now read as a capture, which refuses it with an InputError.
    from phonehome.diff import load_side
    from phonehome.profile import Profile

    path = tmp_path / "findings.json"
    path.write_text('{"schema": ' + "[" * 100_000 + "]" * 100_000 + "}", encoding="utf-8")
    profile = Profile(name="p", source="p.toml", region=None, identifiers=())

    def no_store() -> object:
        raise AssertionError("no stored run is named")

    with pytest.raises(InputError):
        load_side(str(path), profile=lambda: profile, policy=None, store=no_store)  # type: ignore[arg-type]


def test_connect_inside_connect_in_one_segment() -> None:
    # flows: each CONNECT handed the rest of the segment to a new tunnel one call deeper, so one
    # 60 kB segment of nothing but CONNECT requests raised RecursionError.
    from phonehome.model import Exchange, Notice
    from phonehome.protocols.flows import ACK, MAX_TUNNELS, SYN, FlowTable

    phone, server = bytes([10, 0, 0, 2]), bytes([93, 184, 216, 34])
    segment = b"CONNECT a:1 HTTP/1.1\r\n\r\n" * 2500 + b"GET /?imei=865123456789019 HTTP/1.1\r\n\r\n"
    table = FlowTable("nested.pcap")
    table.packet(0.0, 6, phone, server, 40000, 80, SYN, 1000, b"")
    table.packet(1.0, 6, phone, server, 40000, 80, ACK, 1001, segment)
    table.finish()
    events = table.drain()
    notices = [e.message for e in events if isinstance(e, Notice)]
    assert notices == [f"CONNECT tunnels nested over {MAX_TUNNELS} deep; the rest read as raw bytes"]
    exchanges = [e for e in events if isinstance(e, Exchange)]
    assert [e.method for e in exchanges[: MAX_TUNNELS + 1]] == ["CONNECT"] * (MAX_TUNNELS + 1)
    # The rest is still scanned, as raw bytes: the request at its end is in them.
    assert exchanges[-1].protocol == "raw"
    assert b"imei=865123456789019" in b"".join(p.data for e in exchanges[MAX_TUNNELS + 1 :] for p in e.parts)


def test_contacts_file_with_a_utf16_mark_and_odd_bytes(tmp_path: Path) -> None:
    # contacts (found by the fuzzer): a UTF-16 byte-order mark followed by bytes that are not
    # UTF-16 raised UnicodeDecodeError. The exact crashing input:
    (tmp_path / "contacts").write_bytes(bytes.fromhex("fffe0300ff"))
    profile = '[device]\nregion = "IN"\ncontacts_file = "contacts"\n'
    with pytest.raises(InputError, match="marked as UTF-16 is not UTF-16 text") as caught:
        parse_profile(profile, "phone.toml", tmp_path)
    assert caught.value.source == str(tmp_path / "contacts")
    assert caught.value.offset == 4
