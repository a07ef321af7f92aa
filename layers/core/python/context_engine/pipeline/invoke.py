"""``context-engine invoke <function> <event.json>``: run one deployed handler locally on one
event (API Gateway, SQS, Step Functions task input, scheduled event — see events/samples/).

The runtime is the embedded default of the data dir. Events the handler produces are left
in the outbox (nothing consumes them here; the relay of the next ``serve`` publishes them)
and listed; a workflow the handler starts runs on moto's executor and is waited for.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from context_engine.events.envelope import EventEnvelope
from context_engine.wiring import FUNCTIONS


class OutboxOnlyPublisher:
    """Accepts nothing: every event stays unpublished in the outbox for a later relay."""

    def __init__(self) -> None:
        self.held: list[EventEnvelope] = []

    def publish(self, events: Sequence[EventEnvelope]) -> list[EventEnvelope]:
        self.held.extend(events)
        return list(events)


def invoke(function: str, event_file: Path, out: TextIO = sys.stdout) -> int:
    if function not in FUNCTIONS:
        print(f"unknown function {function!r}; one of: {', '.join(sorted(FUNCTIONS))}", file=sys.stderr)
        return 2
    event: Any = json.loads(event_file.read_text(encoding="utf-8"))

    from context_engine.local.server import DEV_TENANT, bootstrap_dev_tenant
    from context_engine.pipeline.sfn_local import LocalStepFunctions, invoke_handler
    from context_engine.pipeline.workflows import set_workflow_starter
    from context_engine.runtime import build_runtime, set_runtime

    publisher = OutboxOnlyPublisher()
    rt = build_runtime(publisher=publisher)
    set_runtime(rt)
    # The samples act for the dev tenant, as `serve` would create it on a fresh data dir.
    key = bootstrap_dev_tenant(rt)
    if key:
        print(f"Dev tenant '{DEV_TENANT}' admin key (shown once, keep it): {key}", file=sys.stderr)
    workflows = LocalStepFunctions().open()
    set_workflow_starter(workflows)
    code = 0
    try:
        try:
            result = invoke_handler(function, event)
        except Exception as err:  # shown like a Lambda function error
            result, code = {"errorType": type(err).__name__, "errorMessage": str(err)}, 1
        executions = [{"execution": d["executionArn"], "status": d["status"], "error": d.get("error")}
                      for d in workflows.wait_all(timeout_s=120)]
    finally:
        set_workflow_starter(None)
        workflows.close()
        set_runtime(None)
        rt.db.close()
    print(json.dumps(result, indent=2, default=str), file=out)
    if executions:
        print(json.dumps({"workflows": executions}, indent=2), file=out)
    if publisher.held:
        print(json.dumps({"events_left_in_outbox": [
            {"detail_type": e.detail_type, "event_id": str(e.event_id)} for e in publisher.held]}, indent=2),
            file=out)
    return code
