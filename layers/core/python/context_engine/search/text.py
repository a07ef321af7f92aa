"""What retrieval indexes for a turn: its text plus the context a question may refer to.

The session date is included in a human form ("8 May 2023", "May 2023") so that
temporal questions can match it lexically; the speaker names are already in the text.
"""

from __future__ import annotations

from datetime import datetime


def turn_search_text(question: str, answer: str, occurred_at: datetime) -> str:
    date = f"{occurred_at.day} {occurred_at:%B %Y}"
    return f"{date}\n{question}\n{answer}"
