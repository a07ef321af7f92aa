"""A process-wide copy of recently queried users' search index: their indexed turns' rows,
terms, dates and vectors, so a turn search finds its lexical, date and dense candidates, their
neighbours, rows and cosines without a candidate statement.

Why: with 10k turns per user, the candidate statement (full-text match through the GIN index,
binary-quantized vector scan, exact re-order of TOASTed vectors, three cosines per row, the
rows) was most of a cache miss (docs/query.md). The same work on in-memory posting lists and a
float32 matrix takes about a millisecond, and the lexical side no longer waits for the query
vector: it runs while the query is embedded. A warm Lambda (or the local server) keeps the copy
across requests, so a user's later queries pay only for what changed; SQL still reads the
statistics (and the generation) and the turns not indexed yet.

Same candidates as the SQL path (``search.postgres``), by construction: the statistics (idf,
average length) still come from PostgreSQL; lexical candidates are the rows holding a
*matching* term, scored Σ idf·[term ∈ turn] with BM25's length norm, ties by id; date
candidates are the first ``date_scan`` rows of each range by time, scored without the norm.
One difference: the copy holds indexed turns only, so a not-yet-indexed turn inside a named
date range is a candidate only through the "unindexed" source (the newest ones).

Consistency — the copy is what a query's statistics statement saw, as a read in that
snapshot would be:

- **Generation.** Every change to a user's turns bumps their search generation in the same
  transaction (``0003_search.sql`` triggers). The turn search reads it with the statistics;
  when it differs from the copy's, the copy reads the rows indexed since its watermark
  (``indexed_at >= watermark - REFRESH_MARGIN``, index ``turns_scope_indexed``). ``indexed_at``
  is the indexing transaction's start time, so a transaction that commits after a later one
  could fall behind the watermark: the margin covers the last minute, far longer than an
  indexing statement runs. Rows of the margin the copy holds, as indexed then, are left out
  of the statement (``recent``), so a refresh reads only new and re-indexed rows.
- **Deletions** (DeleteContext, erasure, retention) leave the copy with more rows than the
  user's indexed-turn count (``search_doc_stats.n_docs``, same triggers), and a re-indexed
  turn (another embedding model) may change its terms: either way the copy is dropped and
  loaded again. A turn deleted while a query runs may still be in that query's answer, as with
  any read that races a delete.
- **Isolation.** A copy is keyed by (tenant, agent, user) and loaded in a transaction of that
  tenant, under row-level security, with the same explicit filters as every search statement.
- **Bounds.** Entries are evicted least-recently-used beyond ``max_bytes`` and after
  ``idle_s`` without a query (so an erased user's data does not linger in a warm process);
  a user larger than a quarter of the budget is never copied (the SQL path serves them).
  Erasure drops the user's copies in the erasing process at once.

Loading a copy is one statement plus building the posting lists (~0.8 s for 10k turns with
three 384-d vectors each on the 2-core dev machine; ~6 KB per turn in memory). By default it
runs on a background thread while the user's first query takes the SQL path, so no request
pays for it; ``background=None`` loads it in the query instead (tests). In Lambda that thread
runs only during invocations (the environment is frozen between them): the load overlaps the
next few queries of the environment, which take the SQL path meanwhile.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from array import array
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from context_engine.db.database import Conn, Database

log = logging.getLogger(__name__)

REFRESH_MARGIN = dt.timedelta(seconds=60)
# Rows per matrix-vector product: below OpenBLAS's threading threshold, so the product runs on
# the calling thread. Threaded, it measured 1–8 ms instead of ~1 ms for 10k rows: the pool's
# threads wake up and spin against PostgreSQL and the query model on the same cores.
_CHUNK = 1024

_LOAD_SQL = (
    "select t.id, t.session_id, t.seq, t.question, t.answer, t.lex_parts, t.indexed_at, t.occurred_at, t.lex_len,"
    " tsvector_to_array(t.lex) as terms,"
    " vector_send(t.embedding) as e, vector_send(t.q_embedding) as q, vector_send(t.a_embedding) as a"
    " from turns t where t.tenant_id = %(t)s and t.agent_id = %(a)s and t.user_id = %(u)s"
    " and t.embedding is not null and t.lex is not null"
)

# A refresh: the rows indexed since the watermark, less the margin, that the copy does not
# already hold as indexed then (the margin's rows are re-read only if they were re-indexed).
_SINCE_SQL = (
    " and t.indexed_at >= %(since)s and not exists (select 1 from unnest(%(ids)s::uuid[], %(ats)s::timestamptz[])"
    " as k(id, at) where k.id = t.id and k.at = t.indexed_at)"
)

_GENERATION_SQL = (
    "select coalesce((select generation from search_generations"
    " where tenant_id = %(t)s and agent_id = %(a)s and user_id = %(u)s), 0) as g"
)

Key = tuple[str, str, str]  # tenant, agent, user
F32 = npt.NDArray[np.float32]
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


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


def _micros(t: dt.datetime) -> int:
    return (t - _EPOCH) // dt.timedelta(microseconds=1)


class UserIndex:
    """One user's indexed turns: rows, time, analyzed-term count, posting lists, and the turn,
    question and answer vectors with their inverse norms. Rows only grow; a
    re-indexed turn marks the copy ``stale`` (its terms may have changed) for a reload."""

    def __init__(self, dim: int, generation: int) -> None:
        self.dim = dim
        self.generation = generation
        self.watermark: dt.datetime | None = None
        # id → indexed_at of the rows inside the refresh margin: a refresh skips them in SQL
        self.recent: dict[str, dt.datetime] = {}
        self.last_used = time.monotonic()
        self.stale = False
        self.ids: list[str] = []
        self.row_of: dict[str, int] = {}
        self.id_at: dict[tuple[str, int], str] = {}
        # each turn's row as the turn search reads it (search.postgres._TURN_COLS): turns are
        # immutable but for deletion, which the generation and count checks catch
        self.rows: dict[str, dict[str, Any]] = {}
        self.postings: dict[str, array[int]] = {}
        self.n = 0
        self._n_postings = 0
        self._row_bytes = 0  # ids, rows and their dicts, roughly
        cap = 16
        self._m = {name: np.zeros((cap, dim), dtype=np.float32) for name in ("e", "q", "a")}
        self._inv = {name: np.zeros(cap, dtype=np.float32) for name in ("e", "q", "a")}
        self._has = {name: np.zeros(cap, dtype=bool) for name in ("q", "a")}
        # the turn vectors binary-quantized (bit = value > 0, as pgvector's binary_quantize)
        self._bq = np.zeros((cap, dim // 64), dtype=np.uint64) if dim % 64 == 0 else None
        self._when = np.zeros(cap, dtype=np.int64)  # occurred_at, µs since the epoch
        self._len = np.zeros(cap, dtype=np.float64)  # analyzed terms (BM25's document length)
        self.lock = threading.Lock()

    @property
    def nbytes(self) -> int:
        arrays = [*self._m.values(), *self._inv.values(), *self._has.values(), self._when, self._len]
        if self._bq is not None:
            arrays.append(self._bq)
        # + the posting lists and the rows, roughly
        return (sum(a.nbytes for a in arrays) + 4 * self._n_postings + 100 * len(self.postings)
                + self._row_bytes)

    def _grow(self, need: int) -> None:
        cap = len(self._when)
        if need <= cap:
            return
        if self.n == 0:
            cap = need + 16  # a load: exactly what it holds, plus room for a few new turns
        while cap < need:
            cap *= 2
        for store in (self._m, self._inv, self._has):
            for name, old in store.items():
                store[name] = self._resized(old, cap)
        self._when = self._resized(self._when, cap)
        self._len = self._resized(self._len, cap)
        if self._bq is not None:
            self._bq = self._resized(self._bq, cap)

    def _resized(self, old: Any, cap: int) -> Any:
        new = np.zeros((cap, *old.shape[1:]), dtype=old.dtype)
        new[: self.n] = old[: self.n]
        return new

    def upsert(self, rows: Sequence[dict[str, Any]]) -> None:
        """Append rows of ``_LOAD_SQL`` (a known id is a re-indexed turn: if its vector
        changed, the copy is ``stale``). The caller holds ``lock`` (or owns the entry alone)."""
        fresh = []
        for r in rows:
            if self.watermark is None or r["indexed_at"] > self.watermark:
                self.watermark = r["indexed_at"]
            slot = self.row_of.get(str(r["id"]))
            if slot is None:
                fresh.append(r)
            elif not np.array_equal(_vectors([r["e"]], self.dim)[0][0], self._m["e"][slot]):
                self.stale = True
        if self.watermark is not None:
            cut = self.watermark - REFRESH_MARGIN
            recent = {k: at for k, at in self.recent.items() if at >= cut}
            recent.update((str(r["id"]), r["indexed_at"]) for r in rows if r["indexed_at"] >= cut)
            self.recent = recent
        if not fresh:
            return
        e, _ = _vectors([r["e"] for r in fresh], self.dim)
        q, has_q = _vectors([r["q"] for r in fresh], self.dim)
        a, has_a = _vectors([r["a"] for r in fresh], self.dim)
        first = self.n
        self._grow(first + len(fresh))
        postings = self.postings
        row_of, id_at, ids, rows_by_id = self.row_of, self.id_at, self.ids, self.rows
        when, length = self._when, self._len
        n_postings = 0
        for slot, r in enumerate(fresh, start=first):  # ~1 µs per term: the hot loop of a load
            tid = str(r["id"])
            key = (r["session_id"], r["seq"])
            row_of[tid] = slot
            rows_by_id[tid] = {"id": tid, "session_id": r["session_id"], "seq": r["seq"], "question": r["question"],
                               "answer": r["answer"], "occurred_at": r["occurred_at"], "lex_parts": r["lex_parts"]}
            ids.append(tid)
            id_at[key] = tid
            when[slot] = _micros(r["occurred_at"])
            length[slot] = r["lex_len"] or 0
            terms = r["terms"]
            n_postings += len(terms)
            self._row_bytes += 900 + len(r["question"]) + len(r["answer"]) + sum(map(len, r["lex_parts"] or ()))
            for term in terms:
                lst = postings.get(term)
                if lst is None:
                    lst = postings[term] = array("i")
                lst.append(slot)
        for term in [t for t in postings if t.startswith("_")]:  # the scope lexeme: no query has it
            n_postings -= len(postings.pop(term))
        self._n_postings += n_postings
        span = slice(first, first + len(fresh))
        if self._bq is not None:
            self._bq[span] = np.packbits(e > 0, axis=1).view(np.uint64)
        for name, m, has in (("e", e, None), ("q", q, has_q), ("a", a, has_a)):
            self._m[name][span] = m
            self._inv[name][span] = _inverse_norms(m)
            if has is not None:
                self._has[name][span] = has
        self.n = first + len(fresh)

    # --- candidates (the caller holds ``lock``) --------------------------------------------
    def _term_scores(self, weights: Sequence[tuple[str, float]]) -> npt.NDArray[np.float64]:
        """Σ weight·[term ∈ turn] for every row, terms added in the given order (as in SQL)."""
        score = np.zeros(self.n, dtype=np.float64)
        for term, w in weights:
            lst = self.postings.get(term)
            if lst is not None and len(lst):
                score[np.frombuffer(lst, dtype=np.int32)] += w
        return score

    def lexical(self, match: Sequence[str], weights: Sequence[tuple[str, float]], *, k1: float, b: float,
                avg_len: float, limit: int) -> list[tuple[str, int]]:
        """(id, rank from 1) of the best ``limit`` rows holding a ``match`` term, by Σ idf·[term ∈
        turn] × (k1 + 1) / (1 + k1·(1 − b + b·len / avg_len)), ties by id."""
        with self.lock:
            lists = [np.frombuffer(self.postings[t], dtype=np.int32) for t in match if t in self.postings]
            if not lists or limit <= 0:
                return []
            rows = np.unique(np.concatenate(lists))
            score = self._term_scores(weights)[rows] * (k1 + 1) / (1 + k1 * (1 - b + b * self._len[rows] / avg_len))
            if len(rows) > limit:  # only the best (and whatever ties the last) need the exact order
                keep = score >= np.partition(score, len(rows) - limit)[len(rows) - limit]
                rows, score = rows[keep], score[keep]
            ids = self.ids
        best = sorted(zip((-score).tolist(), rows.tolist(), strict=True), key=lambda x: (x[0], ids[x[1]]))[:limit]
        return [(ids[slot], i + 1) for i, (_, slot) in enumerate(best)]

    def dated(self, ranges: Sequence[tuple[dt.datetime, dt.datetime]], weights: Sequence[tuple[str, float]], *,
              scan: int, limit: int) -> list[str]:
        """Ids of the turns inside the ranges: of each range's first ``scan`` by time, the best
        ``limit`` by Σ idf·[term ∈ turn] (earliest first on ties); at most ``limit`` in all."""
        out: list[str] = []
        with self.lock:
            if not ranges or limit <= 0 or self.n == 0:
                return out
            when = self._when[: self.n]
            score = self._term_scores(weights)
            for lo, hi in ranges:
                inside = np.nonzero((when >= _micros(lo)) & (when < _micros(hi)))[0]
                first = inside[np.argsort(when[inside], kind="stable")][:scan]
                order = sorted(first.tolist(), key=lambda slot: (-score[slot], when[slot]))[:limit]
                out.extend(self.ids[slot] for slot in order)
        return out[:limit]

    def top(self, vec: F32, k: int, *, oversample: int | None = None) -> list[tuple[str, float]]:
        """The ``k`` turns most similar to ``vec``, best first. With ``oversample``, as the SQL
        path does it: the ``k × oversample`` nearest by Hamming distance of the binary-quantized
        vectors (one bit per dimension: 48 bytes a turn at 384-d), re-ordered by exact cosine —
        ~0.4 ms for 10k turns against ~1.5 ms for exact cosines of all of them (a memory-bound
        product over 15 MB). Without it, or for a dimension not a multiple of 64: exact."""
        with self.lock:
            n = self.n
            if n == 0 or k <= 0:
                return []
            unit = (vec / (np.linalg.norm(vec) or 1.0)).astype(np.float32)
            if oversample and self._bq is not None and n > k * oversample:
                q_bits = np.packbits(unit > 0).view(np.uint64)
                distance = np.bitwise_count(self._bq[:n] ^ q_bits).sum(axis=1, dtype=np.int32)
                pool = np.argpartition(distance, k * oversample - 1)[: k * oversample]
                scores = (self._m["e"][pool] @ unit) * self._inv["e"][pool]
            else:
                pool = np.arange(n)
                scores = np.empty(n, dtype=np.float32)
                m = self._m["e"]
                for start in range(0, n, _CHUNK):
                    stop = min(start + _CHUNK, n)
                    np.dot(m[start:stop], unit, out=scores[start:stop])
                scores *= self._inv["e"][:n]
            best = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
            best = best[np.argsort(-scores[best], kind="stable")]
            return [(self.ids[i], float(scores[j])) for i, j in zip(pool[best].tolist(), best.tolist(), strict=True)]

    def cosines(self, ids: Iterable[str], vec: F32) -> dict[str, Cosines]:
        """Turn, question and answer cosines of the known ``ids`` with ``vec``."""
        with self.lock:
            known = [(tid, self.row_of[tid]) for tid in ids if tid in self.row_of]
            if not known:
                return {}
            idx = np.array([slot for _, slot in known])
            unit = (vec / (np.linalg.norm(vec) or 1.0)).astype(np.float32)
            cos = {name: ((self._m[name][idx] @ unit) * self._inv[name][idx]).tolist() for name in ("e", "q", "a")}
            has = {name: self._has[name][idx].tolist() for name in ("q", "a")}
        return {tid: Cosines(turn=cos["e"][j], question=cos["q"][j] if has["q"][j] else None,
                             answer=cos["a"][j] if has["a"][j] else None) for j, (tid, _) in enumerate(known)}


class UserIndexCache:
    """LRU of ``UserIndex`` by (tenant, agent, user), bounded in bytes and idle time."""

    def __init__(self, max_bytes: int, dim: int, *, idle_s: float = 900.0, background: Database | None = None,
                 ) -> None:
        """``background``: load new copies on a thread of their own, through this database, while
        the query that asked for one is served by the SQL path (no request pays for a load);
        None: the query loads it in its own transaction (deterministic, for tests)."""
        self.max_bytes = max_bytes
        self.dim = dim
        self.idle_s = idle_s
        self._entries: OrderedDict[Key, UserIndex] = OrderedDict()
        self._lock = threading.Lock()
        self._db = background
        self._loading: set[Key] = set()
        self._loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="user-index") if background else None

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        with self._lock:
            return sum(e.nbytes for e in self._entries.values())

    def fits(self, n_rows: int) -> bool:
        """Whether a user of ``n_rows`` indexed turns may be copied (a quarter of the budget)."""
        return (3 * self.dim * 4 + self.dim // 8 + 3 * 4 + 2 + 8 + 8 + 4 * 40 + 1500) * n_rows <= self.max_bytes // 4

    def drop_user(self, tenant_id: str, user_id: str) -> int:
        """Forget a user's copies under every agent (erasure: this process at once; other
        processes notice the deleted rows, or the entry idles out)."""
        with self._lock:
            keys = [k for k in self._entries if k[0] == tenant_id and k[2] == user_id]
            for k in keys:
                del self._entries[k]
        return len(keys)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def current(self, conn: Conn, key: Key, *, generation: int, n_docs: int) -> UserIndex | None:
        """The user's copy as of ``generation`` (read in ``conn``, the caller's tenant
        transaction), refreshed as needed; None while it is being loaded, or for a user too
        large to copy (the caller searches in SQL)."""
        if not self.fits(n_docs):
            return None
        self._expire()
        with self._lock:
            entry = self._entries.get(key)
        if entry is not None and (entry.generation != generation or entry.n > n_docs):
            with entry.lock:
                if entry.generation != generation:
                    self._refresh(conn, key, entry, generation)
            if entry.n > n_docs or entry.stale:  # rows were deleted or re-indexed: load it again
                with self._lock:
                    self._entries.pop(key, None)
                entry = None
        if entry is None:
            if self._loader is not None:
                self._load_soon(key)
                return None
            entry = self._load(conn, key, generation)
        self._keep(key, entry)
        return entry

    def wait_for_loads(self, timeout: float = 30.0) -> None:
        """Block until the background loads scheduled so far are done (tests, benchmarks)."""
        if self._loader is not None:
            self._loader.submit(lambda: None).result(timeout)

    def _keep(self, key: Key, entry: UserIndex) -> None:
        entry.last_used = time.monotonic()
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            self._evict()

    def _load_soon(self, key: Key) -> None:
        with self._lock:
            if key in self._loading:
                return
            self._loading.add(key)
        assert self._loader is not None
        self._loader.submit(self._load_in_background, key)

    def _load_in_background(self, key: Key) -> None:
        assert self._db is not None
        try:
            with self._db.tenant(key[0]) as conn:
                # the generation first: the rows read next hold at least what it counts
                generation = conn.execute(_GENERATION_SQL, {"t": key[0], "a": key[1], "u": key[2]}).fetchone()
                assert generation is not None
                self._keep(key, self._load(conn, key, int(generation["g"])))
        except Exception:  # the SQL path keeps serving; the next query tries again
            log.exception("user index load failed")
        finally:
            with self._lock:
                self._loading.discard(key)

    def _load(self, conn: Conn, key: Key, generation: int) -> UserIndex:
        entry = UserIndex(self.dim, generation)
        started = time.perf_counter()
        rows = conn.cursor(binary=True).execute(_LOAD_SQL, {"t": key[0], "a": key[1], "u": key[2]}).fetchall()
        entry.upsert(rows)  # type: ignore[arg-type]  # the pool's row factory is dict_row
        log.info("user index loaded", extra={"rows": entry.n, "ms": round((time.perf_counter() - started) * 1000, 1)})
        return entry

    def _refresh(self, conn: Conn, key: Key, entry: UserIndex, generation: int) -> None:
        since = entry.watermark - REFRESH_MARGIN if entry.watermark is not None else None
        sql = _LOAD_SQL + (_SINCE_SQL if since is not None else "")
        rows = conn.cursor(binary=True).execute(sql, {
            "t": key[0], "a": key[1], "u": key[2], "since": since,
            "ids": list(entry.recent), "ats": list(entry.recent.values())}).fetchall()
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
