"""PII detectors: what they find, what they must not find, and how overlaps resolve."""

from __future__ import annotations

import ipaddress
import string

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from context_engine.privacy.detectors import (
    IBAN_LENGTHS,
    EntityType,
    PiiMatch,
    detect,
    find_candidates,
    iban_valid,
    luhn_valid,
    resolve_overlaps,
)


def found(text: str) -> list[tuple[EntityType, str]]:
    return [(m.entity, m.value) for m in detect(text)]


# --- positives ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("write to john.doe+tag@example.co.uk today", "john.doe+tag@example.co.uk"),
        ("<a.b@sub-domain.example.org>.", "a.b@sub-domain.example.org"),
        ("mailto:X_Y%z@EXAMPLE.COM", "X_Y%z@EXAMPLE.COM"),
    ],
)
def test_emails(text: str, value: str) -> None:
    assert found(text) == [(EntityType.EMAIL, value)]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("call +44 20 7946 0958.", "+44 20 7946 0958"),
        ("call +1 (555) 123-4567 now", "+1 (555) 123-4567"),
        ("mobile +4915112345678", "+4915112345678"),
        ("office +49 (0)30 1234567", "+49 (0)30 1234567"),
        ("+33 1 23 45 67 89", "+33 1 23 45 67 89"),
        ("+1-800-555-0199", "+1-800-555-0199"),
        ("US (555) 123-4567", "(555) 123-4567"),
        ("US 555-123-4567", "555-123-4567"),
        ("US 555.123.4567", "555.123.4567"),
        ("toll free 1-800-555-0199", "1-800-555-0199"),
        ("London 020 7946 0958", "020 7946 0958"),
        ("Paris 01 23 45 67 89", "01 23 45 67 89"),
        ("Berlin 030 1234567", "030 1234567"),
        ("NL 06-12345678", "06-12345678"),
        ("Berlin (030) 1234567", "(030) 1234567"),
    ],
)
def test_phones(text: str, value: str) -> None:
    assert found(text) == [(EntityType.PHONE, value)]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("card 4111 1111 1111 1111 exp 12/25", "4111 1111 1111 1111"),
        ("4111-1111-1111-1111", "4111-1111-1111-1111"),
        ("amex 378282246310005.", "378282246310005"),
        ("amex 3782 822463 10005", "3782 822463 10005"),
        ("mc 5555555555554444", "5555555555554444"),
        # a CVV or an order number in the same run of digit groups does not hide the card
        ("4111 1111 1111 1111 123", "4111 1111 1111 1111"),
        ("order 12 5555 5555 5555 4444", "5555 5555 5555 4444"),
    ],
)
def test_cards(text: str, value: str) -> None:
    assert found(text) == [(EntityType.PAYMENT_CARD, value)]


VALID_IBANS = [
    "DE89 3704 0044 0532 0130 00",
    "GB82 WEST 1234 5698 7654 32",
    "FR14 2004 1010 0505 0001 3M02 606",
    "NL91 ABNA 0417 1643 00",
    "BE68 5390 0754 7034",
    "CH93 0076 2011 6238 5295 7",
    "NO93 8601 1117 947",
    "ES91 2100 0418 4502 0005 1332",
    "IT60 X054 2811 1010 0000 0123 456",
]


@pytest.mark.parametrize("iban", VALID_IBANS)
def test_ibans_with_and_without_spaces(iban: str) -> None:
    compact = iban.replace(" ", "")
    assert iban_valid(iban) and iban_valid(compact)
    assert found(f"pay to {iban} please") == [(EntityType.IBAN, iban)]
    assert found(f"pay to {compact}.") == [(EntityType.IBAN, compact)]
    assert found(f"iban:{compact.lower()}") == [(EntityType.IBAN, compact.lower())]


def test_iban_stops_at_its_country_length() -> None:
    # The currency code after the IBAN is not swallowed into it.
    assert found("DE89 3704 0044 0532 0130 00 EUR") == [(EntityType.IBAN, "DE89 3704 0044 0532 0130 00")]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("from 192.168.1.1, then", "192.168.1.1"),
        ("host 8.8.8.8.", "8.8.8.8"),
        ("loopback ::1 and", "::1"),
        ("v6 2001:db8::ff00:42:8329.", "2001:db8::ff00:42:8329"),
        ("mapped ::ffff:192.0.2.1 here", "::ffff:192.0.2.1"),
        ("url http://[fe80::1]:8080/", "fe80::1"),
        ("full 2001:0db8:85a3:0000:0000:8a2e:0370:7334", "2001:0db8:85a3:0000:0000:8a2e:0370:7334"),
    ],
)
def test_ip_addresses(text: str, value: str) -> None:
    assert found(text) == [(EntityType.IP_ADDRESS, value)]


# --- negatives ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "in 2023 2024 2025 we grew",
        "order id 123456789012 shipped",
        "date 2024-01-15 and 15.01.2024 and 01.05.2024 10:30",
        "meeting at 12:30:45",
        "ratio 3/4, version 1.2.3.4.5, build 10.0.0.256",
        "4111 1111 1111 1112",  # Luhn fails
        "0000 0000 0000 0000",  # Luhn passes, but no issuer starts with 0
        "1 2 3 4 5 6 7 8 9 1 2 3 0",  # a list of numbers, not a card
        "DE89 3704 0044 0532 0130 01",  # mod-97 fails
        "XX89 3704 0044 0532 0130 00",  # unknown country
        "std::vector<int> and Foo::Bar",
        "MAC 00:1A:2B:3C:4D:5E",
        "user@localhost has no TLD",
        "a..b@example.com",
        "pi is 3.14159265358979",
        "+12 is not a phone",
        "call 555-1234",  # too few digits for anything we can tell from an id
    ],
)
def test_no_false_positives(text: str) -> None:
    assert found(text) == []


def test_unicode_digits_are_not_numbers() -> None:
    # Arabic-Indic digits: \d would match them, but Luhn and mod-97 are defined on ASCII digits.
    assert found("٤١١١ ١١١١ ١١١١ ١١١١") == []


# --- algorithms ---------------------------------------------------------------------------


def luhn_complete(payload: str) -> str:
    """Append the Luhn check digit."""
    for check in string.digits:
        if luhn_valid(payload + check):
            return payload + check
    raise AssertionError("unreachable")


@pytest.mark.parametrize("digits", ["4111111111111111", "79927398713", "378282246310005", "0"])
def test_luhn_known_valid(digits: str) -> None:
    assert luhn_valid(digits)


@pytest.mark.parametrize("digits", ["4111111111111112", "79927398710", "", "12a4"])
def test_luhn_known_invalid(digits: str) -> None:
    assert not luhn_valid(digits)


@given(
    payload=st.text(alphabet=string.digits, min_size=12, max_size=18),
    first=st.sampled_from("23456"),
    pos=st.integers(min_value=0, max_value=18),
    delta=st.integers(min_value=1, max_value=9),
)
def test_card_found_and_single_digit_errors_rejected(payload: str, first: str, pos: int, delta: int) -> None:
    number = luhn_complete(first + payload[:-1])
    assume(len(set(number)) > 1)
    grouped = " ".join(number[i : i + 4] for i in range(0, len(number), 4))
    if len(grouped.rsplit(" ", 1)[-1]) < 3:  # printed cards never end in a 1-2 digit group
        grouped = number
    assert found(f"my card: {grouped}.") == [(EntityType.PAYMENT_CARD, grouped)]
    # Luhn catches every single-digit substitution.
    pos %= len(number)
    wrong = number[:pos] + str((int(number[pos]) + delta) % 10) + number[pos + 1 :]
    assert not luhn_valid(wrong)
    assert [m for m in detect(wrong) if m.entity is EntityType.PAYMENT_CARD] == []


@given(iban=st.sampled_from(VALID_IBANS), data=st.data())
def test_iban_single_digit_substitution_is_rejected(iban: str, data: st.DataObject) -> None:
    compact = iban.replace(" ", "")
    digit_positions = [i for i, ch in enumerate(compact) if ch.isdigit()]
    pos = data.draw(st.sampled_from(digit_positions))
    new = data.draw(st.sampled_from([d for d in string.digits if d != compact[pos]]))
    tampered = compact[:pos] + new + compact[pos + 1 :]
    assert not iban_valid(tampered)
    assert found(tampered) == [] or all(e is not EntityType.IBAN for e, _ in found(tampered))


def test_iban_length_table_is_sane() -> None:
    assert all(len(cc) == 2 and cc.isupper() and 15 <= n <= 34 for cc, n in IBAN_LENGTHS.items())


# --- properties ---------------------------------------------------------------------------

_local = st.text(alphabet=string.ascii_lowercase + string.digits + "_+-", min_size=1, max_size=20)
_label = st.text(alphabet=string.ascii_lowercase + string.digits, min_size=1, max_size=12)


@given(
    local=_local,
    labels=st.lists(_label, min_size=1, max_size=3),
    tld=st.sampled_from(["com", "io", "museum"]),
)
def test_generated_emails_are_found_exactly(local: str, labels: list[str], tld: str) -> None:
    email = f"{local}@{'.'.join(labels)}.{tld}"
    assert found(f"contact: {email}, thanks") == [(EntityType.EMAIL, email)]


@given(addr=st.ip_addresses())
def test_generated_ip_addresses_are_found(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    text = str(addr)
    assume(text != "::")  # the unspecified address is too ambiguous in prose to report
    matches = detect(f"client {text} connected")
    assert [(m.entity, m.value) for m in matches] == [(EntityType.IP_ADDRESS, text)]


@given(st.text(alphabet=string.ascii_letters + " ,;!?()'\"\n-", max_size=300))
def test_text_without_digits_at_signs_or_colons_has_no_pii(text: str) -> None:
    assert detect(text) == []


@given(st.text(max_size=400))
def test_detect_never_raises_and_returns_ordered_disjoint_spans(text: str) -> None:
    matches = detect(text)
    for m in matches:
        assert text[m.start : m.end] == m.value
    for a, b in zip(matches, matches[1:], strict=False):
        assert a.end <= b.start


_spans = st.builds(
    lambda entity, start, length: PiiMatch(entity, start, start + length, "x" * length),
    st.sampled_from(list(EntityType)),
    st.integers(min_value=0, max_value=60),
    st.integers(min_value=1, max_value=20),
)


@given(st.lists(_spans, max_size=25))
def test_overlap_resolution_is_disjoint_maximal_and_order_independent(cands: list[PiiMatch]) -> None:
    chosen = resolve_overlaps(cands)
    for a, b in zip(chosen, chosen[1:], strict=False):
        assert a.end <= b.start
    # Every dropped candidate lost to an overlapping winner that is at least as long.
    for cand in cands:
        if cand in chosen:
            continue
        assert any(c.start < cand.end and cand.start < c.end and c.length >= cand.length for c in chosen)
    assert resolve_overlaps(list(reversed(cands))) == chosen


# --- overlaps in real text ----------------------------------------------------------------


def test_email_wins_over_phone_inside_it() -> None:
    text = "555-123-4567@example.com"
    assert {m.entity for m in find_candidates(text)} >= {EntityType.EMAIL, EntityType.PHONE}
    assert found(text) == [(EntityType.EMAIL, text)]


def test_iban_wins_over_digits_inside_it() -> None:
    assert found("NL91ABNA0417164300") == [(EntityType.IBAN, "NL91ABNA0417164300")]


def test_ipv6_wins_over_embedded_ipv4() -> None:
    assert found("::ffff:10.1.2.3") == [(EntityType.IP_ADDRESS, "::ffff:10.1.2.3")]


def test_equal_spans_prefer_the_more_specific_type() -> None:
    phone = PiiMatch(EntityType.PHONE, 0, 16, "x" * 16)
    card = PiiMatch(EntityType.PAYMENT_CARD, 0, 16, "x" * 16)
    assert resolve_overlaps([phone, card]) == [card]


def test_match_repr_hides_the_value() -> None:
    (m,) = detect("mail secret.person@example.com")
    assert "secret.person" not in repr(m)


def test_several_entities_in_one_text() -> None:
    text = "Mail a@b.io or call +44 20 7946 0958 from 10.0.0.1; card 4111111111111111; IBAN BE68539007547034"
    assert found(text) == [
        (EntityType.EMAIL, "a@b.io"),
        (EntityType.PHONE, "+44 20 7946 0958"),
        (EntityType.IP_ADDRESS, "10.0.0.1"),
        (EntityType.PAYMENT_CARD, "4111111111111111"),
        (EntityType.IBAN, "BE68539007547034"),
    ]
