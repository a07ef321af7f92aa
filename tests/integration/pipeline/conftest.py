"""Pipeline fixtures: moto (EventBridge, SQS, Step Functions executing ASL) provisioned from
the same wiring the CDK construct reads, and helpers to feed consumer handlers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from moto import mock_aws

from context_engine.events.envelope import EventEnvelope
from context_engine.events.publisher import EventBridgePublisher
from context_engine.models.api import WriteTurnRequest
from context_engine.pipeline.aws_events import eventbridge_body, sqs_batch, sqs_record
from context_engine.pipeline.sfn_local import LocalStepFunctions, invoke_handler
from context_engine.pipeline.workflows import set_workflow_starter
from context_engine.services import turns
from context_engine.wiring import EVENT_RULES, EVENT_SOURCE, QUEUES

MOTO_TEST_CONFIG: Any = {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}
BUS = "context-engine-test"


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws(config=MOTO_TEST_CONFIG):
        yield


@pytest.fixture
def workflows(aws: None) -> Iterator[LocalStepFunctions]:
    """The real ASL on moto's executor, tasks dispatched to the real handlers."""
    engine = LocalStepFunctions(manage_mock=False).open()
    set_workflow_starter(engine)
    yield engine
    set_workflow_starter(None)
    engine.close()


@dataclass
class AwsPipeline:
    """EventBridge bus + rules → SQS queues (+ DLQs with redrive), built from wiring."""

    events: Any
    sqs: Any
    queue_urls: dict[str, str] = field(default_factory=dict)
    dlq_urls: dict[str, str] = field(default_factory=dict)

    def publisher(self) -> EventBridgePublisher:
        return EventBridgePublisher(BUS, EVENT_SOURCE, client=self.events)

    def receive(self, queue: str, *, max_messages: int = 10, dlq: bool = False) -> list[dict[str, Any]]:
        url = (self.dlq_urls if dlq else self.queue_urls)[queue]
        resp = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=max_messages,
                                        AttributeNames=["ApproximateReceiveCount"], WaitTimeSeconds=0)
        return list(resp.get("Messages", []))

    def drain(self, queue: str) -> list[dict[str, Any]]:
        """Every message currently in the queue (received and deleted)."""
        out: list[dict[str, Any]] = []
        while batch := self.receive(queue):
            out.extend(batch)
            self.sqs.delete_message_batch(QueueUrl=self.queue_urls[queue], Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)])
        return out


def lambda_records(messages: list[dict[str, Any]], queue: str) -> dict[str, Any]:
    """What the SQS event source mapping hands the function for these received messages."""
    return sqs_batch([sqs_record(m["Body"], queue, message_id=m["MessageId"],
                                 receive_count=int(m.get("Attributes", {}).get("ApproximateReceiveCount", 1)))
                      for m in messages])


@pytest.fixture
def aws_pipeline(aws: None) -> AwsPipeline:
    events = boto3.client("events", region_name="us-east-1")
    sqs = boto3.client("sqs", region_name="us-east-1")
    events.create_event_bus(Name=BUS)
    p = AwsPipeline(events, sqs)
    for name, spec in QUEUES.items():
        dlq = sqs.create_queue(QueueName=f"ce-{name}-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        url = sqs.create_queue(QueueName=f"ce-{name}", Attributes={
            # 0 in tests: a message not deleted is visible again at once (the redelivery under test)
            "VisibilityTimeout": "0",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": spec.max_receive_count}),
        })["QueueUrl"]
        p.queue_urls[name], p.dlq_urls[name] = url, dlq
    for rule in EVENT_RULES.values():
        events.put_rule(Name=f"ce-{rule.name}", EventBusName=BUS, EventPattern=json.dumps(
            {"source": [EVENT_SOURCE], "detail-type": list(rule.detail_types)}))
        arn = sqs.get_queue_attributes(QueueUrl=p.queue_urls[rule.queue],
                                       AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events.put_targets(Rule=f"ce-{rule.name}", EventBusName=BUS, Targets=[{"Id": rule.queue, "Arn": arn}])
    return p


@pytest.fixture
def eb_runtime(runtime: Any, aws_pipeline: AwsPipeline) -> Iterator[Any]:
    """A runtime whose publisher is EventBridge (moto), as in AWS. It depends on ``runtime``
    so that it is installed after it (``admin`` installs ``runtime``)."""
    from context_engine.cache import LruCache
    from context_engine.runtime import Runtime, set_runtime

    rt = Runtime(settings=runtime.settings, db=runtime.db, cache=LruCache(64), publisher=aws_pipeline.publisher())
    set_runtime(rt)
    yield rt
    set_runtime(runtime)


def sqs_event_for(envelopes: list[EventEnvelope], queue: str) -> dict[str, Any]:
    """An SQS batch as the local dispatcher would build it (no AWS needed)."""
    return sqs_batch([sqs_record(eventbridge_body(e), queue) for e in envelopes])


def invoke(function: str, event: dict[str, Any]) -> Any:
    return invoke_handler(function, event)


def write_turns(runtime: Any, principal: Any, session_id: str, n: int, *, start: int = 0, agent_id: str = "a1",
                user_id: str = "u1", words: int = 30) -> list[Any]:
    out = []
    for i in range(start, start + n):
        q = f"Turn {i}: what did Alice say about the Paris trip on day {i}?"
        a = f"Alice said the budget for day {i} is {100 + i} euros. " + " ".join(["detail"] * words)
        out.append(turns.write_turn(runtime, principal, session_id,
                                    WriteTurnRequest(agent_id=agent_id, user_id=user_id, question=q, answer=a),
                                    None)[0])
    return out


@pytest.fixture
def captured(runtime: Any) -> list[EventEnvelope]:
    """Every event the runtime publishes (the InProcessPublisher's subscribers see each one)."""
    seen: list[EventEnvelope] = []
    runtime.publisher.subscribe(seen.append)
    return seen
