"""A process-wide copy of recently queried users' turn vectors: dense candidates and cosines
without reading vectors in SQL.

Why: with 10k turns per user, the dense side of a turn search in PostgreSQL costs a scan of
the user's binary-quantized vectors, an exact re-order of the best 200 (TOASTed vectors) and
three cosines per candidate row — about half of the candidate statement (docs/query.md). The
same work on an in-memory float32 matrix is a ~1 ms matrix-vector product. A warm Lambda (or
the local server) keeps the matrix across requests, so a user's second and later queries pay
only for what changed.

Consistency — the copy is only ever a *candidate generator plus cosines*; rows are still read
from PostgreSQL under the tenant's row-level security, so a stale copy can cost recall, never
leak or resurrect a row:

- **Generation.** Every change to a user's turns bumps their search generation in the same
  transaction (``0003_search.sql`` triggers). The turn search reads it with the statistics;
  when it differs from the copy's, the copy reads the rows indexed since its watermark
  (``indexed_at >= watermark - REFRESH_MARGIN``, index ``turns_scope_indexed``). ``indexed_at``
  is the indexing transaction's start time, so a transaction that commits after a later one
  could fall behind the watermark: the margin re-reads the last minute, far longer than an
  indexing statement runs.
- **Deletions** (DeleteContext, erasure, retention) leave the copy with more rows than the
  user's indexed-turn count (``search_doc_stats.n_docs``, same triggers): the copy is dropped
  and loaded again. A deleted id the copy still returns is simply not found when its row is
  read.
- **Bounds.** Entries are evicted least-recently-used beyond ``max_bytes`` and after
  ``idle_s`` without a query (so an erased user's vectors do not linger in a warm process);
  a user larger than a quarter of the budget is never copied (the SQL path serves them).

The first query of a user in a process loads the copy synchronously (one statement; ~250 ms
for 10k turns with three 384-d vectors each on the 2-core dev machine, a few ms for a few
hundred turns) — like a cold start, once per process and user.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from context_engine.db.database import Conn

log = logging.getLogger(__name__)

REFRESH_MARGIN = dt.timedelta(seconds=60)
# Rows per matrix-vector product: below OpenBLAS's threading threshold, so the product runs on
# the calling thread. Threaded, it measured 1–8 ms instead of ~1 ms for 10k rows: the pool's
# threads wake up and spin against PostgreSQL and the query model on the same cores.
_CHUNK = 1024

_LOAD_SQL = (
    "select t.id, t.session_id, t.seq, t.indexed_at, vector_send(t.embedding) as e,"
    " vector_send(t.q_embedding) as q, vector_send(t.a_embedding) as a from turns t"
    " where t.tenant_id = %(t)s and t.agent_id = %(a)s and t.user_id = %(u)s and t.embedding is not null"
)

Key = tuple[str, str, str]  # tenant, agent, user
F32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Cosines:
    turn: float
    question: float | None
    answer: float | None


def _vectors(blobs: Sequence[bytes | None], dim: int) -> tuple[F32, npt.NDArray[np.bool_]]:
    """pgvector's binary form (int16 dim, int16 unused, big-endian float4s) → float32 rows;
    a missing vector is a zero row, flagged absent."""
    first = next((b for b in blobs if b is not None), None)
    if first is not None and int.from_bytes(first[:2], "big") != dim:
        raise ValueError(f"stored vectors have {int.from_bytes(first[:2], 'big')} dimensions, settings say {dim}")
    present = np.array([b is not None for b in blobs], dtype=bool)
    zero = bytes(4 * dim)
    raw = b"".join(b[4:] if b is not None else zero for b in blobs)
    return np.frombuffer(raw, dtype=">f4").astype(np.float32).reshape(len(blobs), dim), present


def _inverse_norms(m: F32) -> F32:
    norms = np.linalg.norm(m, axis=1)
    out = np.zeros_like(norms)
    np.divide(1.0, norms, out=out, where=norms > 0)
    return out


class UserVectors:
    """One user's indexed turns: ids, (session, seq) and the turn, question and answer vectors
    with their inverse norms. Rows only grow (a re-indexed turn overwrites its row)."""

    def __init__(self, dim: int, generation: int) -> None:
        self.dim = dim
        self.generation = generation
        self.watermark: dt.datetime | None = None
        self.last_used = time.monotonic()
        self.ids: list[str] = []
        self.keys: list[tuple[str, int]] = []
        self.row_of: dict[str, int] = {}
        self.id_at: dict[tuple[str, int], str] = {}
        self.n = 0
        cap = 16
        self._m = {name: np.zeros((cap, dim), dtype=np.float32) for name in ("e", "q", "a")}
        self._inv = {name: np.zeros(cap, dtype=np.float32) for name in ("e", "q", "a")}
        self._has = {name: np.zeros(cap, dtype=bool) for name in ("q", "a")}
        self.lock = threading.Lock()

    @property
    def nbytes(self) -> int:
        arrays = [*self._m.values(), *self._inv.values(), *self._has.values()]
        return sum(a.nbytes for a in arrays) + 200 * self.n  # + ids, keys and their dicts, roughly

    def _grow(self, need: int) -> None:
        cap = len(self._inv["e"])
        if need <= cap:
            return
        while cap < need:
            cap *= 2
        for store in (self._m, self._inv, self._has):
            for name, old in store.items():
                new = np.zeros((cap, *old.shape[1:]), dtype=old.dtype)
                new[: self.n] = old[: self.n]
                store[name] = new

    def upsert(self, rows: Sequence[dict[str, Any]]) -> None:
        """Rows of ``_LOAD_SQL``; a known id overwrites its row (re-indexed with another model).
        The caller holds ``lock`` (or owns the entry alone)."""
        if not rows:
            return
        e, _ = _vectors([r["e"] for r in rows], self.dim)
        q, has_q = _vectors([r["q"] for r in rows], self.dim)
        a, has_a = _vectors([r["a"] for r in rows], self.dim)
        slots = []
        new = 0
        for r in rows:
            tid = str(r["id"])
            slot = self.row_of.get(tid)
            if slot is None:
                slot = self.n + new
                new += 1
            slots.append(slot)
        self._grow(self.n + new)
        for r, slot in zip(rows, slots, strict=True):
            tid = str(r["id"])
            if tid not in self.row_of:
                self.row_of[tid] = slot
                self.ids.append(tid)
                key = (r["session_id"], int(r["seq"]))
                self.keys.append(key)
                self.id_at[key] = tid
            if self.watermark is None or r["indexed_at"] > self.watermark:
                self.watermark = r["indexed_at"]
        idx = np.array(slots)
        for name, m, has in (("e", e, None), ("q", q, has_q), ("a", a, has_a)):
            self._m[name][idx] = m
            self._inv[name][idx] = _inverse_norms(m)
            if has is not None:
                self._has[name][idx] = has
        self.n += new

    def top(self, vec: F32, k: int) -> list[tuple[str, float]]:
        """The ``k`` turns most similar to ``vec`` by exact cosine, best first."""
        with self.lock:
            return self._top(vec, k)

    def _top(self, vec: F32, k: int) -> list[tuple[str, float]]:
        n = self.n
        if n == 0 or k <= 0:
            return []
        unit = (vec / (np.linalg.norm(vec) or 1.0)).astype(np.float32)
        scores = np.empty(n, dtype=np.float32)
        m = self._m["e"]
        for start in range(0, n, _CHUNK):
            stop = min(start + _CHUNK, n)
            np.dot(m[start:stop], unit, out=scores[start:stop])
        scores *= self._inv["e"][:n]
        if k < n:
            best = np.argpartition(-scores, k - 1)[:k]
            best = best[np.argsort(-scores[best], kind="stable")]
        else:
            best = np.argsort(-scores, kind="stable")
        return [(self.ids[i], float(scores[i])) for i in best]

    def cosines(self, ids: Iterable[str], vec: F32) -> dict[str, Cosines]:
        """Turn, question and answer cosines of the known ``ids`` with ``vec``."""
        with self.lock:
            return self._cosines(ids, vec)

    def _cosines(self, ids: Iterable[str], vec: F32) -> dict[str, Cosines]:
        known = [(tid, self.row_of[tid]) for tid in ids if tid in self.row_of]
        if not known:
            return {}
        idx = np.array([slot for _, slot in known])
        unit = (vec / (np.linalg.norm(vec) or 1.0)).astype(np.float32)
        out: dict[str, list[float | None]] = {tid: [] for tid, _ in known}
        for name in ("e", "q", "a"):
            cos = (self._m[name][idx] @ unit) * self._inv[name][idx]
            has = self._has[name][idx] if name != "e" else None
            for j, (tid, _) in enumerate(known):
                out[tid].append(float(cos[j]) if has is None or has[j] else None)
        return {tid: Cosines(turn=c[0], question=c[1], answer=c[2]) for tid, c in out.items()}  # type: ignore[arg-type]


class VectorCache:
    """LRU of ``UserVectors`` by (tenant, agent, user), bounded in bytes and idle time."""

    def __init__(self, max_bytes: int, dim: int, *, idle_s: float = 900.0) -> None:
        self.max_bytes = max_bytes
        self.dim = dim
        self.idle_s = idle_s
        self._entries: OrderedDict[Key, UserVectors] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        with self._lock:
            return sum(e.nbytes for e in self._entries.values())

    def fits(self, n_rows: int) -> bool:
        """Whether a user of ``n_rows`` indexed turns may be copied (a quarter of the budget)."""
        return (3 * self.dim * 4 + 3 * 4 + 2 + 200) * n_rows <= self.max_bytes // 4

    def drop_user(self, tenant_id: str, user_id: str) -> int:
        """Forget a user's vectors under every agent (erasure: this process at once; other
        processes notice the deleted rows, or the entry idles out)."""
        with self._lock:
            keys = [k for k in self._entries if k[0] == tenant_id and k[2] == user_id]
            for k in keys:
                del self._entries[k]
        return len(keys)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def current(self, conn: Conn, key: Key, *, generation: int, n_docs: int) -> UserVectors | None:
        """The user's vectors as of ``generation`` (read in ``conn``, the caller's tenant
        transaction), loaded or refreshed as needed; None for a user too large to copy."""
        if not self.fits(n_docs):
            return None
        self._expire()
        with self._lock:
            entry = self._entries.get(key)
        if entry is None:
            entry = self._load(conn, key, generation)
        elif entry.generation != generation or entry.n > n_docs:
            with entry.lock:
                if entry.generation != generation:
                    self._refresh(conn, key, entry, generation)
            if entry.n > n_docs:  # rows were deleted: read them all again
                entry = self._load(conn, key, generation)
        entry.last_used = time.monotonic()
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            self._evict()
        return entry

    def _load(self, conn: Conn, key: Key, generation: int) -> UserVectors:
        entry = UserVectors(self.dim, generation)
        started = time.perf_counter()
        rows = conn.cursor(binary=True).execute(_LOAD_SQL, {"t": key[0], "a": key[1], "u": key[2]}).fetchall()
        entry.upsert(rows)  # type: ignore[arg-type]  # the pool's row factory is dict_row
        log.info("user vectors loaded", extra={"rows": entry.n, "ms": round((time.perf_counter() - started) * 1000, 1)})
        return entry

    def _refresh(self, conn: Conn, key: Key, entry: UserVectors, generation: int) -> None:
        since = entry.watermark - REFRESH_MARGIN if entry.watermark is not None else None
        sql = _LOAD_SQL + (" and t.indexed_at >= %(since)s" if since is not None else "")
        rows = conn.cursor(binary=True).execute(
            sql, {"t": key[0], "a": key[1], "u": key[2], "since": since}).fetchall()
        entry.upsert(rows)  # type: ignore[arg-type]
        entry.generation = generation

    def _expire(self) -> None:
        now = time.monotonic()
        with self._lock:
            for key in [k for k, e in self._entries.items() if now - e.last_used > self.idle_s]:
                del self._entries[key]

    def _evict(self) -> None:
        total = sum(e.nbytes for e in self._entries.values())
        while total > self.max_bytes and len(self._entries) > 1:
            _, old = self._entries.popitem(last=False)
            total -= old.nbytes
