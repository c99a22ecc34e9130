"""The fuzz harnesses themselves: every target runs on its seeds and on mutations of them.

A short, fixed-seed pass of what ``make fuzz`` does for minutes: it keeps the harnesses in step
with the parsers they drive (a renamed method fails here, not in a fuzzing run), and holds every
parser to the rule on a few hundred damaged inputs each.
"""

from __future__ import annotations

import contextlib
import importlib.util
import random
import sys
from pathlib import Path
from types import ModuleType

import pytest

from factories import CORPUS, NO_CORPUS
from phonehome.errors import InputError

FUZZ = Path(__file__).resolve().parents[2] / "fuzz"
MUTATIONS = 60


def _load(name: str, file: str) -> ModuleType:
    if str(FUZZ) not in sys.path:
        sys.path.insert(0, str(FUZZ))
    spec = importlib.util.spec_from_file_location(name, FUZZ / file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


targets = _load("targets", "targets.py")
runner = _load("phonehome_fuzz_run", "run.py")


@pytest.mark.skipif(not CORPUS.is_dir(), reason=NO_CORPUS)
@pytest.mark.parametrize("name", list(targets.TARGETS))
def test_target_holds_on_its_seeds_and_their_mutations(name: str) -> None:
    target = targets.TARGETS[name]
    seeds = list(targets.seeds(target))[:40]
    assert seeds, f"{name} has no seed"
    rng = random.Random(f"phonehome-fuzz:{name}")
    inputs = seeds + [runner._mutate(rng, rng.choice(seeds), seeds, target.max_len) for _ in range(MUTATIONS)]
    for data in inputs:
        with contextlib.suppress(InputError):
            target.run(data)


def test_signature_names_the_failing_place() -> None:
    try:
        targets.fuzz_dns(None)  # not bytes: a TypeError inside the parser, as a bug would raise
    except TypeError as exc:
        sig = runner.signature(exc)
    assert sig["key"].startswith("TypeError at ")
    assert ".py:" in sig["key"]


def test_mutations_change_the_input_and_respect_the_length() -> None:
    rng = random.Random(1)
    data = bytes(range(200))
    out = [runner._mutate(rng, data, [data], 150) for _ in range(50)]
    assert all(len(o) <= 150 for o in out)
    assert len(set(out)) > 40
