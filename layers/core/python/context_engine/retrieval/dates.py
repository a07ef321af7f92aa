"""Explicit calendar dates in text ("9 November, 2022", "May 3, 2023", "July 2023", ISO).

Used two ways: to find the dates a query names (a query-time filter/boost on the turn's
``occurred_at``), and to render a turn's date into the text that is indexed, so a question
that names a date also matches lexically. Relative expressions ("last week") need a
reference time and are not resolved here.
"""

from __future__ import annotations

import calendar
import datetime as dt
import functools
import re
from dataclasses import dataclass

_MONTHS = {name.lower(): i for i, name in enumerate(calendar.month_name) if name}
_MONTHS.update({name.lower(): i for i, name in enumerate(calendar.month_abbr) if name})
_MONTHS["sept"] = 9
_MON = "|".join(sorted(_MONTHS, key=len, reverse=True))
_ORD = r"(?:st|nd|rd|th)?"
_DAY_MONTH_YEAR = re.compile(rf"\b(\d{{1,2}}){_ORD}(?:\s+of)?\s+({_MON})\.?,?\s+(\d{{4}})\b", re.I)
_MONTH_DAY_YEAR = re.compile(rf"\b({_MON})\.?\s+(\d{{1,2}}){_ORD},?\s+(\d{{4}})\b", re.I)
_MONTH_YEAR = re.compile(rf"\b({_MON})\.?,?\s+(\d{{4}})\b", re.I)
_ISO = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")


@dataclass(frozen=True)
class DateSpan:
    """An inclusive date range and how precise the mention was ("day" or "month")."""

    start: dt.date
    end: dt.date
    granularity: str

    def contains(self, day: dt.date, *, before: int = 0, after: int = 0) -> bool:
        return self.start - dt.timedelta(days=before) <= day <= self.end + dt.timedelta(days=after)


def _safe_date(year: int, month: int, day: int) -> dt.date | None:
    try:
        return dt.date(year, month, day)
    except ValueError:
        return None


def find_dates(text: str) -> list[DateSpan]:
    """Every explicit day or month mention in ``text``, in order of appearance, deduplicated."""
    found: list[tuple[int, DateSpan]] = []
    taken: list[tuple[int, int]] = []

    def free(m: re.Match[str]) -> bool:
        return all(m.end() <= a or m.start() >= b for a, b in taken)

    def add(m: re.Match[str], span: DateSpan | None) -> None:
        if span is not None:
            found.append((m.start(), span))
            taken.append((m.start(), m.end()))

    for m in _ISO.finditer(text):
        d = _safe_date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        add(m, DateSpan(d, d, "day") if d else None)
    for m in _DAY_MONTH_YEAR.finditer(text):
        if free(m):
            d = _safe_date(int(m.group(3)), _MONTHS[m.group(2).lower()], int(m.group(1)))
            add(m, DateSpan(d, d, "day") if d else None)
    for m in _MONTH_DAY_YEAR.finditer(text):
        if free(m):
            d = _safe_date(int(m.group(3)), _MONTHS[m.group(1).lower()], int(m.group(2)))
            add(m, DateSpan(d, d, "day") if d else None)
    for m in _MONTH_YEAR.finditer(text):
        if free(m):
            year, month = int(m.group(2)), _MONTHS[m.group(1).lower()]
            last = calendar.monthrange(year, month)[1]
            add(m, DateSpan(dt.date(year, month, 1), dt.date(year, month, last), "month"))
    found.sort(key=lambda x: x[0])
    return list(dict.fromkeys(span for _, span in found))


def first_date(text: str) -> dt.date | None:
    """The first explicit day in ``text`` (e.g. a LoCoMo session stamp "1:56 pm on 8 May, 2023")."""
    for span in find_dates(text):
        if span.granularity == "day":
            return span.start
    return None


def index_date_text(day: dt.date | dt.datetime) -> str:
    """How a turn's date is written into its indexed text: "8 May 2023" (day, month name, year).

    The month name and year are what queries repeat ("in May 2023", "on 8 May, 2023"); the
    clock time is left out because its digits only add noise to matching.
    """
    return f"{day.day} {_month_name(day.month)} {day.year}"


@functools.lru_cache(maxsize=16)
def _month_name(month: int) -> str:
    # calendar.month_name formats a date on every lookup; packing renders a header per session
    return calendar.month_name[month]
