"""Deployment settings: cdk.json and the code agree, and bad values fail the synth early."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from infra_cdk.config import StackConfig

pytestmark = pytest.mark.infra

REPO_ROOT = Path(__file__).resolve().parents[2]


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def from_context(context: dict[str, object]) -> StackConfig:
    from aws_cdk import App

    return StackConfig.from_context(App(context=context).node)


def test_cdk_json_runs_the_app_offline_and_quietly() -> None:
    cdk = json.loads((REPO_ROOT / "cdk.json").read_text(encoding="utf-8"))
    assert cdk["app"] == ".venv/bin/python infra_cdk/app.py"
    assert cdk["notices"] is False and cdk["versionReporting"] is False
    assert cdk["context"]["cli-telemetry"] is False


def test_cdk_json_knobs_equal_the_code_defaults() -> None:
    context = json.loads((REPO_ROOT / "cdk.json").read_text(encoding="utf-8"))["context"]
    knobs = {k: v for k, v in context.items() if not k.startswith("@") and k != "cli-telemetry"}
    aliases = {"authorizerCacheTtlSeconds": "authorizer_cache_ttl_s"}
    fields = {camel(f.name): f.name for f in dataclasses.fields(StackConfig)} | aliases
    assert set(knobs) <= set(fields), set(knobs) - set(fields)
    defaults = StackConfig()
    for key, value in knobs.items():
        assert getattr(defaults, fields[key]) == value, key
    assert from_context(context) == defaults


def test_command_line_strings_are_parsed() -> None:
    config = from_context(
        {"deletionProtection": "false", "natGateways": "1", "reservedConcurrency": '{"query": 50}', "dbMaxAcu": "16"}
    )
    assert config.deletion_protection is False
    assert config.nat_gateways == 1
    assert config.reserved_concurrency == {"query": 50}
    assert config.db_max_acu == 16.0


@pytest.mark.parametrize(
    "context",
    [
        {"embeddingDim": "384"},  # Titan v2 offers 256, 512, 1024
        {"logRetentionDays": "10"},  # not a CloudWatch Logs retention period
        {"deletionProtection": "maybe"},
        {"dbMinAcu": "4", "dbMaxAcu": "2"},
        {"natGateways": "3"},
    ],
)
def test_bad_values_are_rejected(context: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        from_context(context)
