"""Judging findings against a policy: every finding is ``allowed`` or a ``violation``, with its rule.

Precedence, first that applies wins:

1. No policy: every finding is a violation (nothing was agreed to).
2. Global rules of ``[policy]``: ``cleartext = false`` makes every finding sent in clear text a
   violation; ``countries`` makes every finding outside those countries (or of unknown country) a
   violation. No allow overrides them.
3. ``[[deny]]`` rules, in file order: the first that matches makes the finding a violation.
4. ``[[allow]]`` rules, in file order: the first that matches makes the finding allowed.
5. Nothing matched: a violation (what is not allowed may not leave).

So a deny beats any allow, adding a deny or a global rule never turns a violation into allowed, and
adding an allow never turns an allowed finding into a violation. Each finding is judged on its own,
so the verdicts do not depend on the order of the findings.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from phonehome.model import Finding
from phonehome.policy.model import Match, Policy, Rule

ALLOWED = "allowed"
VIOLATION = "violation"
NO_POLICY = "no policy: nothing was agreed to, so every leak is a violation"


def matches(match: Match, f: Finding) -> bool:
    """Whether every condition of ``match`` holds for ``f``."""
    if match.categories is not None and f.category not in match.categories:
        return False
    if match.identifiers is not None and f.identifier.lower() not in match.identifiers:
        return False
    if match.owners is not None and (f.owner is None or f.owner.casefold() not in match.owners):
        return False
    if match.roles is not None and f.role not in match.roles:
        return False
    if match.domains is not None and not _in_domains(f, match.domains):
        return False
    if match.countries is not None and f.country not in match.countries:
        return False
    return match.encrypted is None or f.encrypted == match.encrypted


def _in_domains(f: Finding, domains: tuple[str, ...]) -> bool:
    names = [n.lower().rstrip(".") for n in (f.host, f.domain) if n]
    return any(name == d or name.endswith("." + d) for name in names for d in domains)


def decide(policy: Policy | None, f: Finding) -> tuple[str, str]:
    """The verdict on ``f`` and the rule that decided it, in words with file and line."""
    if policy is None:
        return VIOLATION, NO_POLICY
    if not policy.cleartext and not f.encrypted:
        where = policy.where(policy.cleartext_line)
        return VIOLATION, f"cleartext = false ({where}): nothing may leave in clear text"
    if policy.countries is not None and f.country not in policy.countries:
        where = policy.where(policy.countries_line)
        allowed = ", ".join(sorted(policy.countries))
        return VIOLATION, f"countries ({where}): data may only go to {allowed}, not {f.country or 'unknown'}"
    deny = _first(policy.denies, f)
    if deny is not None:
        return VIOLATION, deny.label
    allow = _first(policy.allows, f)
    if allow is not None:
        return ALLOWED, allow.label
    if not policy.allows:
        return VIOLATION, f"no allow rule ({policy.source}): nothing may leave"
    return VIOLATION, f"no allow rule ({policy.source}) covers {f.category} data to {f.host or f.ip}"


def _first(rules: tuple[Rule, ...], f: Finding) -> Rule | None:
    return next((rule for rule in rules if matches(rule.match, f)), None)


def fixed_verdict(policy: Policy | None) -> tuple[str, str] | None:
    """The verdict and rule every finding gets under ``policy`` when they do not depend on the
    finding (no policy at all), so findings can be made with them; None when they do."""
    return (VIOLATION, NO_POLICY) if policy is None else None


def judge(policy: Policy | None, f: Finding) -> Finding:
    verdict, rule = decide(policy, f)
    if f.verdict == verdict and f.rule == rule:
        return f  # made with its verdict already (see fixed_verdict)
    return replace(f, verdict=verdict, rule=rule)


def judge_all(policy: Policy | None, findings: Iterable[Finding]) -> list[Finding]:
    return [judge(policy, f) for f in findings]
