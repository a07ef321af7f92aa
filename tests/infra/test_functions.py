"""One Lambda per wiring.FUNCTIONS entry, configured and permitted from its flags only."""

from __future__ import annotations

from typing import Any

import pytest

from context_engine.wiring import FUNCTIONS

pytestmark = pytest.mark.infra


def fn_props(synth: Any, name: str) -> dict[str, Any]:
    props: dict[str, Any] = synth.resources[synth.logical_id(synth.stack.functions.by_name[name])]["Properties"]
    return props


def statements(synth: Any, name: str) -> list[dict[str, Any]]:
    """Every statement of the identity policies attached to the function's role."""
    role = synth.logical_id(synth.stack.functions.roles[name])
    found: list[dict[str, Any]] = []
    for policy in synth.of_type("AWS::IAM::Policy").values():
        if {"Ref": role} in policy["Properties"]["Roles"]:
            found.extend(policy["Properties"]["PolicyDocument"]["Statement"])
    found.extend(
        s for p in synth.resources[role]["Properties"].get("Policies", []) for s in p["PolicyDocument"]["Statement"]
    )
    return found


def actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else list(action)


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def granted(synth: Any, name: str, action: str) -> list[Any]:
    """Resources on which the function's role is allowed ``action`` (exact or by service wildcard)."""
    service = action.split(":")[0]
    return [
        s["Resource"]
        for s in statements(synth, name)
        if s["Effect"] == "Allow" and any(a in (action, f"{service}:*", "*") for a in actions(s))
    ]


def test_every_wired_function_exists_with_the_layer_arm64_in_the_vpc(synth: Any) -> None:
    assert set(synth.stack.functions.by_name) == set(FUNCTIONS)
    layer = synth.logical_id(synth.stack.core_layer.layer)
    app_subnets = {s.subnet_id for s in synth.stack.network.vpc.select_subnets(subnet_group_name="app").subnets}
    app_subnet_ids = {synth.stack.resolve(s)["Ref"] for s in app_subnets}
    for name, spec in FUNCTIONS.items():
        props = fn_props(synth, name)
        assert props["Runtime"] == "python3.12", name
        assert props["Architectures"] == ["arm64"], name
        assert props["Layers"] == [{"Ref": layer}], name
        assert props["Handler"] == spec.handler, name
        assert props["MemorySize"] == spec.memory_mb and props["Timeout"] == spec.timeout_s, name
        assert props["TracingConfig"] == {"Mode": "Active"}, name
        assert {s["Ref"] for s in props["VpcConfig"]["SubnetIds"]} == app_subnet_ids, name
        sg = synth.logical_id(synth.stack.functions.security_groups[name])
        assert props["VpcConfig"]["SecurityGroupIds"] == [{"Fn::GetAtt": [sg, "GroupId"]}], name
        log_group = synth.resources[props["LoggingConfig"]["LogGroup"]["Ref"]]
        assert log_group["Properties"]["RetentionInDays"] == 30, name


def test_environment_follows_the_flags(synth: Any) -> None:
    for name, spec in FUNCTIONS.items():
        env = fn_props(synth, name)["Environment"]["Variables"]
        assert env["CONTEXT_ENGINE_ENVIRONMENT"] == "aws"
        assert env["CONTEXT_ENGINE_AUTO_MIGRATE"] == "false"
        assert env["CONTEXT_ENGINE_EMBEDDER"] == "bedrock"
        assert env["POWERTOOLS_SERVICE_NAME"] and env["POWERTOOLS_METRICS_NAMESPACE"] == "ContextEngine"
        assert ("CONTEXT_ENGINE_DATABASE_SECRET_ARN" in env) == spec.needs_db, name
        assert ("REDIS_URL" in env) == spec.needs_cache, name
        assert ("CONTEXT_ENGINE_EVENT_BUS_NAME" in env) == spec.needs_events, name
        if spec.needs_db:
            assert env["CONTEXT_ENGINE_DATABASE_SECRET_ARN"] == {"Ref": synth.logical_id(synth.stack.data.app_secret)}
        if spec.needs_cache:
            assert env["REDIS_URL"]["Fn::Join"][1][0].startswith("rediss://")  # TLS


def test_the_write_function_can_put_events_and_the_query_function_cannot(synth: Any) -> None:
    bus = synth.logical_id(synth.stack.bus.bus)
    assert FUNCTIONS["write"].needs_events and not FUNCTIONS["query"].needs_events
    assert granted(synth, "write", "events:PutEvents") == [{"Fn::GetAtt": [bus, "Arn"]}]
    assert granted(synth, "query", "events:PutEvents") == []
    for name, spec in FUNCTIONS.items():
        assert bool(granted(synth, name, "events:PutEvents")) == spec.needs_events, name


def test_app_secret_read_only_for_needs_db_and_never_the_owner_or_cache_secret(synth: Any) -> None:
    """Constructs that plug in may grant secrets of their own; these three are the stack's."""
    data = synth.stack.data
    app_secret = {"Ref": synth.logical_id(data.app_secret)}
    never = [{"Ref": synth.logical_id(data.owner_secret)}, {"Ref": synth.logical_id(data.cache_secret)}]
    for name, spec in FUNCTIONS.items():
        resources = [r for res in granted(synth, name, "secretsmanager:GetSecretValue") for r in as_list(res)]
        assert (app_secret in resources) == spec.needs_db, name
        assert not [r for r in resources if r in never], name


def test_bedrock_only_for_needs_bedrock_and_only_named_models(synth: Any) -> None:
    for name, spec in FUNCTIONS.items():
        resources = granted(synth, name, "bedrock:InvokeModel")
        assert bool(resources) == spec.needs_bedrock, name
        for resource in resources:
            arns = resource if isinstance(resource, list) else [resource]
            rendered = [str(synth.stack.resolve(a)) for a in arns]
            assert all("foundation-model/" in a and "*" not in a for a in rendered), rendered
            assert any("amazon.titan-embed-text-v2:0" in a for a in rendered)


def test_functions_wait_for_the_schema(synth: Any) -> None:
    migrations = synth.logical_id(synth.stack.db_admin.migrations.node.default_child)
    for name in FUNCTIONS:
        depends = synth.resources[synth.logical_id(synth.stack.functions.by_name[name])].get("DependsOn", [])
        assert migrations in depends, name


def test_the_query_function_has_room_for_users_search_indexes(synth: Any) -> None:
    """search/user_index.py: a 10k-turn user with 1024-d vectors (~140 MB) must fit the quarter
    of the index budget a user may take, and the budget must leave the function room to run."""
    from context_engine.search.user_index import UserIndexCache

    props = fn_props(synth, "query")
    budget_mb = int(props["Environment"]["Variables"]["CONTEXT_ENGINE_USER_INDEX_MB"])
    assert UserIndexCache(budget_mb * 1024 * 1024, 1024).fits(10_000)
    assert budget_mb <= props["MemorySize"] / 2
