"""The scheduled outbox relay: republishes events that no publish marked as published."""

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from context_engine.observability.powertools import logger, metrics, tracer
from context_engine.pipeline.relay import relay_outbox
from context_engine.pipeline.settings import get_pipeline_settings
from context_engine.runtime import get_runtime


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = get_pipeline_settings()
    result = relay_outbox(get_runtime(), limit=settings.relay_batch, min_age_s=settings.relay_min_age_s)
    metrics.add_metric(name="OutboxRelayed", unit=MetricUnit.Count, value=result.published)
    metrics.add_metric(name="OutboxBacklog", unit=MetricUnit.Count, value=result.backlog)
    metrics.add_metric(name="OutboxOldestAge", unit=MetricUnit.Seconds, value=result.oldest_age_s or 0.0)
    return result.model_dump()
