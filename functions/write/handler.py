"""The write function: HTTP routes that wiring.HTTP_ROUTES assigns to "write"."""

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from context_engine.api.app import build_api
from context_engine.observability.gc_tuning import tune_for_requests
from context_engine.observability.powertools import logger, metrics, tracer

app = build_api("write")
tune_for_requests()  # after start-up: observability/gc_tuning.py


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
