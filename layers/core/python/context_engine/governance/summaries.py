"""Rebuilding a window summary without turns that were erased or expired.

A summary is derived from the turns it covers (``summary_seqs``); when some of them are
deleted for governance reasons their text may still be in it. The summary is recomputed
from the covered turns that remain — never from the old summary, which holds the removed
content — with the window's own strategy and size, and the window version is bumped so
no cached context built from the old summary is reachable again.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from datetime import UTC, datetime
from typing import get_args

from context_engine.compression.models import CompressionRequest, SourceTurn, StrategyName
from context_engine.compression.strategies import compress
from context_engine.compression.summarizers import build_summarizer
from context_engine.db.database import Conn
from context_engine.runtime import Runtime

MIN_TARGET_TOKENS = 64


def rebuild_without(rt: Runtime, conn: Conn, tenant_id: str, session_id: str, removed_seqs: Collection[int],
                    *, reason: str) -> bool:
    """Call in the transaction that deleted the turns (after the delete). True when the
    window's summary covered any of ``removed_seqs`` and was rebuilt (or cleared)."""
    window = conn.execute(
        "select summary, summary_seqs, summary_covers_seq, summary_tokens, strategy, stats from context_windows"
        " where tenant_id = %s and session_id = %s for update",
        [tenant_id, session_id],
    ).fetchone()
    if window is None or window["summary"] is None:
        return False
    removed = set(removed_seqs)
    covered = set(window["summary_seqs"] or [])
    if not covered & removed:
        return False
    remaining = sorted(covered - removed)
    rows = conn.execute(
        "select seq, question, answer, token_count, occurred_at, metadata from turns"
        " where tenant_id = %s and session_id = %s and seq = any(%s) order by seq",
        [tenant_id, session_id, remaining],
    ).fetchall()
    stats = {"rebuilt_for": reason, "removed_turns": len(covered & removed),
             "rebuilt_at": datetime.now(UTC).isoformat()}
    if not rows:
        conn.execute(
            "update context_windows set summary = null, summary_seqs = '{}', summary_tokens = 0, stats = %s,"
            " version = version + 1, updated_at = now() where tenant_id = %s and session_id = %s",
            [json.dumps(stats), tenant_id, session_id],
        )
        return True
    strategy: StrategyName = window["strategy"] if window["strategy"] in get_args(StrategyName) else "summarize"
    request = CompressionRequest(
        strategy=strategy, turns=[SourceTurn(**r) for r in rows],
        target_tokens=max(MIN_TARGET_TOKENS, int(window["summary_tokens"] or 0)))
    summarizer = build_summarizer(rt.settings.summarizer, rt.settings.bedrock_summary_model_id)
    result = compress(request, summarizer)
    conn.execute(
        "update context_windows set summary = %s, summary_seqs = %s, summary_tokens = %s, strategy = %s,"
        " stats = %s, version = version + 1, updated_at = now() where tenant_id = %s and session_id = %s",
        [result.summary, result.seqs, result.summary_tokens, result.strategy,
         json.dumps({**stats, "summarizer": result.summarizer, "fallback": result.fallback}), tenant_id,
         session_id],
    )
    return True


def drop_staged_summaries(conn: Conn, tenant_id: str, session_ids: Collection[str]) -> int:
    """Compression jobs stage their computed summary in the job row; for sessions that lost
    turns to erasure that staged text may hold them. Clear it (an in-flight workflow then
    fails its store step and the next compression starts from the remaining turns)."""
    if not session_ids:
        return 0
    return conn.execute(
        "update jobs set result = null, updated_at = now() where tenant_id = %s and kind = 'compress'"
        " and resource->>'session_id' = any(%s) and result is not null",
        [tenant_id, list(session_ids)],
    ).rowcount
