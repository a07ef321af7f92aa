"""The Context Engine stack: composes one construct per concern.

Constructs added by later issues (pipeline, audit/export, sandbox) plug in with one line
in ``ContextEngineStack.__init__`` and receive ``self.shared``: the VPC and its subnets,
the data stores and how to open network paths to them, the bus, the core layer, every
function built from ``wiring.FUNCTIONS`` (with its role and security group) and the
observability hooks. They add grants to those functions; they do not create a second
copy of any shared piece.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aws_cdk import CfnOutput, Duration, Stack
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from context_engine import wiring
from infra_cdk.config import StackConfig
from infra_cdk.constructs.api import Api
from infra_cdk.constructs.bus import EventBus
from infra_cdk.constructs.data import Data
from infra_cdk.constructs.db_admin import DatabaseAdmin
from infra_cdk.constructs.functions import Functions
from infra_cdk.constructs.governance import Governance
from infra_cdk.constructs.layer import CoreLayer
from infra_cdk.constructs.network import Network
from infra_cdk.constructs.observability import Observability
from infra_cdk.constructs.pipeline import Pipeline
from infra_cdk.constructs.sandbox import Sandbox
from infra_cdk.constructs.search import Search

REPO_ROOT = Path(__file__).resolve().parents[1]
AUTHORIZER = "authorizer"


@dataclass(frozen=True)
class Shared:
    """What a construct that plugs into the stack receives."""

    config: StackConfig
    network: Network
    data: Data
    bus: EventBus
    layer: lambda_.ILayerVersion
    functions: Functions
    observability: Observability


def built_layer_dir(config: StackConfig) -> Path | None:
    if not config.layer_dir:
        return None
    path = Path(config.layer_dir)
    return path if path.is_absolute() else REPO_ROOT / path


class ContextEngineStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, description="Context Engine: context layer for LLM agents", **kwargs)
        self.config = config = StackConfig.from_context(self.node)

        self.network = Network(self, "Network", nat_gateways=config.nat_gateways, flow_log_retention=config.retention)
        self.observability = Observability(self, "Observability", alarm_email=config.alarm_email)
        self.data = Data(self, "Data", network=self.network, config=config)
        self.bus = EventBus(self, "Events")
        self.core_layer = CoreLayer(self, "CoreLayer", built_dir=built_layer_dir(config))
        self.db_admin = DatabaseAdmin(
            self, "DbAdmin", network=self.network, data=self.data, layer=self.core_layer.layer, config=config
        )
        self.functions = Functions(
            self,
            "Functions",
            specs=wiring.FUNCTIONS,
            network=self.network,
            data=self.data,
            bus=self.bus,
            layer=self.core_layer.layer,
            config=config,
        )
        # No function is created or updated before the schema it expects.
        self.functions.node.add_dependency(self.db_admin.migrations)
        if AUTHORIZER not in self.functions.by_name:
            raise KeyError(f"wiring.FUNCTIONS has no {AUTHORIZER!r} function for the API")
        self.api = Api(
            self,
            "Api",
            functions=self.functions.by_name,
            authorizer_function=self.functions.by_name[AUTHORIZER],
            routes=wiring.HTTP_ROUTES,
            public_routes=wiring.PUBLIC_ROUTES,
            config=config,
        )

        self.observability.watch_api(self.api.http_api)
        self.observability.watch_database(self.data.cluster)
        for name, fn in self.functions.by_name.items():
            self.observability.watch_function(name, fn, Duration.seconds(wiring.FUNCTIONS[name].timeout_s))

        self.shared = Shared(
            config=config,
            network=self.network,
            data=self.data,
            bus=self.bus,
            layer=self.core_layer.layer,
            functions=self.functions,
            observability=self.observability,
        )
        # --- constructs that plug in: one line each, e.g. Pipeline(self, "Pipeline", shared=self.shared) ---
        self.pipeline = Pipeline(self, "Pipeline", shared=self.shared)
        self.governance = Governance(self, "Governance", shared=self.shared)
        self.sandbox = Sandbox(self, "Sandbox", shared=self.shared,
                               state_machine=self.pipeline.state_machines["sandbox_run"])
        # Only when the config selects OpenSearch (the infra tests' fixture does).
        self.search = Search(self, "Search", shared=self.shared) if config.opensearch else None

        CfnOutput(self, "ApiUrl", value=self.api.url, description="Base URL of the HTTP API")
        CfnOutput(self, "EventBusName", value=self.bus.bus.event_bus_name)
        CfnOutput(self, "AlarmTopicArn", value=self.observability.topic.topic_arn)
        CfnOutput(self, "DatabaseProxyEndpoint", value=self.data.proxy.endpoint)
        CfnOutput(
            self,
            "OwnerSecretArn",
            value=self.data.owner_secret.secret_arn,
            description="Aurora owner credentials (migrations, operators)",
        )
        CfnOutput(
            self,
            "AppSecretArn",
            value=self.data.app_secret.secret_arn,
            description="ce_app credentials the functions use (through RDS Proxy)",
        )
