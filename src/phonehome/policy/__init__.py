"""Policy and verdicts: what the owner agreed to, and whether each finding and the run kept to it.

:func:`load_policy` reads ``--policy`` (a TOML file or a bundled preset) once, at start;
:func:`judge` gives a finding its verdict and rule; :func:`sentence` words the run's verdict
(:func:`sentence_of` from the findings' :func:`facets`).
"""

from __future__ import annotations

from phonehome.policy.model import CATEGORIES, PRESETS, ROLES, Match, Policy, Rule, load_policy, parse_policy
from phonehome.policy.rules import (
    ALLOWED,
    NO_POLICY,
    VIOLATION,
    decide,
    fixed_verdict,
    judge,
    judge_all,
    matches,
)
from phonehome.policy.sentence import NOTHING, Facet, facets, sentence, sentence_of

__all__ = [
    "ALLOWED",
    "CATEGORIES",
    "NOTHING",
    "NO_POLICY",
    "PRESETS",
    "ROLES",
    "VIOLATION",
    "Facet",
    "Match",
    "Policy",
    "Rule",
    "decide",
    "facets",
    "fixed_verdict",
    "judge",
    "judge_all",
    "load_policy",
    "matches",
    "parse_policy",
    "sentence",
    "sentence_of",
]
