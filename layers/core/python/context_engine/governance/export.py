"""GDPR export: one JSON document with everything stored about one user.

The document holds the user's sessions (with their context windows and summaries), turns,
tool calls (arguments and results), memories (private ones and the shared ones they
contributed), their turns in other users' sessions, the audit records about them, and the
classification labels of the tenant and of every agent involved. Derived index data
(embeddings, analyzed terms) is left out: it is a function of the exported text.

Where it goes: an S3 object (SSE-KMS when a key is configured) with a presigned URL in AWS,
a file under ``<data dir>/exports/<tenant>/`` locally (mode 0600). The object key names the
tenant and the job, never the user.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from uuid import UUID

from context_engine.audit import store as audit_store
from context_engine.db.database import Conn
from context_engine.governance.models import ExportLocation, ExportResult
from context_engine.governance.settings import GovernanceSettings
from context_engine.privacy.classification import DataClassification
from context_engine.runtime import Runtime

FORMAT = "context-engine.user-export.v1"
JOB_KIND = "export"

_TURN_COLS = "id, session_id, agent_id, user_id, seq, question, answer, occurred_at, token_count, metadata, created_at"
_CALL_COLS = ("call_id, session_id, agent_id, user_id, turn_id, parent_call_id, chain_seq, name, arguments, status,"
              " result, error, token_count, created_at, updated_at, finished_at")
_MEMORY_COLS = ("id, agent_id, user_id, visibility, content, importance, source_turn_ids, metadata, token_count,"
                " created_at, updated_at")


def _rows(conn: Conn, sql: str, args: list[Any]) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute(sql, args).fetchall()]


def build_document(conn: Conn, tenant_id: str, user_id: str, *, job_id: UUID) -> dict[str, Any]:
    """Read everything about ``user_id`` (one transaction) into the export document."""
    tenant = conn.execute("select id, name, classification from tenants where id = %s", [tenant_id]).fetchone()
    sessions = _rows(conn, "select id, agent_id, user_id, last_seq, turn_count, token_count, created_at, updated_at"
                           " from sessions where tenant_id = %s and user_id = %s order by created_at, id",
                     [tenant_id, user_id])
    session_ids = [s["id"] for s in sessions]
    windows = {w["session_id"]: w for w in _rows(
        conn, "select session_id, summary, summary_covers_seq, summary_seqs, summary_tokens, strategy, version,"
              " updated_at from context_windows where tenant_id = %s and session_id = any(%s)",
        [tenant_id, session_ids])}
    turns = _rows(conn, f"select {_TURN_COLS} from turns where tenant_id = %s and user_id = %s"
                        " order by session_id, seq", [tenant_id, user_id])
    calls = _rows(conn, f"select {_CALL_COLS} from tool_calls where tenant_id = %s and user_id = %s"
                        " order by session_id, chain_seq", [tenant_id, user_id])
    turn_ids = [t["id"] for t in turns]
    memories = _rows(conn, f"select {_MEMORY_COLS} from memories where tenant_id = %s and (user_id = %s"
                           " or source_turn_ids && %s::uuid[]) order by created_at, id",
                     [tenant_id, user_id, turn_ids])
    agent_ids = sorted({*(s["agent_id"] for s in sessions), *(t["agent_id"] for t in turns),
                        *(c["agent_id"] for c in calls), *(m["agent_id"] for m in memories)})
    agents = {a["id"]: a["classification"] for a in _rows(
        conn, "select id, classification from agents where tenant_id = %s and id = any(%s)", [tenant_id, agent_ids])}
    tenant_label = DataClassification((tenant or {}).get("classification") or "internal")
    agent_labels = {}
    for agent in agent_ids:
        label = DataClassification(agents.get(agent) or DataClassification.INTERNAL.value)
        agent_labels[agent] = {"classification": label.value,
                               "effective": DataClassification.most_restrictive(tenant_label, label).value}
    audit = audit_store.about_subject(conn, tenant_id, user_id, {
        "session": session_ids, "turn": [str(t) for t in turn_ids], "memory": [str(m["id"]) for m in memories],
        "tool_call": [c["call_id"] for c in calls]})

    own = set(session_ids)
    by_session: dict[str, dict[str, list[dict[str, Any]]]] = {sid: {"turns": [], "tool_calls": []} for sid in own}
    other_turns: list[dict[str, Any]] = []
    other_calls: list[dict[str, Any]] = []
    for t in turns:
        (by_session[t["session_id"]]["turns"] if t["session_id"] in own else other_turns).append(t)
    for c in calls:
        (by_session[c["session_id"]]["tool_calls"] if c["session_id"] in own else other_calls).append(c)
    return {
        "format": FORMAT,
        "job_id": str(job_id),
        "tenant_id": tenant_id,
        "user_id": user_id,
        "generated_at": datetime.now(UTC).isoformat(),
        "classification": {"tenant": tenant_label.value, "agents": agent_labels},
        "sessions": [{**s, "context_window": windows.get(s["id"]), **by_session[s["id"]]} for s in sessions],
        "turns_in_other_sessions": other_turns,
        "tool_calls_in_other_sessions": other_calls,
        "memories": memories,
        "audit_records": [r.model_dump(mode="json") for r in audit],
        "counts": {"sessions": len(sessions), "turns": len(turns), "tool_calls": len(calls),
                   "memories": len(memories), "audit_records": len(audit),
                   "summaries": sum(1 for w in windows.values() if w.get("summary"))},
    }


def serialize(document: dict[str, Any]) -> bytes:
    return json.dumps(document, default=str, ensure_ascii=False, sort_keys=False).encode("utf-8")


# --- where exports are stored ------------------------------------------------------------
class ExportStore(Protocol):
    def put(self, tenant_id: str, job_id: UUID, body: bytes) -> tuple[ExportLocation, str | None, datetime | None]:
        """Store; return the location and, when there is one, a download URL and its expiry."""
        ...

    def delete(self, location: ExportLocation) -> None: ...


class LocalExportStore:
    def __init__(self, data_dir: Path) -> None:
        self.root = (Path(data_dir) / "exports").resolve()

    def put(self, tenant_id: str, job_id: UUID, body: bytes) -> tuple[ExportLocation, str | None, datetime | None]:
        folder = self.root / _safe(tenant_id)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = folder / f"{job_id}.json"
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(body)
        tmp.replace(path)  # readers never see a half-written export
        return ExportLocation(kind="file", path=str(path)), path.as_uri(), None

    def delete(self, location: ExportLocation) -> None:
        if location.kind == "file" and location.path:
            path = Path(location.path).resolve()
            if self.root in path.parents:  # never delete outside the exports folder
                path.unlink(missing_ok=True)


class S3ExportStore:
    def __init__(self, bucket: str, *, prefix: str, kms_key_id: str | None, url_ttl_s: int, client: Any = None):
        import boto3

        self.bucket, self.prefix, self.kms_key_id, self.url_ttl_s = bucket, prefix, kms_key_id, url_ttl_s
        self.client = client or boto3.client("s3")

    def put(self, tenant_id: str, job_id: UUID, body: bytes) -> tuple[ExportLocation, str | None, datetime | None]:
        key = f"{self.prefix}{_safe(tenant_id)}/{job_id}.json"
        extra: dict[str, Any] = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": self.kms_key_id} \
            if self.kms_key_id else {"ServerSideEncryption": "AES256"}
        self.client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="application/json", **extra)
        url = self.client.generate_presigned_url("get_object", Params={"Bucket": self.bucket, "Key": key},
                                                 ExpiresIn=self.url_ttl_s)
        expires = datetime.now(UTC) + timedelta(seconds=self.url_ttl_s)
        return ExportLocation(kind="s3", bucket=self.bucket, key=key), url, expires

    def delete(self, location: ExportLocation) -> None:
        if location.kind == "s3" and location.bucket and location.key:
            self.client.delete_object(Bucket=location.bucket, Key=location.key)


def _safe(component: str) -> str:
    """A tenant id as one path component (ids are [A-Za-z0-9._:@-]; keep it that way)."""
    cleaned = "".join(ch if ch.isalnum() or ch in "._@-" else "_" for ch in component)
    return cleaned.lstrip(".") or "_"


def export_store(rt: Runtime, gov: GovernanceSettings) -> ExportStore:
    if gov.export_bucket:
        return S3ExportStore(gov.export_bucket, prefix=gov.export_prefix, kms_key_id=gov.export_kms_key_id,
                             url_ttl_s=gov.export_url_ttl_s)
    return LocalExportStore(rt.settings.data_dir)


def write_export(store: ExportStore, tenant_id: str, job_id: UUID, document: dict[str, Any]) -> ExportResult:
    body = serialize(document)
    location, url, expires = store.put(tenant_id, job_id, body)
    return ExportResult(format=FORMAT, bytes=len(body), sha256=hashlib.sha256(body).hexdigest(),
                        counts=document["counts"], location=location, url=url, url_expires_at=expires,
                        generated_at=datetime.fromisoformat(document["generated_at"]))
