"""The audit intake consumer: SQS (audit queue) → every domain event, taken in exactly once."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from context_engine.observability.powertools import logger, metrics, tracer
from context_engine.pipeline.consumers import consume_batch


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return consume_batch("audit_intake", event, context)
