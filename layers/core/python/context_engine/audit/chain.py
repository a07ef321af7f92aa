"""Tamper-evident, per-tenant hash chain of audit records.

Every record is linked to its predecessor in the same tenant:

    hash(k) = SHA-256_hex( prev_hash(k) || canonical(record k) ),  prev_hash(k) = hash(k-1)

with ``prev_hash(1) = GENESIS_HASH``. Changing, deleting, inserting or reordering any record
breaks the link at that record (or, for a deletion, at its successor), and ``verify_chain``
names the first broken one. Rewriting a record *and every later hash* is only detectable
against an anchor kept elsewhere (pass ``expected_head_hash``).

Canonical form (version 1; changing it invalidates every stored hash, so don't):

- a JSON object with exactly the fields in ``CANONICAL_FIELDS`` (absent optionals are
  ``null``; ``prev_hash`` and ``hash`` are not part of it);
- keys sorted, no whitespace (separators ``,`` and ``:``), non-ASCII kept as UTF-8
  (``ensure_ascii=False``), then encoded as UTF-8;
- ``occurred_at`` as UTC ISO-8601 with exactly six fractional digits and a ``Z`` suffix,
  e.g. ``2024-05-01T12:00:00.000000Z`` (PostgreSQL ``timestamptz`` keeps microseconds, so a
  stored record round-trips exactly);
- ``details`` holds only strings, integers, booleans, null, lists and objects with string
  keys. Floats are rejected: their text form is not stable across languages, and audit
  details are counts and identifiers. Strings must not contain NUL (PostgreSQL rejects it)
  or lone surrogates (not encodable as UTF-8).

``prev_hash`` enters the digest as its 64 ASCII hex characters, directly followed by the
canonical bytes.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from context_engine.privacy.sensitive import is_sensitive_key

GENESIS_HASH: Final = "0" * 64
HASH_PATTERN: Final = r"^[0-9a-f]{64}$"
_HASH_RE: Final = re.compile(HASH_PATTERN)

CANONICAL_FIELDS: Final[tuple[str, ...]] = (
    "id",
    "tenant_id",
    "seq",
    "occurred_at",
    "actor",
    "role",
    "action",
    "resource_type",
    "resource_id",
    "outcome",
    "request_id",
    "trace_id",
    "details",
)

# Details are metadata (ids, counts, reasons), never content; these bounds keep them so.
MAX_DETAIL_STRING: Final = 1024
MAX_DETAIL_DEPTH: Final = 6


class AuditOutcome(StrEnum):
    SUCCESS = "success"
    DENIED = "denied"
    NOT_FOUND = "not_found"
    FAILED = "failed"


def _check_text(value: str, where: str) -> None:
    if "\x00" in value:
        raise ValueError(f"{where}: NUL characters are not allowed")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{where}: not encodable as UTF-8") from exc


def _check_detail(value: Any, path: str, depth: int) -> Any:
    """Validate one details value and return it in canonical container types."""
    if depth > MAX_DETAIL_DEPTH:
        raise ValueError(f"{path}: nested deeper than {MAX_DETAIL_DEPTH}")
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        raise ValueError(f"{path}: floats are not allowed in audit details (use int or str)")
    if isinstance(value, str):
        _check_text(value, path)
        if len(value) > MAX_DETAIL_STRING:
            raise ValueError(f"{path}: longer than {MAX_DETAIL_STRING} characters; details hold no content")
        return value
    if isinstance(value, list | tuple):
        return [_check_detail(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value)]
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, v in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{path}: keys must be strings")
            _check_text(key, path)
            if is_sensitive_key(key):
                raise ValueError(f"{path}.{key}: content and secrets never go into audit details")
            out[key] = _check_detail(v, f"{path}.{key}", depth + 1)
        return out
    raise ValueError(f"{path}: unsupported type {type(value).__name__}")


class AuditRecord(BaseModel):
    """One audited event, before it is linked into the chain."""

    # hide_input_in_errors: a rejected details value may be content; the error must not echo it.
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    id: str = Field(min_length=1, max_length=128)
    tenant_id: str = Field(min_length=1, max_length=128)
    seq: int = Field(ge=1, strict=True, description="per-tenant, 1-based, no gaps")
    occurred_at: AwareDatetime
    actor: str = Field(min_length=1, max_length=256)
    role: str = Field(min_length=1, max_length=64)
    action: str = Field(min_length=1, max_length=128)
    resource_type: str = Field(min_length=1, max_length=64)
    resource_id: str | None = Field(default=None, max_length=256)
    outcome: AuditOutcome
    request_id: str | None = Field(default=None, max_length=256)
    trace_id: str | None = Field(default=None, max_length=256)
    details: dict[str, Any] = Field(default_factory=dict)

    @field_validator("occurred_at")
    @classmethod
    def _to_utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)

    @field_validator(
        "id", "tenant_id", "actor", "role", "action", "resource_type", "resource_id", "request_id", "trace_id"
    )
    @classmethod
    def _clean_text(cls, value: str | None) -> str | None:
        if value is not None:
            _check_text(value, "value")
        return value

    @field_validator("details", mode="before")
    @classmethod
    def _check_details(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            raise ValueError("details must be an object")
        return _check_detail(value, "details", 0)


class StoredAuditRecord(AuditRecord):
    """A record as persisted: with its link to the predecessor and its own hash."""

    prev_hash: str = Field(pattern=HASH_PATTERN)
    hash: str = Field(pattern=HASH_PATTERN)


def format_timestamp(value: datetime) -> str:
    """``2024-05-01T12:00:00.000000Z``: the canonical timestamp text."""
    if value.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def canonical_bytes(record: AuditRecord) -> bytes:
    """The exact bytes that are hashed for ``record`` (see the module docstring)."""
    doc: dict[str, Any] = {name: getattr(record, name) for name in CANONICAL_FIELDS}
    doc["occurred_at"] = format_timestamp(record.occurred_at)
    doc["outcome"] = record.outcome.value
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.encode("utf-8")


def compute_hash(prev_hash: str, record: AuditRecord) -> str:
    """SHA-256 hex over ``prev_hash`` (64 hex chars) followed by the canonical form."""
    if not _HASH_RE.match(prev_hash):
        raise ValueError("prev_hash must be 64 lower-case hex characters")
    return hashlib.sha256(prev_hash.encode("ascii") + canonical_bytes(record)).hexdigest()


def seal(record: AuditRecord, prev: StoredAuditRecord | None) -> StoredAuditRecord:
    """Link ``record`` after ``prev`` (``None`` for a tenant's first record).

    The appender calls this inside the transaction that reads the tenant's current head,
    so concurrent writers cannot fork the chain.
    """
    if prev is None:
        if record.seq != 1:
            raise ValueError(f"the first record of a chain has seq 1, not {record.seq}")
        prev_hash = GENESIS_HASH
    else:
        if record.tenant_id != prev.tenant_id:
            raise ValueError("a chain never crosses tenants")
        if record.seq != prev.seq + 1:
            raise ValueError(f"expected seq {prev.seq + 1}, got {record.seq}")
        prev_hash = prev.hash
    sealed = {**record.model_dump(), "prev_hash": prev_hash, "hash": compute_hash(prev_hash, record)}
    return StoredAuditRecord.model_validate(sealed)


class ChainBreak(StrEnum):
    TENANT_MISMATCH = "tenant_mismatch"
    SEQ_GAP = "seq_gap"
    PREV_HASH_MISMATCH = "prev_hash_mismatch"
    HASH_MISMATCH = "hash_mismatch"
    HEAD_MISMATCH = "head_mismatch"


class ChainVerification(BaseModel):
    """Result of ``verify_chain``.

    ``checked`` counts the intact records before the first break (all of them when
    ``ok``); ``first_broken_seq``/``first_broken_id`` are the values stored on the first
    broken record. ``last_hash`` is the hash of the last intact record, so a caller can
    verify a long chain page by page.
    """

    model_config = ConfigDict(frozen=True)

    ok: bool
    checked: int
    first_broken_seq: int | None = None
    first_broken_id: str | None = None
    reason: ChainBreak | None = None
    detail: str | None = None
    last_hash: str


def verify_chain(
    records: Iterable[StoredAuditRecord],
    *,
    prev_hash: str = GENESIS_HASH,
    start_seq: int = 1,
    expected_head_hash: str | None = None,
) -> ChainVerification:
    """Recompute the chain over ``records`` (one tenant, ordered by ``seq``).

    To verify from the middle, pass the preceding record's ``hash`` as ``prev_hash`` and
    its ``seq + 1`` as ``start_seq``. ``expected_head_hash`` (an anchor kept outside the
    table) also catches deletion of the newest records, which a chain alone cannot.
    """
    expected_seq = start_seq
    expected_prev = prev_hash
    tenant: str | None = None
    checked = 0

    def broken(rec: StoredAuditRecord, reason: ChainBreak, detail: str) -> ChainVerification:
        return ChainVerification(
            ok=False,
            checked=checked,
            first_broken_seq=rec.seq,
            first_broken_id=rec.id,
            reason=reason,
            detail=detail,
            last_hash=expected_prev,
        )

    for rec in records:
        if tenant is None:
            tenant = rec.tenant_id
        elif rec.tenant_id != tenant:
            return broken(
                rec,
                ChainBreak.TENANT_MISMATCH,
                f"tenant {rec.tenant_id!r} is not the chain's tenant {tenant!r}",
            )
        if rec.seq != expected_seq:
            return broken(rec, ChainBreak.SEQ_GAP, f"expected seq {expected_seq}, found {rec.seq}")
        if rec.prev_hash != expected_prev:
            return broken(rec, ChainBreak.PREV_HASH_MISMATCH, "prev_hash is not the previous record's hash")
        if compute_hash(rec.prev_hash, rec) != rec.hash:
            return broken(rec, ChainBreak.HASH_MISMATCH, "stored hash does not match the recomputed hash")
        checked += 1
        expected_prev = rec.hash
        expected_seq += 1

    if expected_head_hash is not None and expected_head_hash != expected_prev:
        return ChainVerification(
            ok=False,
            checked=checked,
            first_broken_seq=expected_seq,
            reason=ChainBreak.HEAD_MISMATCH,
            detail=f"chain ends at seq {expected_seq - 1} but the anchored head differs",
            last_hash=expected_prev,
        )
    return ChainVerification(ok=True, checked=checked, last_hash=expected_prev)
