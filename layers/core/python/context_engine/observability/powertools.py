"""One Logger, Metrics and Tracer for every handler (powertools).

Tests and the local server set ``POWERTOOLS_TRACE_DISABLED=true``; the metrics
namespace defaults to ``ContextEngine`` when ``POWERTOOLS_METRICS_NAMESPACE`` is unset.
"""

from __future__ import annotations

import logging
import os
import warnings

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

from context_engine.observability.redaction import (
    install_redaction_filter,
    redacting_json_default,
    redacting_json_serializer,
)

os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "ContextEngine")
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "context-engine")

# Logs never carry turn content, keys or secrets: every record passes the redaction hooks.
logger = Logger(json_serializer=redacting_json_serializer, json_default=redacting_json_default)
install_redaction_filter(logging.getLogger())
# powertools' own DEBUG line "Calling API Route Handler" prints the whole request body.
logging.getLogger("aws_lambda_powertools").setLevel(max(logging.INFO, logging.getLogger().level))
class _Metrics(Metrics):
    """powertools keeps (and keeps growing) the metric set when POWERTOOLS_METRICS_DISABLED is
    set, as locally and in tests: clear it on every flush so nothing accumulates."""

    def flush_metrics(self, raise_on_empty_metrics: bool = False) -> None:
        super().flush_metrics(raise_on_empty_metrics=raise_on_empty_metrics)
        if is_metrics_disabled():
            self.clear_metrics()


metrics = _Metrics()
tracer = Tracer()

# A request that records no metric is normal (e.g. a 404); powertools would warn each time.
warnings.filterwarnings("ignore", message="No application metrics to publish")
