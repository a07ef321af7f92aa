"""Workflows on one machine: the ASL files run on moto's Step Functions executor.

moto 5 (``stepfunctions.execute_state_machine``) really interprets ASL — Choice, Retry,
Catch, paths, Fail — in a background thread per execution. Its Lambda Task states call
``lambda:Invoke`` through moto's Lambda backend; with ``lambda.use_docker = False`` that
backend (``LambdaSimpleBackend``) only echoes the payload. We replace its ``invoke`` so that
a function ARN of ours runs the real handler (``functions/<name>/handler.py``, the module
deployed to Lambda) and an exception becomes a Lambda function error
(``X-Amz-Function-Error: Unhandled`` with ``{errorType, errorMessage}``), exactly what the
executor turns into the ASL error that Retry and Catch match. No ASL is interpreted here.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any
from unittest import mock

from context_engine.pipeline import asl
from context_engine.wiring import FUNCTIONS, WORKFLOWS

log = logging.getLogger(__name__)

ACCOUNT = "123456789012"
REGION = "us-east-1"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/context-engine-local-workflows"
MOTO_CONFIG: dict[str, Any] = {
    "stepfunctions": {"execute_state_machine": True},
    "lambda": {"use_docker": False},
    # Only Step Functions and Lambda are emulated: a configured Bedrock summarizer/embedder
    # still reaches AWS with the process's real credentials.
    "core": {"mock_credentials": False, "passthrough": {"urls": [r"https?://bedrock-runtime\..*"], "services": []}},
}

Invoker = Callable[[str, dict[str, Any]], Any]


def function_arn(name: str) -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"


def _function_name(arn_or_name: str) -> str:
    return arn_or_name.split(":function:", 1)[-1].split(":", 1)[0]


def invoke_handler(name: str, payload: dict[str, Any]) -> Any:
    """Run ``functions/<name>/handler.py`` as Lambda would."""
    from context_engine.local.gateway import LocalLambdaContext, load_function

    return load_function(name).handler(payload, LocalLambdaContext(name))


class LocalStepFunctions:
    """A WorkflowStarter backed by moto. ``manage_mock=False`` when the caller already runs
    inside ``mock_aws(config=MOTO_CONFIG-like)`` (tests); otherwise this starts and stops it."""

    def __init__(self, *, manage_mock: bool = True, invoker: Invoker = invoke_handler) -> None:
        self.manage_mock = manage_mock
        self.invoker = invoker
        self._mock: Any = None
        self._patch: Any = None
        self._client: Any = None
        self.state_machines: dict[str, str] = {}
        self._lock = threading.Lock()
        self.executions: list[str] = []

    # --- lifecycle ------------------------------------------------------------------
    def open(self) -> LocalStepFunctions:
        import boto3
        from moto import mock_aws
        from moto.awslambda_simple.models import LambdaSimpleBackend

        if self.manage_mock:
            self._mock = mock_aws(config=MOTO_CONFIG)  # type: ignore[call-overload]
            self._mock.start()
        self._patch = mock.patch.object(LambdaSimpleBackend, "invoke", self._moto_invoke_hook())
        self._patch.start()
        # moto answers this client; the credentials are never sent anywhere.
        self._client = boto3.client("stepfunctions", region_name=REGION, aws_access_key_id="local",
                                    aws_secret_access_key="local")  # noqa: S106
        for name in WORKFLOWS:
            definition = asl.render(WORKFLOWS[name], function_arn)
            self.state_machines[name] = self._client.create_state_machine(
                name=name, definition=definition, roleArn=ROLE_ARN)["stateMachineArn"]
        return self

    def close(self) -> None:
        if self._patch is not None:
            self._patch.stop()
            self._patch = None
        if self._mock is not None:
            self._mock.stop()
            self._mock = None

    def __enter__(self) -> LocalStepFunctions:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- WorkflowStarter --------------------------------------------------------------
    def start(self, workflow: str, name: str, payload: dict[str, Any]) -> str:
        arn = self.state_machines[workflow]
        try:
            execution = self._client.start_execution(stateMachineArn=arn, name=name, input=json.dumps(payload))
        except self._client.exceptions.ExecutionAlreadyExists:
            from context_engine.pipeline.workflows import execution_arn

            return execution_arn(arn, name)
        with self._lock:
            self.executions.append(execution["executionArn"])
        return str(execution["executionArn"])

    def describe(self, execution_arn: str) -> dict[str, Any]:
        return dict(self._client.describe_execution(executionArn=execution_arn))

    def history(self, execution_arn: str) -> list[dict[str, Any]]:
        return list(self._client.get_execution_history(executionArn=execution_arn)["events"])

    def wait(self, execution_arn: str, timeout_s: float = 30.0) -> dict[str, Any]:
        """Block until the execution leaves RUNNING (tests, ``invoke``, benchmarks)."""
        deadline = time.monotonic() + timeout_s
        while True:
            desc = self.describe(execution_arn)
            if desc["status"] != "RUNNING" or time.monotonic() > deadline:
                return desc
            time.sleep(0.02)

    def wait_all(self, timeout_s: float = 60.0) -> list[dict[str, Any]]:
        with self._lock:
            arns = list(self.executions)
        return [self.wait(a, timeout_s) for a in arns]

    def running(self) -> int:
        with self._lock:
            arns = list(self.executions)
        return sum(1 for a in arns if self.describe(a)["status"] == "RUNNING")

    def _moto_invoke_hook(self) -> Callable[..., bytes]:
        original_names = set(FUNCTIONS)
        invoker = self.invoker

        def invoke(backend: Any, function_name: str, qualifier: str | None, body: Any, headers: Any,
                   response_headers: dict[str, str]) -> bytes:
            name = _function_name(function_name)
            if name not in original_names:
                return str.encode(body or "Simple Lambda happy path OK")  # not ours: moto's echo
            payload = json.loads(body) if body else {}
            try:
                result = invoker(name, payload)
            except Exception as err:  # noqa: BLE001 - becomes the Lambda function error, as in AWS
                response_headers["x-amz-function-error"] = "Unhandled"
                log.info("workflow task failed", extra={"function": name, "error": type(err).__name__})
                return json.dumps({"errorType": type(err).__name__, "errorMessage": str(err),
                                   "stackTrace": traceback.format_exception(err)[-3:]}).encode()
            return json.dumps(result, default=str).encode()

        return invoke
