"""Deploy-time database administration as synthesized: migrations custom resource and rotation."""

from __future__ import annotations

import json
from typing import Any

import pytest
from infra_cdk.constructs.db_admin import migrations_digest

from context_engine.wiring import FUNCTIONS

pytestmark = pytest.mark.infra


def role_statements(synth: Any, role: Any) -> list[dict[str, Any]]:
    role_id = synth.logical_id(role)
    return [
        s
        for p in synth.of_type("AWS::IAM::Policy").values()
        if {"Ref": role_id} in p["Properties"]["Roles"]
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]


def test_migrations_run_after_the_database_and_rerun_when_migrations_change(synth: Any) -> None:
    (resource,) = synth.of_type("Custom::ContextEngineMigrations").values()
    props = resource["Properties"]
    data = synth.stack.data
    assert props["MigrationsDigest"] == migrations_digest()
    assert props["ProxyEndpoint"] == {"Fn::GetAtt": [synth.logical_id(data.proxy), "Endpoint"]}
    assert props["OwnerSecretArn"] == {"Ref": synth.logical_id(data.owner_secret)}
    assert props["AppSecretArn"] == {"Ref": synth.logical_id(data.app_secret)}
    assert props["DatabaseName"] == "context_engine" and props["Port"] == "5432"
    depends = set(resource["DependsOn"])
    assert synth.logical_id(data.cluster) in depends and synth.logical_id(data.proxy) in depends


def test_schema_and_functions_agree_on_the_embedding_dimension(synth: Any) -> None:
    (resource,) = synth.of_type("Custom::ContextEngineMigrations").values()
    for name in FUNCTIONS:
        fn = synth.resources[synth.logical_id(synth.stack.functions.by_name[name])]
        assert (
            fn["Properties"]["Environment"]["Variables"]["CONTEXT_ENGINE_EMBEDDING_DIM"]
            == (resource["Properties"]["EmbeddingDim"])
        )


def test_app_secret_rotates_with_the_custom_function(synth: Any) -> None:
    app_secret = synth.logical_id(synth.stack.data.app_secret)
    rotate_fn = synth.logical_id(synth.stack.db_admin.rotate_function)
    (schedule,) = [
        s
        for s in synth.of_type("AWS::SecretsManager::RotationSchedule").values()
        if s["Properties"]["SecretId"] == {"Ref": app_secret}
    ]
    assert schedule["Properties"]["RotationLambdaARN"] == {"Fn::GetAtt": [rotate_fn, "Arn"]}
    assert schedule["Properties"]["RotationRules"]["ScheduleExpression"] == "rate(30 days)"
    env = synth.resources[rotate_fn]["Properties"]["Environment"]["Variables"]
    assert env["OWNER_SECRET_ARN"] == {"Ref": synth.logical_id(synth.stack.data.owner_secret)}


def test_only_the_admin_functions_touch_the_owner_secret(synth: Any) -> None:
    owner = json.dumps({"Ref": synth.logical_id(synth.stack.data.owner_secret)})
    for name, role in synth.stack.functions.roles.items():
        assert owner not in json.dumps(role_statements(synth, role)), name
    assert owner in json.dumps(role_statements(synth, synth.stack.db_admin.migrate_function.role))
    app_writes = [
        s
        for s in role_statements(synth, synth.stack.db_admin.migrate_function.role)
        if "secretsmanager:PutSecretValue" in s["Action"]
    ]
    assert [s["Resource"] for s in app_writes] == [{"Ref": synth.logical_id(synth.stack.data.app_secret)}]
