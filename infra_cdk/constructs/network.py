"""The VPC: two AZs, an ``app`` tier for functions and tasks, an isolated ``data`` tier for
Aurora, RDS Proxy and ElastiCache, and VPC endpoints for every AWS API the code calls.

NAT: 0 by default. Nothing in the service talks to the internet: the AWS APIs it uses
(Secrets Manager, EventBridge, SQS, Bedrock runtime, X-Ray, S3) are reached through VPC
endpoints, so the ``app`` tier is isolated too and there is no egress path to exfiltrate
through. It is not cheaper (the five interface endpoints in two AZs cost more than one
NAT gateway); it is smaller attack surface and no single-AZ NAT to lose. Set context
``natGateways=1`` (or 2) if a future function needs the internet: the ``app`` tier then
becomes private-with-egress behind public subnets, and nothing else changes because every
construct selects subnets by group name.
"""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_logs as logs
from constructs import Construct

APP_SUBNETS = "app"
DATA_SUBNETS = "data"

# What the functions call: secrets (DB credentials), events (PutEvents), SQS (pipeline
# consumers' own calls, DLQ redrive), Bedrock runtime (embeddings, summaries), X-Ray
# (active tracing from inside the VPC needs it, or traces are silently dropped).
DEFAULT_INTERFACE_ENDPOINTS: dict[str, ec2.InterfaceVpcEndpointAwsService] = {
    "SecretsManager": ec2.InterfaceVpcEndpointAwsService.SECRETS_MANAGER,
    "EventBridge": ec2.InterfaceVpcEndpointAwsService.EVENTBRIDGE,
    "Sqs": ec2.InterfaceVpcEndpointAwsService.SQS,
    "BedrockRuntime": ec2.InterfaceVpcEndpointAwsService.BEDROCK_RUNTIME,
    "XRay": ec2.InterfaceVpcEndpointAwsService.XRAY,
}


class Network(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        nat_gateways: int,
        flow_log_retention: logs.RetentionDays,
        cidr: str = "10.40.0.0/16",
    ) -> None:
        super().__init__(scope, construct_id)
        # Kept as a literal (not the VPC's CidrBlock attribute) so rules and cdk-nag can read it.
        self.cidr = cidr
        app_tier = ec2.SubnetType.PRIVATE_WITH_EGRESS if nat_gateways else ec2.SubnetType.PRIVATE_ISOLATED
        subnets = [
            # /20 per AZ: every VPC Lambda and Fargate task takes an IP from here.
            ec2.SubnetConfiguration(name=APP_SUBNETS, subnet_type=app_tier, cidr_mask=20),
            ec2.SubnetConfiguration(name=DATA_SUBNETS, subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=24),
        ]
        if nat_gateways:
            subnets.insert(0, ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24))
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr(cidr),
            max_azs=2,
            nat_gateways=nat_gateways,
            subnet_configuration=subnets,
            # The default SG would otherwise allow all traffic between its members.
            restrict_default_security_group=True,
        )
        flow_logs = logs.LogGroup(self, "FlowLogs", retention=flow_log_retention, removal_policy=RemovalPolicy.DESTROY)
        self.vpc.add_flow_log("FlowLog", destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_logs))

        self.app_subnets = ec2.SubnetSelection(subnet_group_name=APP_SUBNETS)
        self.data_subnets = ec2.SubnetSelection(subnet_group_name=DATA_SUBNETS)

        self.vpc.add_gateway_endpoint("S3", service=ec2.GatewayVpcEndpointAwsService.S3, subnets=[self.app_subnets])
        self.endpoints: dict[str, ec2.InterfaceVpcEndpoint] = {}
        for name, service in DEFAULT_INTERFACE_ENDPOINTS.items():
            self.add_interface_endpoint(name, service)

    def add_interface_endpoint(
        self, name: str, service: ec2.InterfaceVpcEndpointAwsService
    ) -> ec2.InterfaceVpcEndpoint:
        """An interface endpoint in the app tier (idempotent by name), for constructs that plug in
        later: Step Functions for task callbacks, ECR and CloudWatch Logs for Fargate tasks."""
        if name not in self.endpoints:
            endpoint = self.vpc.add_interface_endpoint(
                name, service=service, subnets=self.app_subnets, private_dns_enabled=True, open=False
            )
            # HTTPS from inside the VPC only; IAM on each call does the rest.
            endpoint.connections.allow_default_port_from(ec2.Peer.ipv4(self.cidr), "HTTPS from the VPC")
            self.endpoints[name] = endpoint
        return self.endpoints[name]

    def allow_aws_apis(self, security_group: ec2.ISecurityGroup) -> None:
        """Egress a locked-down SG needs to reach the interface endpoints and the S3 gateway."""
        security_group.add_egress_rule(
            ec2.Peer.ipv4(self.cidr), ec2.Port.tcp(443), "AWS APIs through interface endpoints"
        )
