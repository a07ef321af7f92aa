"""Garbage-collector settings for request-serving processes (Lambda handlers, ``serve``).

A QueryContext miss allocates tens of thousands of short-lived objects (rows, candidates,
snippets). With CPython's defaults (a young collection every 700 allocations, older ones
scanning the whole heap of imported modules, pydantic schemas and the model runtime) the
collector cost ~1.7 ms per miss on average, and a full collection now and then landed in the
tail. Freezing what exists after start-up (it lives as long as the process) and collecting
the young generation less often brought it to ~0.1 ms per miss (bench/query_bench.py,
docs/query.md). Cycles are still collected; the process just holds a little more garbage
between collections.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 20_000  # allocations between young collections (default 700)


def tune_for_requests() -> None:
    """Call once, at the end of start-up (module import in a Lambda, before serving locally)."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
