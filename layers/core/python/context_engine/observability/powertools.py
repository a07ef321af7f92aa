"""One Logger, Metrics and Tracer for every handler (powertools).

Tests and the local server set ``POWERTOOLS_TRACE_DISABLED=true``; the metrics
namespace defaults to ``ContextEngine`` when ``POWERTOOLS_METRICS_NAMESPACE`` is unset.
"""

from __future__ import annotations

import os
import warnings

from aws_lambda_powertools import Logger, Metrics, Tracer

os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "ContextEngine")
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "context-engine")

logger = Logger()
metrics = Metrics()
tracer = Tracer()

# A request that records no metric is normal (e.g. a 404); powertools would warn each time.
warnings.filterwarnings("ignore", message="No application metrics to publish")
