"""Deployment settings read once from CDK context (``cdk.json`` or ``-c key=value``).

Every knob an operator may turn lives here with its default, so constructs never read
context themselves. Values given on the command line arrive as strings, hence the
parsing helpers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from aws_cdk.aws_logs import RetentionDays
from constructs import Node

DEFAULT_SUMMARY_MODEL_ID = "anthropic.claude-3-haiku-20240307-v1:0"
SEARCH_BACKENDS = ("postgres", "opensearch")


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"not a boolean: {value!r}")


def _mapping(value: Any) -> dict[str, int]:
    if not value:
        return {}
    raw = json.loads(value) if isinstance(value, str) else value
    if not isinstance(raw, dict):
        raise ValueError(f"expected a JSON object, got {value!r}")
    return {str(k): int(v) for k, v in raw.items()}


@dataclass(frozen=True)
class StackConfig:
    # --- network -----------------------------------------------------------------
    # 0: no internet egress at all, every AWS API through a VPC endpoint (see network.py).
    nat_gateways: int = 0
    # --- Aurora ------------------------------------------------------------------
    deletion_protection: bool = True
    db_min_acu: float = 0.5
    db_max_acu: float = 8.0
    # Serverless v2 readers in the other AZ: failover targets (0 = single-AZ, dev only).
    db_readers: int = 1
    backup_retention_days: int = 7
    # --- cache -------------------------------------------------------------------
    cache_node_type: str = "cache.t4g.small"
    # Replicas per shard; >= 1 enables Multi-AZ automatic failover.
    cache_replicas: int = 1
    # --- search index --------------------------------------------------------------
    # "postgres": full text + pgvector in Aurora, no domain. "opensearch": an OpenSearch domain
    # (constructs/search.py) that the query, index and governance functions use.
    search_backend: str = "postgres"
    search_instance_type: str = "r6g.large.search"
    # Data nodes, split evenly over the two AZs (zone awareness): an even number >= 2.
    search_data_nodes: int = 2
    # Dedicated master nodes: 3 (quorum survives one loss) or 0 (data nodes elect; dev only).
    search_master_nodes: int = 3
    search_master_instance_type: str = "m6g.large.search"
    search_volume_gb: int = 20
    # --- functions and API -------------------------------------------------------
    log_retention_days: int = 30
    reserved_concurrency: dict[str, int] = field(default_factory=dict)
    api_throttle_rate: int = 100
    api_throttle_burst: int = 200
    authorizer_cache_ttl_s: int = 60
    # --- models ------------------------------------------------------------------
    summary_model_id: str = DEFAULT_SUMMARY_MODEL_ID
    embedding_dim: int = 1024
    # --- operations --------------------------------------------------------------
    alarm_email: str = ""
    # Where the built layer lives (scripts/build_layer.py); relative to the repository root.
    layer_dir: str = "build/layer"

    def __post_init__(self) -> None:
        if self.embedding_dim not in (256, 512, 1024):
            raise ValueError("embeddingDim must be 256, 512 or 1024 (Titan Text Embeddings v2)")
        if not 0 <= self.nat_gateways <= 2:
            raise ValueError("natGateways must be 0, 1 or 2")
        if self.db_min_acu > self.db_max_acu:
            raise ValueError("dbMinAcu must not exceed dbMaxAcu")
        if self.search_backend not in SEARCH_BACKENDS:
            raise ValueError(f"searchBackend must be one of {SEARCH_BACKENDS}, got {self.search_backend!r}")
        if self.search_data_nodes < 2 or self.search_data_nodes % 2:
            raise ValueError("searchDataNodes must be an even number >= 2 (two AZs, zone awareness)")
        if self.search_master_nodes not in (0, 3, 5):
            raise ValueError("searchMasterNodes must be 0, 3 or 5")
        if self.search_volume_gb < 10:
            raise ValueError("searchVolumeGb must be at least 10")
        log_retention(self.log_retention_days)

    @property
    def retention(self) -> RetentionDays:
        return log_retention(self.log_retention_days)

    @property
    def opensearch(self) -> bool:
        return self.search_backend == "opensearch"

    @classmethod
    def from_context(cls, node: Node) -> StackConfig:
        def get(key: str, default: Any) -> Any:
            value = node.try_get_context(key)
            return default if value is None else value

        d = cls()
        return cls(
            nat_gateways=int(get("natGateways", d.nat_gateways)),
            deletion_protection=_bool(get("deletionProtection", d.deletion_protection)),
            db_min_acu=float(get("dbMinAcu", d.db_min_acu)),
            db_max_acu=float(get("dbMaxAcu", d.db_max_acu)),
            db_readers=int(get("dbReaders", d.db_readers)),
            backup_retention_days=int(get("backupRetentionDays", d.backup_retention_days)),
            cache_node_type=str(get("cacheNodeType", d.cache_node_type)),
            cache_replicas=int(get("cacheReplicas", d.cache_replicas)),
            search_backend=str(get("searchBackend", d.search_backend)).strip().lower(),
            search_instance_type=str(get("searchInstanceType", d.search_instance_type)),
            search_data_nodes=int(get("searchDataNodes", d.search_data_nodes)),
            search_master_nodes=int(get("searchMasterNodes", d.search_master_nodes)),
            search_master_instance_type=str(get("searchMasterInstanceType", d.search_master_instance_type)),
            search_volume_gb=int(get("searchVolumeGb", d.search_volume_gb)),
            log_retention_days=int(get("logRetentionDays", d.log_retention_days)),
            reserved_concurrency=_mapping(get("reservedConcurrency", {})),
            api_throttle_rate=int(get("apiThrottleRate", d.api_throttle_rate)),
            api_throttle_burst=int(get("apiThrottleBurst", d.api_throttle_burst)),
            authorizer_cache_ttl_s=int(get("authorizerCacheTtlSeconds", d.authorizer_cache_ttl_s)),
            summary_model_id=str(get("summaryModelId", d.summary_model_id)),
            embedding_dim=int(get("embeddingDim", d.embedding_dim)),
            alarm_email=str(get("alarmEmail", d.alarm_email)),
            layer_dir=str(get("layerDir", d.layer_dir)),
        )


_RETENTION_BY_DAYS = {
    1: "ONE_DAY",
    3: "THREE_DAYS",
    5: "FIVE_DAYS",
    7: "ONE_WEEK",
    14: "TWO_WEEKS",
    30: "ONE_MONTH",
    60: "TWO_MONTHS",
    90: "THREE_MONTHS",
    120: "FOUR_MONTHS",
    150: "FIVE_MONTHS",
    180: "SIX_MONTHS",
    365: "ONE_YEAR",
    400: "THIRTEEN_MONTHS",
    545: "EIGHTEEN_MONTHS",
    731: "TWO_YEARS",
    1096: "THREE_YEARS",
    1827: "FIVE_YEARS",
    2192: "SIX_YEARS",
    2557: "SEVEN_YEARS",
    2922: "EIGHT_YEARS",
    3288: "NINE_YEARS",
    3653: "TEN_YEARS",
}


def log_retention(days: int) -> RetentionDays:
    """CloudWatch Logs only accepts these retention periods."""
    try:
        return RetentionDays[_RETENTION_BY_DAYS[days]]
    except KeyError:
        raise ValueError(f"logRetentionDays must be one of {sorted(_RETENTION_BY_DAYS)}, got {days}") from None
