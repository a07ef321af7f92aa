"""The audit hash chain: canonical form, sealing, and verification naming the first broken link."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from context_engine.audit.chain import (
    CANONICAL_FIELDS,
    GENESIS_HASH,
    AuditOutcome,
    AuditRecord,
    ChainBreak,
    StoredAuditRecord,
    canonical_bytes,
    compute_hash,
    format_timestamp,
    seal,
    verify_chain,
)

T0 = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


def record(seq: int, tenant: str = "t1", **over: Any) -> AuditRecord:
    data: dict[str, Any] = {
        "id": f"rec-{tenant}-{seq}",
        "tenant_id": tenant,
        "seq": seq,
        "occurred_at": T0 + timedelta(seconds=seq),
        "actor": "key_7f3a",
        "role": "writer",
        "action": "turn.write",
        "resource_type": "turn",
        "resource_id": f"turn-{seq}",
        "outcome": AuditOutcome.SUCCESS,
        "request_id": f"req-{seq}",
        "trace_id": "1-5759e988-bd862e3fe1be46a994272793",
        "details": {"session_id": "s1", "pii": {"email": {"hash": seq % 3}}, "tags": ["a", seq]},
    }
    data.update(over)
    return AuditRecord(**data)


def build_chain(n: int, tenant: str = "t1") -> list[StoredAuditRecord]:
    chain: list[StoredAuditRecord] = []
    for seq in range(1, n + 1):
        chain.append(seal(record(seq, tenant), chain[-1] if chain else None))
    return chain


# --- canonical form -----------------------------------------------------------------------


def test_canonical_form_is_pinned() -> None:
    # A change to the canonical form would invalidate every stored hash: this test pins it.
    rec = AuditRecord(
        id="a1",
        tenant_id="t",
        seq=1,
        occurred_at=datetime(2024, 5, 1, 14, 0, tzinfo=timezone(timedelta(hours=2))),
        actor="key_1",
        role="admin",
        action="user.erase",
        resource_type="user",
        resource_id="u-ü",
        outcome=AuditOutcome.SUCCESS,
        details={"b": [1, True, None], "a": {"z": "é", "y": 0}},
    )
    expected = (
        '{"action":"user.erase","actor":"key_1","details":{"a":{"y":0,"z":"é"},"b":[1,true,null]},'
        '"id":"a1","occurred_at":"2024-05-01T12:00:00.000000Z","outcome":"success","request_id":null,'
        '"resource_id":"u-ü","resource_type":"user","role":"admin","seq":1,"tenant_id":"t","trace_id":null}'
    ).encode()
    assert canonical_bytes(rec) == expected
    assert compute_hash(GENESIS_HASH, rec) == hashlib.sha256(GENESIS_HASH.encode() + expected).hexdigest()


def test_canonical_fields_cover_the_model_exactly() -> None:
    assert set(CANONICAL_FIELDS) == set(AuditRecord.model_fields)
    assert set(StoredAuditRecord.model_fields) - set(CANONICAL_FIELDS) == {"prev_hash", "hash"}


def test_timestamps_are_utc_with_microseconds() -> None:
    assert format_timestamp(datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2024-01-02T03:04:05.000000Z"
    assert format_timestamp(datetime(2024, 1, 2, 0, 0, 0, 7, tzinfo=timezone(timedelta(hours=-5)))) == (
        "2024-01-02T05:00:00.000007Z"
    )
    same_instant = (T0 + timedelta(seconds=1)).astimezone(timezone(timedelta(hours=9, minutes=30)))
    shifted = record(1, occurred_at=same_instant)
    assert compute_hash(GENESIS_HASH, record(1)) == compute_hash(GENESIS_HASH, shifted)
    assert record(1, occurred_at=same_instant).occurred_at.tzinfo is UTC
    with pytest.raises(ValidationError):
        record(1, occurred_at=datetime(2024, 1, 1))  # naive: ambiguous instant
    with pytest.raises(ValueError):
        format_timestamp(datetime(2024, 1, 1))


def test_details_tuples_canonicalise_to_lists() -> None:
    as_tuple, as_list = record(1, details={"x": (1, 2)}), record(1, details={"x": [1, 2]})
    assert canonical_bytes(as_tuple) == canonical_bytes(as_list)


@pytest.mark.parametrize(
    "details",
    [
        {"ratio": 0.5},
        {"nested": {"deep": [1.0]}},
        {"question": "what is my password?"},
        {"meta": {"Answer": "42"}},
        {"api_key": "ce_x"},
        {"authorization": "Bearer x"},
        {"blob": "x" * 5000},
        {"nul": "a\x00b"},
        {"surrogate": "\ud800"},
        {1: "non-string key"},
        {"obj": object()},
        {"a": {"b": {"c": {"d": {"e": {"f": {"g": 1}}}}}}},
    ],
)
def test_details_reject_floats_content_secrets_and_junk(details: dict[Any, Any]) -> None:
    with pytest.raises(ValidationError):
        record(1, details=details)


def test_validation_errors_do_not_echo_content() -> None:
    with pytest.raises(ValidationError) as err:
        record(1, details={"question": "my secret diagnosis"})
    assert "my secret diagnosis" not in str(err.value)


def test_other_invalid_records() -> None:
    for bad in ({"seq": 0}, {"seq": "1"}, {"outcome": "maybe"}, {"tenant_id": ""}, {"unknown": 1}):
        with pytest.raises(ValidationError):
            AuditRecord(**{**record(1).model_dump(), **bad})


def test_compute_hash_rejects_malformed_prev_hash() -> None:
    for bad in ("", "0" * 63, "G" * 64, ("A" * 64)):
        with pytest.raises(ValueError):
            compute_hash(bad, record(1))


# --- sealing ------------------------------------------------------------------------------


def test_seal_links_records() -> None:
    chain = build_chain(3)
    assert chain[0].prev_hash == GENESIS_HASH
    for prev, cur in zip(chain, chain[1:], strict=False):
        assert cur.prev_hash == prev.hash
        assert cur.hash == compute_hash(prev.hash, cur)
    assert len({r.hash for r in chain}) == 3


def test_seal_refuses_broken_links() -> None:
    chain = build_chain(2)
    with pytest.raises(ValueError, match="seq 1"):
        seal(record(2), None)
    with pytest.raises(ValueError, match="expected seq 3"):
        seal(record(4), chain[-1])
    with pytest.raises(ValueError, match="tenants"):
        seal(record(3, tenant="t2"), chain[-1])


# --- verification -------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 2, 17])
def test_intact_chain_verifies(n: int) -> None:
    chain = build_chain(n)
    result = verify_chain(chain)
    assert result.ok and result.checked == n and result.reason is None
    assert result.last_hash == (chain[-1].hash if chain else GENESIS_HASH)
    assert verify_chain(iter(chain)).ok  # any iterable, e.g. a streaming cursor


def test_chain_survives_a_json_round_trip() -> None:
    # What the store does: write the model as JSON/columns, read it back later.
    chain = [StoredAuditRecord.model_validate_json(r.model_dump_json()) for r in build_chain(5)]
    assert verify_chain(chain).ok


def _different(field: str, value: Any) -> Any:
    """A valid value different from ``value`` for ``field``."""
    if field == "seq":
        return value + 10
    if field == "occurred_at":
        return value + timedelta(microseconds=1)
    if field == "outcome":
        return AuditOutcome.DENIED if value is not AuditOutcome.DENIED else AuditOutcome.SUCCESS
    if field == "details":
        return {**value, "session_id": "s2"}
    if field in ("prev_hash", "hash"):
        return hashlib.sha256(value.encode()).hexdigest()
    if value is None:
        return "x"
    return value + "x"


TAMPERABLE = [*CANONICAL_FIELDS, "prev_hash", "hash"]


@settings(max_examples=150, deadline=None)
@given(n=st.integers(min_value=1, max_value=12), data=st.data())
def test_changing_any_field_of_record_k_breaks_exactly_at_k(n: int, data: st.DataObject) -> None:
    chain = build_chain(n)
    k = data.draw(st.integers(min_value=1, max_value=n), label="k")
    field = data.draw(st.sampled_from(TAMPERABLE), label="field")
    original = chain[k - 1]
    tampered = original.model_copy(update={field: _different(field, getattr(original, field))})
    chain[k - 1] = tampered

    result = verify_chain(chain)

    assert not result.ok
    assert result.checked == k - 1
    assert result.first_broken_seq == tampered.seq
    assert result.first_broken_id == tampered.id
    assert result.last_hash == (chain[k - 2].hash if k > 1 else GENESIS_HASH)
    expected_reason = {
        "seq": ChainBreak.SEQ_GAP,
        "prev_hash": ChainBreak.PREV_HASH_MISMATCH,
    }.get(field, ChainBreak.HASH_MISMATCH)
    if field == "tenant_id" and k > 1:
        expected_reason = ChainBreak.TENANT_MISMATCH
    assert result.reason is expected_reason


@given(n=st.integers(min_value=2, max_value=12), data=st.data())
def test_rehashing_a_tampered_record_breaks_at_its_successor(n: int, data: st.DataObject) -> None:
    chain = build_chain(n)
    k = data.draw(st.integers(min_value=1, max_value=n - 1), label="k")
    forged = chain[k - 1].model_copy(update={"actor": "someone-else"})
    chain[k - 1] = forged.model_copy(update={"hash": compute_hash(forged.prev_hash, forged)})

    result = verify_chain(chain)

    assert not result.ok and result.reason is ChainBreak.PREV_HASH_MISMATCH
    assert result.first_broken_seq == k + 1 and result.checked == k


@given(n=st.integers(min_value=2, max_value=12), data=st.data())
def test_deleting_record_k_breaks_at_k_plus_1(n: int, data: st.DataObject) -> None:
    chain = build_chain(n)
    k = data.draw(st.integers(min_value=1, max_value=n - 1), label="k")
    del chain[k - 1]

    result = verify_chain(chain)

    assert not result.ok and result.reason is ChainBreak.SEQ_GAP
    assert result.first_broken_seq == k + 1 and result.checked == k - 1


def test_deleting_the_newest_records_needs_an_anchor() -> None:
    chain = build_chain(5)
    head = chain[-1].hash
    truncated = chain[:3]
    assert verify_chain(truncated).ok  # a chain alone cannot know it lost its tail
    result = verify_chain(truncated, expected_head_hash=head)
    assert not result.ok and result.reason is ChainBreak.HEAD_MISMATCH
    assert result.first_broken_seq == 4 and result.checked == 3
    assert verify_chain(chain, expected_head_hash=head).ok


@given(n=st.integers(min_value=2, max_value=12), data=st.data())
def test_reordering_breaks_the_chain(n: int, data: st.DataObject) -> None:
    chain = build_chain(n)
    perm = data.draw(st.permutations(chain), label="order")
    first_moved = next((i for i, (a, b) in enumerate(zip(perm, chain, strict=True)) if a is not b), None)
    result = verify_chain(perm)
    if first_moved is None:
        assert result.ok
    else:
        assert not result.ok and result.checked == first_moved


def test_inserting_a_forged_record_is_detected() -> None:
    chain = build_chain(4)
    # Sealing needs no secret, so a forged record after seq 2 verifies on its own; the
    # genuine record that follows it no longer fits and is named.
    forged = seal(record(3, id="forged"), chain[1])
    result = verify_chain([*chain[:2], forged, *chain[2:]])
    assert not result.ok and result.checked == 3
    assert result.first_broken_seq == 3 and result.first_broken_id == "rec-t1-3"
    assert result.reason is ChainBreak.SEQ_GAP
    # Replacing record 3 by the forgery instead breaks at record 4.
    result = verify_chain([*chain[:2], forged, *chain[3:]])
    assert not result.ok and result.first_broken_seq == 4 and result.reason is ChainBreak.PREV_HASH_MISMATCH


def test_records_from_another_tenant_break_the_chain() -> None:
    chain = build_chain(3)
    other = build_chain(4, tenant="t2")
    result = verify_chain([*chain, other[3]])
    assert not result.ok and result.reason is ChainBreak.TENANT_MISMATCH and result.checked == 3


def test_chains_of_two_tenants_are_independent() -> None:
    a, b = build_chain(3, "a"), build_chain(3, "b")
    assert verify_chain(a).ok and verify_chain(b).ok
    assert a[0].hash != b[0].hash


def test_verification_page_by_page() -> None:
    chain = build_chain(10)
    prev_hash, start_seq = GENESIS_HASH, 1
    for page in (chain[:4], chain[4:7], chain[7:]):
        result = verify_chain(page, prev_hash=prev_hash, start_seq=start_seq)
        assert result.ok
        prev_hash, start_seq = result.last_hash, start_seq + result.checked
    assert prev_hash == chain[-1].hash
    # A page that does not continue from the previous one is rejected.
    assert not verify_chain(chain[7:], prev_hash=chain[5].hash, start_seq=8).ok
