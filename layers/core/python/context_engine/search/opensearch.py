"""OpenSearch search (the AWS option): BM25 + k-NN over indices the indexer mirrors rows into.

Two shared indices per deployment, ``{prefix}-turns`` and ``{prefix}-memories``, routed by
tenant; every query carries the tenant/agent/user filter (and memory visibility), so a tenant
never reads another's documents whatever the index holds.

Turns, in two ``_msearch`` round trips, then the same re-ranker as PostgreSQL
(``search.ranking``):

1. the user's statistics (a ``size: 0`` request: document count, summed ``lex_len``, one
   ``filters`` bucket per query term for its document frequency), BM25 over ``lex`` (the
   analyzed terms, whitespace-tokenized, so OpenSearch sees the same terms as the Python
   re-ranker), the k-NN query (``knn`` on the turn vector with the filter inside it —
   Lucene's efficient filtering, so the user filter still yields k hits), and the date-range
   turns;
2. the candidates' documents with those of the neighbours (seq ± 1) of the best ones by
   reciprocal-rank fusion of BM25 and k-NN, and the exact cosines of every such turn's turn
   and utterance vectors (``script_score`` with the k-NN plugin's ``knn_score``).

Memories: BM25 on the content and k-NN, fused by reciprocal rank.

What runs where: the embedded test server (``osmem-server``) implements index, bulk,
``_msearch``, BM25 ``_search``, filters, aggregations, ``delete_by_query`` — but neither
``knn`` queries nor ``knn_score`` scripts. The tests therefore execute everything except the
vector requests against it (queries without a vector) and check the vector request bodies
for their shape; the vector side itself is covered by the PostgreSQL backend.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

from context_engine.models.domain import Memory
from context_engine.retrieval import CorpusStats, RankConfig, analyze
from context_engine.search.base import (
    CandidatePlan,
    MemoryDoc,
    Scope,
    ScoredMemory,
    SearchQuery,
    TurnDoc,
    TurnSearch,
    Vector,
)
from context_engine.search.postgres import date_ranges
from context_engine.search.ranking import TurnRow, rank_turns

# Lucene HNSW with cosine similarity: filtered k-NN is exact-when-needed in Lucene, so the
# user filter never starves the result.
_KNN = {"type": "knn_vector", "method": {"name": "hnsw", "space_type": "cosinesimil", "engine": "lucene",
                                         "parameters": {"m": 16, "ef_construction": 128}}}


def turn_mappings(dim: int) -> dict[str, Any]:
    return {
        "settings": {"index": {"knn": True}},
        "mappings": {"dynamic": "strict", "properties": {
            "tenant_id": {"type": "keyword"}, "agent_id": {"type": "keyword"}, "user_id": {"type": "keyword"},
            "session_id": {"type": "keyword"}, "seq": {"type": "integer"}, "occurred_at": {"type": "date"},
            "question": {"type": "text", "index": False}, "answer": {"type": "text", "index": False},
            # the Python analyzer's terms: whitespace only, so BM25 here counts exactly those
            "lex": {"type": "text", "analyzer": "whitespace"},
            "lex_q": {"type": "keyword", "index": False}, "lex_a": {"type": "keyword", "index": False},
            "lex_len": {"type": "integer"},
            "embedding": {**_KNN, "dimension": dim},
            "q_embedding": {**_KNN, "dimension": dim},
            "a_embedding": {**_KNN, "dimension": dim},
        }},
    }


def memory_mappings(dim: int) -> dict[str, Any]:
    return {
        "settings": {"index": {"knn": True}},
        "mappings": {"dynamic": "strict", "properties": {
            "tenant_id": {"type": "keyword"}, "agent_id": {"type": "keyword"}, "user_id": {"type": "keyword"},
            "visibility": {"type": "keyword"}, "content": {"type": "text", "analyzer": "english"},
            "importance": {"type": "float"}, "source_turn_ids": {"type": "keyword"},
            "metadata": {"type": "object", "enabled": False}, "token_count": {"type": "integer"},
            "created_at": {"type": "date"}, "updated_at": {"type": "date"},
            "embedding": {**_KNN, "dimension": dim},
        }},
    }


# --- the client ----------------------------------------------------------------------------
# An Amazon OpenSearch Service endpoint: ``[vpc-]name-id.<region>.es.amazonaws.com`` (``.cn`` in
# the China partitions); ``aoss`` is OpenSearch Serverless.
_AWS_HOST = re.compile(r"\.(?P<region>[a-z]{2}(?:-[a-z]+)+-\d+)\.(?P<service>es|aoss)\.amazonaws\.com(?:\.cn)?$")
CLIENT_TIMEOUT_S = 5


def build_client(url: str, *, sign: bool | None = None, region: str | None = None,
                 timeout: float = CLIENT_TIMEOUT_S) -> Any:
    """An ``OpenSearch`` client for ``url``.

    A domain's endpoint (an ``*.es.amazonaws.com`` host) admits only IAM principals, so its
    requests are SigV4-signed (``AWSV4SignerAuth`` over ``RequestsHttpConnection``, service
    ``es``) with the credentials boto3 resolves — in Lambda, the function role's, refreshed
    by boto3 as they rotate. The region comes from the host, else ``region``, else boto3's
    (``AWS_REGION``). Any other URL (``osmem-server``, a local OpenSearch) is used unsigned
    unless ``sign=True``."""
    from opensearchpy import OpenSearch

    host = urlsplit(url).hostname or ""
    match = _AWS_HOST.search(host)
    if sign is None:
        sign = match is not None
    if not sign:
        return OpenSearch(hosts=[url], timeout=timeout)

    import boto3
    from opensearchpy import AWSV4SignerAuth, RequestsHttpConnection

    session = boto3.Session()
    credentials = session.get_credentials()
    if credentials is None:
        raise RuntimeError("OpenSearch requests must be SigV4-signed but boto3 found no AWS credentials")
    signing_region = match["region"] if match else (region or session.region_name)
    if not signing_region:
        raise RuntimeError(f"no AWS region to sign OpenSearch requests to {host!r} (set AWS_REGION)")
    service = match["service"] if match else "es"
    return OpenSearch(
        hosts=[url],
        http_auth=AWSV4SignerAuth(credentials, signing_region, service),
        connection_class=RequestsHttpConnection,
        verify_certs=True,
        timeout=timeout,
        # the query path runs the turn and memory searches concurrently
        pool_maxsize=8,
    )


# --- request bodies (pure: the k-NN ones are tested for their shape) -------------------------
def scope_filter(scope: Scope) -> list[dict[str, Any]]:
    return [{"term": {"tenant_id": scope.tenant_id}}, {"term": {"agent_id": scope.agent_id}},
            {"term": {"user_id": scope.user_id}}]


def memory_filter(scope: Scope) -> list[dict[str, Any]]:
    visible: list[dict[str, Any]] = [{"term": {"visibility": "agent"}}]
    if scope.user_id is not None:
        visible.append({"bool": {"filter": [{"term": {"visibility": "private"}},
                                            {"term": {"user_id": scope.user_id}}]}})
    return [{"term": {"tenant_id": scope.tenant_id}}, {"term": {"agent_id": scope.agent_id}},
            {"bool": {"should": visible, "minimum_should_match": 1}}]


def stats_body(scope: Scope, terms: Sequence[str]) -> dict[str, Any]:
    """The user's document count and length, and each term's document frequency."""
    aggs: dict[str, Any] = {"len": {"sum": {"field": "lex_len"}}}
    if terms:
        aggs["df"] = {"filters": {"filters": {t: {"term": {"lex": t}} for t in terms}}}
    return {"size": 0, "track_total_hits": True, "query": {"bool": {"filter": scope_filter(scope)}}, "aggs": aggs}


KEY_FIELDS = ["session_id", "seq"]


def bm25_body(filters: list[dict[str, Any]], field: str, terms: Sequence[str], size: int,
              source: Any = False) -> dict[str, Any]:
    return {"size": size, "_source": source, "query": {"bool": {
        "filter": filters, "should": [{"term": {field: t}} for t in terms], "minimum_should_match": 1}}}


def knn_body(filters: list[dict[str, Any]], vector: Vector, k: int, field: str = "embedding",
             source: Any = False) -> dict[str, Any]:
    """Filtered k-NN: the filter inside the knn clause (efficient filtering), k results."""
    return {"size": k, "_source": source, "query": {"knn": {field: {
        "vector": [float(x) for x in vector], "k": k, "filter": {"bool": {"filter": filters}}}}}}


def selection(ids: Sequence[str], keys: Sequence[tuple[str, int]]) -> dict[str, Any]:
    """Turns by id or by (session, seq)."""
    wanted: list[dict[str, Any]] = [{"ids": {"values": list(ids)}}] if ids else []
    by_session: dict[str, list[int]] = {}
    for session, seq in keys:
        by_session.setdefault(session, []).append(seq)
    wanted += [{"bool": {"filter": [{"term": {"session_id": s}}, {"terms": {"seq": seqs}}]}}
               for s, seqs in by_session.items()]
    return {"bool": {"should": wanted, "minimum_should_match": 1}}


def cosine_body(scope: Scope, select: dict[str, Any], size: int, vector: Vector, field: str) -> dict[str, Any]:
    """Exact cosine of ``vector`` with ``field`` for the selected turns (``knn_score`` with
    ``cosinesimil`` scores 1 + cosine)."""
    return {"size": size, "_source": False, "query": {"script_score": {
        "query": {"bool": {"filter": [*scope_filter(scope), select]}},
        "script": {"source": "knn_score", "lang": "knn", "params": {
            "field": field, "query_value": [float(x) for x in vector], "space_type": "cosinesimil"}}}}}


def date_body(scope: Scope, ranges: Sequence[tuple[dt.datetime, dt.datetime]], terms: Sequence[str],
              size: int) -> dict[str, Any]:
    in_range = [{"range": {"occurred_at": {"gte": lo.isoformat(), "lt": hi.isoformat()}}} for lo, hi in ranges]
    return {"size": size, "_source": KEY_FIELDS, "sort": ["_score", {"occurred_at": "asc"}], "query": {"bool": {
        "filter": [*scope_filter(scope), {"bool": {"should": in_range, "minimum_should_match": 1}}],
        "should": [{"term": {"lex": t}} for t in terms]}}}


def rows_body(scope: Scope, select: dict[str, Any], size: int) -> dict[str, Any]:
    """The selected turns' documents (without their vectors)."""
    return {"size": size, "_source": {"excludes": ["embedding", "q_embedding", "a_embedding"]},
            "query": {"bool": {"filter": [*scope_filter(scope), select]}}}


def _rrf(rankings: Sequence[Sequence[str]], k: float) -> dict[str, float]:
    out: dict[str, float] = {}
    for ranking in rankings:
        for r, key in enumerate(ranking, start=1):
            out[key] = out.get(key, 0.0) + 1.0 / (k + r)
    return out


class OpenSearchBackend:
    name = "opensearch"

    def __init__(self, client: Any, *, prefix: str = "context-engine") -> None:
        self.client = client
        self.turns_index = f"{prefix}-turns"
        self.memories_index = f"{prefix}-memories"

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "context-engine", sign: bool | None = None,
                 region: str | None = None) -> OpenSearchBackend:
        return cls(build_client(url, sign=sign, region=region), prefix=prefix)

    def ensure_indices(self, dim: int) -> None:
        """Create the indices if missing (deploy time, or the first indexer run)."""
        for index, body in ((self.turns_index, turn_mappings(dim)), (self.memories_index, memory_mappings(dim))):
            if not self.client.indices.exists(index=index):
                self.client.indices.create(index=index, body=body)

    def _msearch(self, index: str, bodies: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        lines = []
        for body in bodies:
            lines += [json.dumps({"index": index}), json.dumps(body)]
        responses = self.client.msearch(body="\n".join(lines) + "\n")["responses"]
        for r in responses:
            if "error" in r:
                raise RuntimeError(f"OpenSearch request failed: {r['error']}")
        return list(responses)

    # --- IndexMirror ---------------------------------------------------------------------
    def upsert_turns(self, tenant_id: str, docs: Sequence[TurnDoc]) -> None:
        lines = []
        for d in docs:
            action = {"index": {"_index": self.turns_index, "_id": str(d.turn_id), "routing": tenant_id}}
            lines.append(json.dumps(action))
            doc: dict[str, Any] = {
                "tenant_id": tenant_id, "agent_id": d.agent_id, "user_id": d.user_id, "session_id": d.session_id,
                "seq": d.seq, "occurred_at": d.occurred_at.isoformat(), "question": d.question, "answer": d.answer,
                "lex": " ".join(d.lex_terms), "lex_q": d.lex_parts[0], "lex_a": d.lex_parts[1],
                "lex_len": len(d.lex_terms), "embedding": [float(x) for x in d.embedding]}
            if d.question_embedding is not None:
                doc["q_embedding"] = [float(x) for x in d.question_embedding]
            if d.answer_embedding is not None:
                doc["a_embedding"] = [float(x) for x in d.answer_embedding]
            lines.append(json.dumps(doc))
        self._bulk(lines)

    def upsert_memories(self, tenant_id: str, docs: Sequence[MemoryDoc]) -> None:
        lines = []
        for d in docs:
            m = d.memory
            lines.append(json.dumps({"index": {"_index": self.memories_index, "_id": str(m.id), "routing": tenant_id}}))
            lines.append(json.dumps({
                "tenant_id": tenant_id, "agent_id": m.agent_id, "user_id": m.user_id, "visibility": m.visibility,
                "content": m.content, "importance": m.importance,
                "source_turn_ids": [str(x) for x in m.source_turn_ids],
                "metadata": m.metadata, "token_count": m.token_count, "created_at": m.created_at.isoformat(),
                "updated_at": m.updated_at.isoformat(), "embedding": [float(x) for x in d.embedding]}))
        self._bulk(lines)

    def _bulk(self, lines: list[str]) -> None:
        if not lines:
            return
        res = self.client.bulk(body="\n".join(lines) + "\n", refresh="wait_for")
        if res.get("errors"):
            failed = [i for i in res["items"] if next(iter(i.values())).get("error")]
            raise RuntimeError(f"OpenSearch bulk: {len(failed)} documents failed, first: {failed[0]}")

    def delete_turns(self, tenant_id: str, turn_ids: Sequence[UUID]) -> None:
        self._delete(self.turns_index, tenant_id, [{"ids": {"values": [str(i) for i in turn_ids]}}])

    def delete_memories(self, tenant_id: str, memory_ids: Sequence[UUID]) -> None:
        self._delete(self.memories_index, tenant_id, [{"ids": {"values": [str(i) for i in memory_ids]}}])

    def delete_session(self, tenant_id: str, session_id: str) -> None:
        self._delete(self.turns_index, tenant_id, [{"term": {"session_id": session_id}}])

    def delete_user(self, tenant_id: str, user_id: str) -> None:
        for index in (self.turns_index, self.memories_index):
            self._delete(index, tenant_id, [{"term": {"user_id": user_id}}])

    def _delete(self, index: str, tenant_id: str, what: list[dict[str, Any]]) -> None:
        self.client.delete_by_query(index=index, routing=tenant_id, refresh=True, body={"query": {"bool": {
            "filter": [{"term": {"tenant_id": tenant_id}}, *what]}}})

    # --- turns ---------------------------------------------------------------------------
    def search_turns(
        self, scope: Scope, query: SearchQuery, *, k: int, config: RankConfig | None = None,
        plan: CandidatePlan | None = None,
    ) -> TurnSearch:
        if scope.user_id is None:
            return TurnSearch(hits=[], candidates=0, round_trips=0)
        cfg = config or RankConfig()
        pl = plan or CandidatePlan()
        terms = list(query.features.terms)
        vec = query.vector
        ranges = date_ranges(query.features.dates, cfg) if pl.date_rows else []
        bodies = [stats_body(scope, terms)]
        if terms:
            bodies.append(bm25_body(scope_filter(scope), "lex", terms, pl.fts, KEY_FIELDS))
        if vec is not None:
            bodies.append(knn_body(scope_filter(scope), vec, pl.vector, source=KEY_FIELDS))
        if ranges:
            bodies.append(date_body(scope, ranges, terms, pl.date_rows))
        responses = iter(self._msearch(self.turns_index, bodies))
        head = next(responses)
        n_docs = int(head["hits"]["total"]["value"])
        buckets = head.get("aggregations", {}).get("df", {}).get("buckets", {})
        stats = CorpusStats(n_docs=n_docs, avg_len=float(head["aggregations"]["len"]["value"] or 0) / max(n_docs, 1),
                            df={t: int(b["doc_count"]) for t, b in buckets.items()})
        keys: dict[str, tuple[str, int]] = {}

        def hits() -> list[str]:
            out = []
            for h in next(responses)["hits"]["hits"]:
                keys[h["_id"]] = (h["_source"]["session_id"], int(h["_source"]["seq"]))
                out.append(h["_id"])
            return out

        lexical = hits() if terms else []
        dense = hits() if vec is not None else []
        dated = hits() if ranges else []
        first = list(dict.fromkeys(lexical + dense + dated))
        if not first:
            return TurnSearch(hits=[], candidates=0, round_trips=1)
        # neighbours of the best by reciprocal-rank fusion of BM25 and k-NN
        fused = sorted(_rrf([lexical, dense], pl.rrf_k).items(), key=lambda kv: -kv[1])
        top = [key for key, _ in fused[: pl.neighbours_of_top or len(fused)]] if pl.neighbours else []
        have = set(keys.values())
        around = list(dict.fromkeys((keys[i][0], q) for i in top for q in (keys[i][1] - 1, keys[i][1] + 1)
                                    if q > 0 and (keys[i][0], q) not in have))
        rows = self._rows(scope, first, around, vec)

        def fetch_neighbours(wanted: list[tuple[str, int]]) -> list[TurnRow]:
            return self._rows(scope, [], wanted, vec)

        found = rank_turns(query, rows, stats, k=k, config=cfg, plan=pl, fetch_neighbours=fetch_neighbours)
        return TurnSearch(hits=found.hits, candidates=found.candidates, round_trips=found.round_trips + 1)

    def _rows(self, scope: Scope, ids: list[str], keys: list[tuple[str, int]], vec: Vector | None) -> list[TurnRow]:
        """One round trip: the selected turns' documents and, with a vector, their cosines."""
        select = selection(ids, keys)
        size = len(ids) + len(keys)
        bodies = [rows_body(scope, select, size)]
        fields = ("embedding", "q_embedding", "a_embedding")
        if vec is not None:
            bodies += [cosine_body(scope, select, size, vec, f) for f in fields]
        responses = self._msearch(self.turns_index, bodies)
        cos: dict[str, dict[str, float]] = {}
        for field, r in zip(fields, responses[1:], strict=False):
            for h in r["hits"]["hits"]:
                cos.setdefault(h["_id"], {})[field] = float(h["_score"]) - 1.0  # knn_score: 1 + cosine
        return [self._row(h["_id"], h["_source"], cos) for h in responses[0]["hits"]["hits"]]

    @staticmethod
    def _row(turn_id: str, src: dict[str, Any], cos: dict[str, dict[str, float]]) -> TurnRow:
        c = cos.get(turn_id, {})
        return TurnRow(id=turn_id, session_id=src["session_id"], seq=int(src["seq"]), question=src["question"],
                       answer=src["answer"], occurred_at=dt.datetime.fromisoformat(src["occurred_at"]),
                       lex_parts=(src.get("lex_q", ""), src.get("lex_a", "")), cosine=c.get("embedding"),
                       part_cosines=(c.get("q_embedding"), c.get("a_embedding")))

    # --- memories ------------------------------------------------------------------------
    def search_memories(self, scope: Scope, query: SearchQuery, *, k: int, rrf_k: float = 60.0,
                        per_source: int = 50) -> list[ScoredMemory]:
        words = list(dict.fromkeys(analyze(query.text)))
        bodies = []
        if words:
            bodies.append({"size": per_source, "_source": False, "query": {"bool": {
                "filter": memory_filter(scope), "must": [{"match": {"content": query.text}}]}}})
        vec = query.vector
        if vec is not None:
            bodies.append(knn_body(memory_filter(scope), vec, per_source))
        if not bodies:
            return []
        responses = iter(self._msearch(self.memories_index, bodies))
        lexical = [h["_id"] for h in next(responses)["hits"]["hits"]] if words else []
        dense = [h["_id"] for h in next(responses)["hits"]["hits"]] if vec is not None else []
        fused = sorted(_rrf([lexical, dense], rrf_k).items(), key=lambda kv: -kv[1])[:k]
        if not fused:
            return []
        docs = self.client.search(index=self.memories_index, body={
            "size": len(fused), "_source": {"excludes": ["embedding"]},
            "query": {"bool": {"filter": [*memory_filter(scope), {"ids": {"values": [i for i, _ in fused]}}]}}})
        by_id = {h["_id"]: h["_source"] for h in docs["hits"]["hits"]}
        out = []
        for mid, score in fused:
            src = by_id.get(mid)
            if src is None:
                continue
            memory = Memory(id=UUID(mid), **{f: src[f] for f in (
                "agent_id", "user_id", "visibility", "content", "importance", "source_turn_ids", "metadata",
                "token_count", "created_at", "updated_at")})
            out.append(ScoredMemory(memory=memory, score=score,
                                    lexical_rank=lexical.index(mid) + 1 if mid in lexical else None,
                                    vector_rank=dense.index(mid) + 1 if mid in dense else None))
        out.sort(key=lambda m: (-m.score, -m.memory.importance))
        return out
