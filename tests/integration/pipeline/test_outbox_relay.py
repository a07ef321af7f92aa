"""Nothing lost on the write path: the turn and its outbox row commit together; whatever the
write could not publish (PutEvents down, an entry rejected, the process gone right after
the commit) the relay publishes — through moto EventBridge rules into SQS — exactly once."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from botocore.exceptions import ClientError

from context_engine.pipeline import processed
from context_engine.pipeline.relay import relay_outbox
from context_engine.runtime import Runtime
from context_engine.services import turns

from .conftest import invoke, lambda_records, write_turns


class FlakyEvents:
    """The moto EventBridge client, with PutEvents failing in a chosen way while ``down``."""

    def __init__(self, real: Any, mode: str) -> None:
        self.real, self.mode, self.down, self.calls = real, mode, True, 0

    def put_events(self, **kwargs: Any) -> Any:
        self.calls += 1
        if not self.down:
            return self.real.put_events(**kwargs)
        if self.mode == "raise":
            raise ClientError({"Error": {"Code": "ServiceUnavailable", "Message": "EventBridge is down"}},
                              "PutEvents")
        return {"FailedEntryCount": len(kwargs["Entries"]),
                "Entries": [{"ErrorCode": "InternalFailure", "ErrorMessage": "try again"} for _ in kwargs["Entries"]]}


def _tenant_messages(messages: list[dict[str, Any]], tenant_id: str) -> list[dict[str, Any]]:
    """The shared test database may hold other tests' rows: look at this tenant's events only."""
    return [m for m in messages if json.loads(m["Body"])["detail"]["tenant_id"] == tenant_id]


def _unpublished(rt: Runtime, tenant_id: str) -> int:
    with rt.db.tenant(tenant_id) as conn:
        return int(conn.execute("select count(*) as n from outbox where tenant_id = %s and published_at is null",
                                [tenant_id]).fetchone()["n"])


@pytest.mark.parametrize("mode", ["raise", "rejected"])
def test_put_events_failing_then_the_relay_delivers_once(eb_runtime, admin, aws_pipeline, mode) -> None:
    flaky = FlakyEvents(aws_pipeline.events, mode)
    eb_runtime.publisher.client = flaky

    written = write_turns(eb_runtime, admin, "s1", 1)[0]  # the write succeeds although the publish failed

    assert flaky.calls == 1
    assert _unpublished(eb_runtime, admin.tenant_id) == 1
    assert _tenant_messages(aws_pipeline.drain("audit"), admin.tenant_id) == []

    flaky.down = False
    result = relay_outbox(eb_runtime, min_age_s=0)
    assert result.published >= 1 and _unpublished(eb_runtime, admin.tenant_id) == 0
    relay_outbox(eb_runtime, min_age_s=0)  # a second run finds nothing of ours to publish

    for queue in ("index", "compress", "audit"):  # the wiring routes TurnWritten to all three
        mine = _tenant_messages(aws_pipeline.drain(queue), admin.tenant_id)
        assert len(mine) == 1, queue
        body = json.loads(mine[0]["Body"])
        assert body["detail-type"] == "TurnWritten" and body["source"] == "context-engine"
        assert body["detail"]["turn_id"] == str(written.turn_id)


class ProcessDied(BaseException):
    """Stands for the function being killed: not an Exception, nothing catches it."""


def test_process_dying_between_commit_and_publish_loses_nothing(eb_runtime, admin, aws_pipeline, monkeypatch) -> None:
    def die(*_: Any, **__: Any) -> None:
        raise ProcessDied

    monkeypatch.setattr(Runtime, "publish_committed", die)
    with pytest.raises(ProcessDied):
        write_turns(eb_runtime, admin, "s1", 1)
    monkeypatch.undo()

    # The commit happened: the turn is stored, its event waits in the outbox, nothing was sent.
    assert turns.get_session(eb_runtime, admin, "s1").session.turn_count == 1
    assert _unpublished(eb_runtime, admin.tenant_id) == 1
    assert _tenant_messages(aws_pipeline.drain("audit"), admin.tenant_id) == []

    relay_outbox(eb_runtime, min_age_s=0)
    relay_outbox(eb_runtime, min_age_s=0)
    audit = _tenant_messages(aws_pipeline.drain("audit"), admin.tenant_id)
    assert len(audit) == 1

    # And the consumer takes it in once, even when SQS delivers it twice.
    for _ in range(2):
        assert invoke("audit_intake", lambda_records(audit, "audit")) == {"batchItemFailures": []}
    with eb_runtime.db.tenant(admin.tenant_id) as conn:
        assert processed.count(conn, admin.tenant_id, "audit_intake") == 1


def test_relay_leaves_young_rows_to_the_writer(eb_runtime, admin, aws_pipeline) -> None:
    eb_runtime.publisher.client = FlakyEvents(aws_pipeline.events, "raise")
    write_turns(eb_runtime, admin, "s1", 1)
    relay_outbox(eb_runtime, min_age_s=3600)
    assert _unpublished(eb_runtime, admin.tenant_id) == 1


def test_concurrent_relays_publish_each_event_once(eb_runtime, admin, aws_pipeline) -> None:
    eb_runtime.publisher.client = FlakyEvents(aws_pipeline.events, "raise")
    write_turns(eb_runtime, admin, "s1", 12)
    assert _unpublished(eb_runtime, admin.tenant_id) == 12

    class Slow:
        """Holds its claimed rows for a moment so the other relay must skip them."""

        def __init__(self, real: Any) -> None:
            self.real = real

        def put_events(self, **kwargs: Any) -> Any:
            threading.Event().wait(0.05)
            return self.real.put_events(**kwargs)

    eb_runtime.publisher.client = Slow(aws_pipeline.events)
    threads = [threading.Thread(target=relay_outbox, args=(eb_runtime,), kwargs={"min_age_s": 0, "limit": 5})
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    while relay_outbox(eb_runtime, min_age_s=0).claimed:
        pass
    audit = _tenant_messages(aws_pipeline.drain("audit"), admin.tenant_id)
    seqs = sorted(json.loads(m["Body"])["detail"]["seq"] for m in audit)
    assert seqs == list(range(1, 13))


def test_published_events_are_marked_in_a_later_batch_and_never_sent_twice(eb_runtime, admin,
                                                                           aws_pipeline) -> None:
    """The write does not wait for its mark: the runtime batches marks (one transaction for
    many writes) shortly after. Until then the relay leaves the young rows alone; once marked,
    a relay run finds nothing of ours to publish."""
    eb_runtime.mark_delay_s = 0.05
    written = write_turns(eb_runtime, admin, "s1", 3)
    for _ in range(100):
        if _unpublished(eb_runtime, admin.tenant_id) == 0:
            break
        threading.Event().wait(0.05)
    assert _unpublished(eb_runtime, admin.tenant_id) == 0
    relay_outbox(eb_runtime, min_age_s=0)
    audit = _tenant_messages(aws_pipeline.drain("audit"), admin.tenant_id)
    assert sorted(json.loads(m["Body"])["detail"]["turn_id"] for m in audit) == sorted(str(w.turn_id) for w in written)


def test_flush_marks_settles_what_is_pending(eb_runtime, admin, aws_pipeline) -> None:
    eb_runtime.mark_delay_s = 3600  # the timer never fires in this test
    write_turns(eb_runtime, admin, "s1", 2)
    assert _unpublished(eb_runtime, admin.tenant_id) == 2  # published, not marked yet
    assert eb_runtime.flush_marks() == 2
    assert _unpublished(eb_runtime, admin.tenant_id) == 0
