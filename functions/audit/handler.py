"""The audit appender: on its schedule, seals every tenant's pending audit intake into its
hash chain (domain events arrive through the audit queue's consumer, access and request
records from the API; both wait in the intake until appended)."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from context_engine.observability.powertools import logger, metrics, tracer
from context_engine.runtime import get_runtime
from context_engine.services import audit


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    appended = audit.append_all_pending(get_runtime())
    return {"tenants": len(appended), "records": sum(appended.values())}
