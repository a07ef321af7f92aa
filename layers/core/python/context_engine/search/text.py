"""What retrieval indexes for a turn: its text plus the context a question may refer to.

The session date is included in a human form ("8 May 2023": day, month name, year — the way
queries name dates) so that temporal questions can match it lexically; the speaker names
are already in the text. The date is the turn's UTC calendar day, the same day the
re-ranker's date filter and the indexer's ``lex`` terms use.

Kept free of numpy and the re-ranker: the write path imports this module.
"""

from __future__ import annotations

import calendar
import datetime as dt


def utc_date(value: dt.datetime) -> dt.date:
    """The calendar day a turn happened on, in UTC: the same day for every reader."""
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC)
    return value.date()


def date_text(day: dt.date) -> str:
    """Same form as ``retrieval.dates.index_date_text`` (a unit test holds them equal)."""
    return f"{day.day} {calendar.month_name[day.month]} {day.year}"


def turn_search_text(question: str, answer: str, occurred_at: dt.datetime) -> str:
    return f"{date_text(utc_date(occurred_at))}\n{question}\n{answer}"
