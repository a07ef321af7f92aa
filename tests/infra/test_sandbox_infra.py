"""The sandbox's security properties in the synthesized template: the Fargate task, its network,
its roles, the bucket for code and results, and the state machine that runs it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.infra

REPO_ROOT = Path(__file__).resolve().parents[2]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def ref_id(value: Any) -> str | None:
    """The logical id a {Ref}/{Fn::GetAtt} points at."""
    if isinstance(value, dict):
        if "Ref" in value:
            return str(value["Ref"])
        if "Fn::GetAtt" in value:
            return str(value["Fn::GetAtt"][0])
    return None


def statements_of(synth: Any, role_id: str) -> list[dict[str, Any]]:
    """Every identity statement attached to a role (inline policies and AWS::IAM::Policy)."""
    out: list[dict[str, Any]] = []
    role = synth.resources[role_id]["Properties"]
    for policy in role.get("Policies", []):
        out.extend(policy["PolicyDocument"]["Statement"])
    for resource in synth.of_type("AWS::IAM::Policy").values():
        props = resource["Properties"]
        if any(ref_id(r) == role_id for r in props.get("Roles", [])):
            out.extend(props["PolicyDocument"]["Statement"])
    return out


@pytest.fixture(scope="module")
def sandbox(synth: Any) -> Any:
    return synth.stack.sandbox


@pytest.fixture(scope="module")
def task_definition(synth: Any, sandbox: Any) -> dict[str, Any]:
    props: dict[str, Any] = synth.resources[synth.logical_id(sandbox.task_definition)]["Properties"]
    return props


@pytest.fixture(scope="module")
def container(task_definition: dict[str, Any]) -> dict[str, Any]:
    [only] = task_definition["ContainerDefinitions"]
    return dict(only)


# --- the task ------------------------------------------------------------------------------------
def test_task_is_fargate_arm64_with_bounded_resources(task_definition: dict[str, Any]) -> None:
    assert task_definition["RequiresCompatibilities"] == ["FARGATE"]
    assert task_definition["NetworkMode"] == "awsvpc"
    assert task_definition["RuntimePlatform"] == {"CpuArchitecture": "ARM64", "OperatingSystemFamily": "LINUX"}
    assert (task_definition["Cpu"], task_definition["Memory"]) == ("1024", "3072")
    # 2 GiB (the largest memory_mb a run may ask for) must fit beside the entrypoint.
    from context_engine.sandbox.models import MAX_MEMORY_MB

    assert int(task_definition["Memory"]) >= MAX_MEMORY_MB + 512
    assert task_definition["EphemeralStorage"] == {"SizeInGiB": 21}


def test_container_is_locked_down(container: dict[str, Any], task_definition: dict[str, Any]) -> None:
    assert container["User"] == "10001:10001"  # non-root, the image's user
    assert container["ReadonlyRootFilesystem"] is True
    assert container["Privileged"] is False
    assert container["LinuxParameters"]["Capabilities"]["Drop"] == ["ALL"]
    assert "Add" not in container["LinuxParameters"]["Capabilities"]
    # The entrypoint must stay PID 1 (the code runs as the same uid and could kill it otherwise).
    assert container["LinuxParameters"]["InitProcessEnabled"] is False
    # The only writable path is a task-local volume at /tmp (no host path, nothing shared).
    assert container["MountPoints"] == [{"ContainerPath": "/tmp", "ReadOnly": False, "SourceVolume": "tmp"}]
    assert task_definition["Volumes"] == [{"Name": "tmp"}]
    # No code, keys or credentials are baked into the definition: the run's keys come as overrides.
    for key in ("Environment", "Secrets", "Command", "EntryPoint", "PortMappings", "Links"):
        assert key not in container, key


def test_container_logs_go_to_a_log_group_with_retention(synth: Any, container: dict[str, Any]) -> None:
    logging = container["LogConfiguration"]
    assert logging["LogDriver"] == "awslogs"
    group = synth.resources[ref_id(logging["Options"]["awslogs-group"])]
    assert group["Type"] == "AWS::Logs::LogGroup" and group["Properties"]["RetentionInDays"] > 0


def test_cluster_has_container_insights(synth: Any, sandbox: Any) -> None:
    settings = synth.resources[synth.logical_id(sandbox.cluster)]["Properties"]["ClusterSettings"]
    assert {"Name": "containerInsights", "Value": "enabled"} in settings


def test_image_asset_stages_only_the_sandbox_package(synth: Any, container: dict[str, Any]) -> None:
    """Synth needs no docker: it stages the build context, and only what the Dockerfile copies."""
    tag = json.dumps(container["Image"]).rsplit(":", 1)[-1].strip('"}] ')
    staged = Path(synth.app.outdir) / f"asset.{tag}"
    files = sorted(str(p.relative_to(staged)) for p in staged.rglob("*") if p.is_file())
    assert "sandbox_image/Dockerfile" in files
    assert "layers/core/python/context_engine/sandbox/container.py" in files
    assert all(f.startswith(("sandbox_image/", "layers/core/python/context_engine/sandbox/"))
               or f == "layers/core/python/context_engine/__init__.py" for f in files), files
    assert not any("__pycache__" in f for f in files)


# --- network ------------------------------------------------------------------------------------
def test_task_security_group_reaches_only_s3_ecr_and_logs(synth: Any, sandbox: Any) -> None:
    sg_id = synth.logical_id(sandbox.security_group)
    props = synth.resources[sg_id]["Properties"]
    assert "SecurityGroupIngress" not in props
    inline = props.get("SecurityGroupEgress", [])
    # No CIDR destinations at all: neither the internet nor the VPC's other services.
    assert all("CidrIp" not in r and "CidrIpv6" not in r for r in inline), inline
    endpoint_sgs = {ref_id(r["DestinationSecurityGroupId"]) for r in inline}
    network = synth.stack.network
    expected = {synth.logical_id(sg) for name in ("EcrApi", "EcrDocker", "Logs")
                for sg in network.endpoints[name].connections.security_groups}
    assert endpoint_sgs == expected
    separate = [r["Properties"] for r in synth.of_type("AWS::EC2::SecurityGroupEgress").values()
                if ref_id(r["Properties"]["GroupId"]) == sg_id]
    assert len(separate) == 1 and "DestinationPrefixListId" in separate[0]
    prefix_list = separate[0]["DestinationPrefixListId"]["Fn::GetAtt"]
    assert prefix_list[1] == "PrefixLists.0.PrefixListId"
    lookup = synth.resources[prefix_list[0]]["Properties"]
    assert "com.amazonaws.\",{\"Ref\":\"AWS::Region\"},\".s3" in json.dumps(lookup, separators=(",", ":"))
    for rule in [*inline, *separate]:
        assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", 443, 443), rule


def test_tasks_run_in_the_isolated_app_subnets(synth: Any, sandbox: Any) -> None:
    env = sandbox_function_environment(synth)
    subnets = env["CONTEXT_ENGINE_SANDBOX_SUBNETS"]["Fn::Join"][1]
    network = synth.stack.network
    app_subnets = network.vpc.select_subnets(subnet_group_name=network.app_subnets.subnet_group_name).subnets
    assert {ref_id(s) for s in subnets} == {synth.logical_id(s) for s in app_subnets}
    # Nothing in the app tier routes to the internet (no NAT, no internet gateway route).
    tables = {ref_id(synth.stack.resolve(s.route_table.route_table_id)) for s in app_subnets}
    default_routes = [r["Properties"] for r in synth.of_type("AWS::EC2::Route").values()
                      if ref_id(r["Properties"]["RouteTableId"]) in tables
                      and r["Properties"].get("DestinationCidrBlock") == "0.0.0.0/0"]
    assert default_routes == []
    assert ref_id(env["CONTEXT_ENGINE_SANDBOX_SECURITY_GROUPS"]) == synth.logical_id(sandbox.security_group)


# --- roles ----------------------------------------------------------------------------------------
def test_task_role_reads_requests_and_writes_results_only(synth: Any, sandbox: Any) -> None:
    role_id = synth.logical_id(sandbox.task_role)
    trust = synth.resources[role_id]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert [s["Principal"] for s in trust] == [{"Service": "ecs-tasks.amazonaws.com"}]
    assert "aws:SourceAccount" in json.dumps(trust)
    granted = {(a, json.dumps(s["Resource"])) for s in statements_of(synth, role_id) for a in as_list(s["Action"])}
    assert {a for a, _ in granted} == {"s3:GetObject", "s3:PutObject"}
    for action, resource in granted:
        assert resource.endswith('"/requests/*"]]}' if action == "s3:GetObject" else '"/results/*"]]}'), resource


def test_state_machine_may_run_only_the_sandbox_task(synth: Any, sandbox: Any) -> None:
    machine = synth.stack.pipeline.state_machines["sandbox_run"]
    role_id = synth.logical_id(machine.role)
    statements = statements_of(synth, role_id)
    by_action: dict[str, list[dict[str, Any]]] = {}
    for s in statements:
        for a in as_list(s["Action"]):
            by_action.setdefault(a, []).append(s)
    [run_task] = by_action["ecs:RunTask"]
    assert ref_id(run_task["Resource"]) == synth.logical_id(sandbox.task_definition)
    assert ref_id(run_task["Condition"]["ArnEquals"]["ecs:cluster"]) == synth.logical_id(sandbox.cluster)
    for action in ("ecs:StopTask", "ecs:DescribeTasks"):
        [s] = by_action[action]
        assert s["Resource"] != "*" and "ecs:cluster" in s["Condition"]["ArnEquals"]
    [pass_role] = by_action["iam:PassRole"]
    assert {ref_id(r) for r in pass_role["Resource"]} == {
        synth.logical_id(sandbox.task_role), synth.logical_id(sandbox.task_definition.execution_role)}
    assert pass_role["Condition"] == {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}
    assert not any(a.startswith("s3:") for a in by_action), "the state machine never touches run objects"
    for action in ("events:PutRule", "events:PutTargets", "events:DescribeRule"):
        assert json.dumps(by_action[action][0]["Resource"]).endswith(
            'rule/StepFunctionsGetEventsForECSTaskRule"]]}')


def sandbox_function_environment(synth: Any) -> dict[str, Any]:
    fn = synth.stack.functions.by_name["sandbox"]
    env: dict[str, Any] = synth.resources[synth.logical_id(fn)]["Properties"]["Environment"]["Variables"]
    return env


def test_sandbox_function_is_configured_and_scoped(synth: Any, sandbox: Any) -> None:
    env = sandbox_function_environment(synth)
    assert ref_id(env["CONTEXT_ENGINE_SANDBOX_BUCKET"]) == synth.logical_id(sandbox.bucket)
    assert ref_id(env["CONTEXT_ENGINE_SANDBOX_CLUSTER_ARN"]) == synth.logical_id(sandbox.cluster)
    assert ref_id(env["CONTEXT_ENGINE_SANDBOX_TASK_DEFINITION_ARN"]) == synth.logical_id(sandbox.task_definition)
    assert env["CONTEXT_ENGINE_SANDBOX_CONTAINER_NAME"] == "sandbox"
    assert "CONTEXT_ENGINE_WORKFLOW_SANDBOX_RUN_ARN" in env
    role_id = synth.logical_id(synth.stack.functions.roles["sandbox"])
    s3_grants = {(a, json.dumps(s["Resource"])) for s in statements_of(synth, role_id)
                 for a in as_list(s["Action"]) if a.startswith("s3:")}
    assert {a for a, _ in s3_grants} == {"s3:PutObject", "s3:GetObject", "s3:DeleteObject", "s3:ListBucket"}
    assert all("requests/*" in r for a, r in s3_grants if a == "s3:PutObject")
    assert all("results/*" in r for a, r in s3_grants if a == "s3:GetObject")


# --- the bucket -------------------------------------------------------------------------------------
def test_bucket_is_encrypted_private_short_lived_and_tls_only(synth: Any, sandbox: Any) -> None:
    bucket_id = synth.logical_id(sandbox.bucket)
    props = synth.resources[bucket_id]["Properties"]
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True, "RestrictPublicBuckets": True}
    [rule] = props["LifecycleConfiguration"]["Rules"]
    assert rule["Status"] == "Enabled" and rule["ExpirationInDays"] == 1
    assert rule["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}
    assert "VersioningConfiguration" not in props  # a deleted object must really be gone
    [policy] = [r["Properties"]["PolicyDocument"]["Statement"] for r in synth.of_type("AWS::S3::BucketPolicy").values()
                if ref_id(r["Properties"]["Bucket"]) == bucket_id]
    assert any(s["Effect"] == "Deny" and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
               for s in policy)
    [only_sandbox] = [s for s in policy if s.get("Sid") == "OnlyTheSandboxTouchesObjects"]
    assert only_sandbox["Effect"] == "Deny" and only_sandbox["Principal"] == {"AWS": "*"}
    allowed = {ref_id(a) for a in only_sandbox["Condition"]["ArnNotEquals"]["aws:PrincipalArn"]}
    assert allowed == {synth.logical_id(sandbox.task_role), synth.logical_id(synth.stack.functions.roles["sandbox"])}


# --- the workflow -------------------------------------------------------------------------------------
def test_state_machine_runs_the_task_with_keys_only(synth: Any) -> None:
    machine = synth.stack.pipeline.state_machines["sandbox_run"]
    definition = synth.resources[synth.logical_id(machine)]["Properties"]["DefinitionString"]
    text = definition if isinstance(definition, str) else json.dumps(definition)
    assert "arn:aws:states:::ecs:runTask.sync" in text
    asl = json.loads((REPO_ROOT / "statemachines/sandbox_run.asl.json").read_text())
    run = asl["States"]["RunSandboxTask"]
    assert run["Resource"] == "arn:aws:states:::ecs:runTask.sync"
    assert 60 < run["TimeoutSeconds"] <= 600
    assert run["Parameters"]["LaunchType"] == "FARGATE"
    assert run["Parameters"]["NetworkConfiguration"]["AwsvpcConfiguration"]["AssignPublicIp"] == "DISABLED"
    [override] = run["Parameters"]["Overrides"]["ContainerOverrides"]
    assert set(override) == {"Name.$", "Environment"}  # no Command: nothing on a command line
    assert {e["Name"]: e["Value.$"] for e in override["Environment"]} == {
        "SANDBOX_REQUEST_BUCKET": "$.task.bucket", "SANDBOX_REQUEST_KEY": "$.task.request_key",
        "SANDBOX_RESULT_KEY": "$.task.result_key"}
    [retry] = run["Retry"]
    assert {"ECS.AmazonECSException", "AmazonECS.Unknown"} <= set(retry["ErrorEquals"])
    assert retry["MaxAttempts"] >= 2 and retry["BackoffRate"] > 1
    assert [c["ErrorEquals"] for c in run["Catch"]] == [["States.TaskFailed"], ["States.ALL"]]
    assert asl["States"]["RecordFailure"]["Next"] == "Failed" and asl["States"]["Failed"]["Type"] == "Fail"
