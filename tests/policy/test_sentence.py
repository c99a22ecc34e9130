"""The run's verdict in plain words."""

from __future__ import annotations

from factories import finding
from phonehome.policy import NOTHING, facets, judge_all, load_policy, sentence, sentence_of


def test_no_findings() -> None:
    assert sentence([], None) == NOTHING == "Nothing you declared left the phone."


def test_violations_without_consent_name_owner_host_country_and_transport() -> None:
    found = judge_all(
        None,
        [
            finding(identifier="phone", category="subscriber", owner="Xiaomi"),
            finding(identifier="imei", owner="Xiaomi"),
            finding(identifier="imei", owner="Xiaomi", encoding="md5"),
        ],
    )
    assert sentence(found, None) == (
        "Sent your IMEI and your phone number in clear text to Xiaomi (api.account.xiaomi.com) in China "
        "without consent."
    )


def test_only_violations_are_told_and_against_a_policy() -> None:
    policy = load_policy("consented-cloud")
    found = judge_all(
        policy,
        [
            finding(identifier="imei", owner="Xiaomi", role="vendor", encrypted=True, country="SG"),
            finding(
                identifier="contact.phone",
                category="contacts",
                owner="Xiaomi",
                role="vendor",
                encrypted=True,
                country="SG",
            ),
            finding(identifier="message.peer", category="messages", host="t.example", country=None),
        ],
    )
    assert sentence(found, policy) == (
        "Sent a contact's phone number encrypted to Xiaomi (api.account.xiaomi.com) in Singapore and "
        "the number of someone who texted you in clear text to t.example against your policy."
    )


def test_all_allowed() -> None:
    policy = load_policy("residency:IN")
    found = judge_all(
        policy, [finding(identifier="loyalty_id", country="IN", encrypted=True, host="x.example.in")]
    )
    assert (
        sentence(found, policy)
        == "Sent your loyalty id encrypted to x.example.in in India, as your policy allows."
    )


def test_many_destinations_are_counted_not_named() -> None:
    found = judge_all(None, [finding(host=f"h{i}.example", country="US") for i in range(5)])
    assert sentence(found, None).endswith(" and data to 2 more destinations without consent.")


def test_the_counts_of_findings_parts_word_the_sentence_of_the_whole() -> None:
    # Destinations are named most findings first: h2 (three), then h1 (two), then h0 (one).
    found = judge_all(None, [finding(host=f"h{i}.example", country="US") for i in (0, 1, 2, 1, 2, 2)])
    first, second = facets(found[:3]), facets(found[3:])
    assert first + second == facets(found)
    assert (
        sentence_of(first + second, None)
        == sentence(found, None)
        == (
            "Sent your IMEI in clear text to h2.example in the United States, your IMEI in clear text to "
            "h1.example in the United States and your IMEI in clear text to h0.example in the United "
            "States without consent."
        )
    )
    # Counts of none (as Counter.subtract leaves them) are no findings.
    assert sentence_of(first - first, None) == sentence_of(dict.fromkeys(first, 0), None) == NOTHING


def test_countries_named_with_the_where_english_says_so() -> None:
    def said(country: str) -> str:
        return sentence(judge_all(None, [finding(host="x.example", country=country)]), None)

    assert said("NL").endswith(" to x.example in the Netherlands without consent.")
    assert said("CD").endswith(" in the Democratic Republic Of Congo without consent.")
    assert said("IN").endswith(" to x.example in India without consent.")
