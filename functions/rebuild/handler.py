"""The rebuild function: every Task state of statemachines/rebuild_context.asl.json."""

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from context_engine.observability.powertools import logger, metrics, tracer
from context_engine.pipeline.tasks import run_rebuild_task
from context_engine.runtime import get_runtime


@logger.inject_lambda_context(correlation_id_path="job_id || plan.job_id")
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result = run_rebuild_task(get_runtime(), event)
    metrics.add_metric(name="RebuildTasks", unit=MetricUnit.Count, value=1)
    return result
