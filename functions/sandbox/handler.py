"""The sandbox function: the /v1/sandbox routes (wiring.HTTP_ROUTES) and every Task state of
statemachines/sandbox_run.asl.json (those events carry an "action")."""

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from context_engine.api.app import build_api
from context_engine.observability.powertools import logger, metrics, tracer
from context_engine.runtime import get_runtime
from context_engine.services.sandbox import run_task

app = build_api("sandbox")


# API Gateway events carry the request id, workflow tasks the run id.
@logger.inject_lambda_context(correlation_id_path="requestContext.requestId || run_id")
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if "action" in event and "requestContext" not in event:
        result = run_task(get_runtime(), event)
        metrics.add_metric(name="SandboxTasks", unit=MetricUnit.Count, value=1)
        return result
    return app.resolve(event, context)
