"""Starting workflows: AWS Step Functions, or the same ASL on moto's executor locally.

``get_workflow_starter()`` returns the process's starter: the one installed with
``set_workflow_starter`` (the local dispatcher installs ``LocalStepFunctions``), else Step
Functions when the state machine ARNs are in the environment (the CDK sets
``CONTEXT_ENGINE_WORKFLOW_<NAME>_ARN`` on the functions that start them).
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any, Protocol

from context_engine.wiring import WORKFLOWS, WorkflowSpec


def arn_env(spec: WorkflowSpec) -> str:
    return f"CONTEXT_ENGINE_WORKFLOW_{spec.name.upper()}_ARN"


class WorkflowStarter(Protocol):
    def start(self, workflow: str, name: str, payload: dict[str, Any]) -> str:
        """Start an execution called ``name``; idempotent: an execution of that name that
        already exists is returned, not started again. Returns the execution ARN."""
        ...


class StepFunctionsStarter:
    def __init__(self, arns: dict[str, str], client: Any = None) -> None:
        import boto3

        self.arns = arns
        self.client = client or boto3.client("stepfunctions")

    def start(self, workflow: str, name: str, payload: dict[str, Any]) -> str:
        arn = self.arns[workflow]
        try:
            return str(self.client.start_execution(stateMachineArn=arn, name=name,
                                                   input=json.dumps(payload))["executionArn"])
        except self.client.exceptions.ExecutionAlreadyExists:
            return execution_arn(arn, name)


def execution_arn(state_machine_arn: str, name: str) -> str:
    return state_machine_arn.replace(":stateMachine:", ":execution:") + f":{name}"


_starter: WorkflowStarter | None = None
_lock = threading.Lock()


def set_workflow_starter(starter: WorkflowStarter | None) -> None:
    global _starter
    _starter = starter


def get_workflow_starter() -> WorkflowStarter:
    global _starter
    if _starter is None:
        with _lock:
            if _starter is None:
                arns = {n: os.environ[arn_env(s)] for n, s in WORKFLOWS.items() if arn_env(s) in os.environ}
                if not arns:
                    raise RuntimeError("no workflow engine: set " + ", ".join(arn_env(s) for s in WORKFLOWS.values())
                                       + " or run the local dispatcher (context-engine serve)")
                _starter = StepFunctionsStarter(arns)
    return _starter
