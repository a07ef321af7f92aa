"""PII detectors: email, phone, payment card, IBAN, IP address.

Each detector proposes candidate spans with a regular expression and then validates
them (Luhn for cards, ISO 13616 mod-97 plus the country's length for IBANs,
``ipaddress`` for IPs, digit counts and separator rules for phones), so plain numbers,
years and ids are not reported. ``detect`` resolves overlapping candidates
deterministically: the longest span wins, then the more specific entity type
(IBAN > card > email > IP > phone), then the earlier start.

Matches carry the matched value so the policy can mask or hash it; the value is kept
out of ``repr`` so a match that ends up in a log line does not leak it.
"""

from __future__ import annotations

import bisect
import ipaddress
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final


class EntityType(StrEnum):
    EMAIL = "email"
    PHONE = "phone"
    PAYMENT_CARD = "payment_card"
    IBAN = "iban"
    IP_ADDRESS = "ip_address"

    @property
    def label(self) -> str:
        """The short upper-case tag used in redaction and hash tokens, e.g. ``[CARD]``."""
        return _LABELS[self]


_LABELS: Final[dict[EntityType, str]] = {
    EntityType.EMAIL: "EMAIL",
    EntityType.PHONE: "PHONE",
    EntityType.PAYMENT_CARD: "CARD",
    EntityType.IBAN: "IBAN",
    EntityType.IP_ADDRESS: "IP",
}

# Tie-break between candidates of equal length: lower wins. Checksum-validated types come
# first because a random digit string passes mod-97 or Luhn far less often than a phone shape.
SPECIFICITY: Final[dict[EntityType, int]] = {
    EntityType.IBAN: 0,
    EntityType.PAYMENT_CARD: 1,
    EntityType.EMAIL: 2,
    EntityType.IP_ADDRESS: 3,
    EntityType.PHONE: 4,
}


@dataclass(frozen=True, slots=True)
class PiiMatch:
    entity: EntityType
    start: int
    end: int
    value: str = field(repr=False)

    @property
    def length(self) -> int:
        return self.end - self.start


# Numeric patterns use re.ASCII: \d would otherwise match other scripts' digits, which
# neither Luhn, mod-97 nor ipaddress understand.

# --- email -------------------------------------------------------------------------------

_EMAIL = re.compile(
    r"(?<![\w.%+\-])"
    r"[A-Za-z0-9._%+\-]{1,64}"
    r"@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+"
    r"[A-Za-z]{2,63}"
    r"(?![\w\-])"
)


def _find_emails(text: str) -> Iterator[PiiMatch]:
    for m in _EMAIL.finditer(text):
        local = m.group().split("@", 1)[0]
        if local.startswith(".") or local.endswith(".") or ".." in local:
            continue
        yield PiiMatch(EntityType.EMAIL, m.start(), m.end(), m.group())


# --- phone -------------------------------------------------------------------------------

# International: "+" country code, then up to six groups of digits or "(area)", each with an
# optional single separator. Possessive groups keep the scan linear on long digit runs.
_PHONE_INTL = re.compile(r"(?<![\w+])\+\d{1,3}(?:[ .\-]?(?:\(\d{1,4}\)|\d++)){1,6}+(?!\w)", re.ASCII)

# National: North American (area code 2-9, 3-3-4 with one consistent separator or "(area)")
# and trunk-prefix-0 formats (UK, DE, FR, NL, ...) with one consistent separator. A separator
# is required, so plain runs of digits (ids) never match; dates fail the digit count.
_PHONE_NATIONAL = re.compile(
    r"(?<![\w+.\-])"
    r"(?:"
    r"\([2-9]\d{2}\)[ ]?\d{3}[ .\-]\d{4}"
    r"|(?:1[ .\-])?[2-9]\d{2}(?P<s1>[ .\-])\d{3}(?P=s1)\d{4}"
    r"|\(0\d{1,4}\)[ ]?\d{2,8}(?:[ .\-]\d{2,8}){0,5}+"
    r"|0\d{1,4}(?P<s2>[ .\-])\d{2,8}(?:(?P=s2)\d{2,8}){0,5}+"
    r")"
    r"(?!\w)(?![.\-]\d)",
    re.ASCII,
)

_INTL_DIGITS: Final = range(8, 16)  # E.164 allows at most 15 digits
_NATIONAL_DIGITS: Final = range(9, 13)


def _digits(value: str) -> str:
    return "".join(ch for ch in value if ch.isdigit())


def _find_phones(text: str) -> Iterator[PiiMatch]:
    for m in _PHONE_INTL.finditer(text):
        if len(_digits(m.group())) in _INTL_DIGITS:
            yield PiiMatch(EntityType.PHONE, m.start(), m.end(), m.group())
    for m in _PHONE_NATIONAL.finditer(text):
        if len(_digits(m.group())) in _NATIONAL_DIGITS:
            yield PiiMatch(EntityType.PHONE, m.start(), m.end(), m.group())


# --- payment card ------------------------------------------------------------------------

# A run of digit groups separated by single spaces or dashes, starting at the beginning of
# the run (not after a digit+separator, not after "+" which marks a phone number).
_DIGIT_RUN = re.compile(r"(?<![\w+])(?<!\d[ \-])\d++(?:[ \-]\d++)*+", re.ASCII)
_CARD_DIGITS: Final = range(13, 20)
_CARD_MAX_DIGITS: Final = 19
_CARD_GROUP_MIN: Final = 3
_CARD_GROUP_MAX: Final = 6


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check used by payment card numbers."""
    if not digits.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _card_shape_ok(groups: list[str]) -> bool:
    digits = "".join(groups)
    if len(digits) not in _CARD_DIGITS or digits[0] not in "23456":  # ISO 7812: 2-6 are payment
        return False
    if len(set(digits)) == 1:  # 0000 0000 0000 0000 passes Luhn but is no card
        return False
    # Printed cards group by 4 (or 4-6-5); tiny groups mean a list of numbers, not a card.
    return len(groups) == 1 or all(_CARD_GROUP_MIN <= len(g) <= _CARD_GROUP_MAX for g in groups)


def _find_cards(text: str) -> Iterator[PiiMatch]:
    for m in _DIGIT_RUN.finditer(text):
        run = m.group()
        groups = re.split(r"[ \-]", run)
        offsets = [0]  # offsets[i]: where group i starts inside the run
        for g in groups[:-1]:
            offsets.append(offsets[-1] + len(g) + 1)
        # Group-aligned windows, leftmost then longest: a card preceded by an order number or
        # followed by a CVV in the same run is still found. A window is one 13-19 digit group or
        # several 3-6 digit groups, so each start looks at no more than six groups.
        i = 0
        while i < len(groups):
            found = None
            if len(groups[i]) > _CARD_GROUP_MAX:
                found = i + 1 if _card_shape_ok(groups[i : i + 1]) and luhn_valid(groups[i]) else None
            elif len(groups[i]) >= _CARD_GROUP_MIN:
                digits, j = 0, i
                while (
                    j < len(groups)
                    and _CARD_GROUP_MIN <= len(groups[j]) <= _CARD_GROUP_MAX
                    and digits + len(groups[j]) <= _CARD_MAX_DIGITS
                ):
                    digits += len(groups[j])
                    j += 1
                for end in range(j, i + 1, -1):
                    window = groups[i:end]
                    if _card_shape_ok(window) and luhn_valid("".join(window)):
                        found = end
                        break
            if found is None:
                i += 1
                continue
            start = m.start() + offsets[i]
            stop = m.start() + offsets[found - 1] + len(groups[found - 1])
            yield PiiMatch(EntityType.PAYMENT_CARD, start, stop, text[start:stop])
            i = found


# --- IBAN --------------------------------------------------------------------------------

# ISO 13616 registry: total IBAN length per country. A candidate must have exactly this
# many characters, which also tells the scanner where the IBAN ends in running text.
IBAN_LENGTHS: Final[dict[str, int]] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22,
    "BH": 22, "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24,
    "DE": 22, "DJ": 27, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18,
    "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27,
    "GT": 28, "HN": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20,
    "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20,
    "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24,
    "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25,
    "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
    "YE": 30,
}  # fmt: skip

_IBAN_START = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}", re.ASCII)


def iban_valid(iban: str) -> bool:
    """ISO 13616 check: known country, its length, and (rearranged number) mod 97 == 1."""
    compact = iban.replace(" ", "").upper()
    if not compact.isascii() or not compact.isalnum() or len(compact) < 5:
        return False
    if IBAN_LENGTHS.get(compact[:2]) != len(compact) or not compact[2:4].isdigit():
        return False
    rearranged = compact[4:] + compact[:4]
    # Letters become two-digit numbers (A=10 ... Z=35); int() accepts base 36 digits directly.
    numeric = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(numeric) % 97 == 1


def _find_ibans(text: str) -> Iterator[PiiMatch]:
    for m in _IBAN_START.finditer(text):
        length = IBAN_LENGTHS.get(m.group()[:2].upper())
        if length is None:
            continue
        # Take exactly `length` alphanumerics, allowing one space between any two of them.
        taken, i = 4, m.end()
        while taken < length and i < len(text):
            ch = text[i]
            if ch == " " and i + 1 < len(text) and text[i + 1].isascii() and text[i + 1].isalnum():
                i += 1
                continue
            if not (ch.isascii() and ch.isalnum()):
                break
            taken += 1
            i += 1
        if taken != length or (i < len(text) and text[i].isalnum()):
            continue
        value = text[m.start() : i]
        if iban_valid(value):
            yield PiiMatch(EntityType.IBAN, m.start(), i, value)


# --- IP addresses ------------------------------------------------------------------------

_IPV4 = re.compile(r"(?<![\w.:])(?:\d{1,3}\.){3}\d{1,3}(?![\w:])(?!\.\d)", re.ASCII)
# Candidate runs of hex digits, colons and dots with at least one colon; ipaddress decides.
_IPV6 = re.compile(r"(?<![\w:.])(?=[0-9A-Fa-f.]*:)[0-9A-Fa-f:.]{2,45}+(?![\w:])", re.ASCII)


def _find_ips(text: str) -> Iterator[PiiMatch]:
    for m in _IPV4.finditer(text):
        try:
            ipaddress.IPv4Address(m.group())
        except ValueError:
            continue
        yield PiiMatch(EntityType.IP_ADDRESS, m.start(), m.end(), m.group())
    for m in _IPV6.finditer(text):
        value = m.group().rstrip(".")  # a sentence may end right after the address
        if value.count(":") < 2 or not any(ch in "0123456789abcdefABCDEF" for ch in value):
            continue
        try:
            ipaddress.IPv6Address(value)
        except ValueError:
            continue
        yield PiiMatch(EntityType.IP_ADDRESS, m.start(), m.start() + len(value), value)


# --- resolution --------------------------------------------------------------------------

DETECTORS: Final[dict[EntityType, Callable[[str], Iterator[PiiMatch]]]] = {
    EntityType.EMAIL: _find_emails,
    EntityType.PHONE: _find_phones,
    EntityType.PAYMENT_CARD: _find_cards,
    EntityType.IBAN: _find_ibans,
    EntityType.IP_ADDRESS: _find_ips,
}


def find_candidates(text: str, entities: frozenset[EntityType] | None = None) -> list[PiiMatch]:
    """Every validated candidate, overlaps included (useful for tests and diagnostics)."""
    wanted = entities if entities is not None else frozenset(EntityType)
    found: list[PiiMatch] = []
    for entity, detector in DETECTORS.items():
        if entity in wanted:
            found.extend(detector(text))
    return found


def resolve_overlaps(candidates: list[PiiMatch]) -> list[PiiMatch]:
    """Non-overlapping subset, ordered by start: longest first, then most specific, then earliest."""
    ranked = sorted(candidates, key=lambda c: (-c.length, SPECIFICITY[c.entity], c.start, c.end))
    starts: list[int] = []  # sorted starts of the chosen spans, which never overlap each other
    chosen: dict[int, PiiMatch] = {}
    for cand in ranked:
        pos = bisect.bisect_right(starts, cand.start)
        if pos > 0 and chosen[starts[pos - 1]].end > cand.start:
            continue
        if pos < len(starts) and starts[pos] < cand.end:
            continue
        starts.insert(pos, cand.start)
        chosen[cand.start] = cand
    return [chosen[s] for s in starts]


def detect(text: str, entities: frozenset[EntityType] | None = None) -> list[PiiMatch]:
    """PII spans in ``text``, non-overlapping and ordered by position."""
    return resolve_overlaps(find_candidates(text, entities))
