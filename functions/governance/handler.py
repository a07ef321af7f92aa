"""The governance function: the audit, GDPR and tenant-settings routes that wiring.HTTP_ROUTES
assigns to "governance", export/erase jobs from the governance jobs queue, and the scheduled
governance run (retention purges, stalled jobs)."""

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from context_engine.api.app import build_api
from context_engine.observability.powertools import logger, metrics, tracer
from context_engine.runtime import get_runtime
from context_engine.services import governance

app = build_api("governance")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    kind = governance.event_kind(event)
    if kind == "http":
        return app.resolve(event, context)
    if kind == "jobs":
        return governance.consume_job_batch(event, context)
    return governance.run_schedule(get_runtime())
