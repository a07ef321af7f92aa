"""The pipeline construct builds exactly what context_engine.wiring declares: rules → queues
(+ DLQs, redrive) → consumers (ReportBatchItemFailures), the ASL state machine with its
substitutions, who may start it, and the scheduled functions."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk import Duration
from aws_cdk.aws_events import Schedule
from infra_cdk.constructs.pipeline import REPO_ROOT

from context_engine.pipeline.workflows import arn_env
from context_engine.wiring import EVENT_RULES, EVENT_SOURCE, QUEUES, SCHEDULES, WORKFLOWS

pytestmark = pytest.mark.infra


def lid(synth: Any, construct: Any) -> str:
    return str(synth.logical_id(construct))


def props(synth: Any, construct: Any) -> dict[str, Any]:
    return dict(synth.resources[lid(synth, construct)]["Properties"])


def test_each_queue_has_its_dlq_with_redrive_and_encryption(synth: Any) -> None:
    pipeline = synth.stack.pipeline
    for name, spec in QUEUES.items():
        q = props(synth, pipeline.queues[name])
        assert q["RedrivePolicy"] == {
            "deadLetterTargetArn": {"Fn::GetAtt": [lid(synth, pipeline.dead_letter_queues[name]), "Arn"]},
            "maxReceiveCount": spec.max_receive_count,
        }
        assert q["VisibilityTimeout"] == spec.visibility_timeout_s and q["SqsManagedSseEnabled"] is True


def test_consumers_report_batch_item_failures(synth: Any) -> None:
    mappings = synth.of_type("AWS::Lambda::EventSourceMapping").values()
    for name, spec in QUEUES.items():
        queue_arn = {"Fn::GetAtt": [lid(synth, synth.stack.pipeline.queues[name]), "Arn"]}
        (mapping,) = [m["Properties"] for m in mappings if m["Properties"]["EventSourceArn"] == queue_arn]
        assert mapping["FunctionName"] == {"Ref": lid(synth, synth.stack.functions.by_name[spec.consumer])}
        assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        assert mapping["BatchSize"] == spec.batch_size
        assert mapping["ScalingConfig"] == {"MaximumConcurrency": spec.max_concurrency}


def test_rules_route_the_wired_detail_types_to_their_queue(synth: Any) -> None:
    pipeline = synth.stack.pipeline
    for name, rule in EVENT_RULES.items():
        r = props(synth, pipeline.rules[name])
        assert r["EventBusName"] == {"Ref": lid(synth, synth.stack.bus.bus)}
        assert r["EventPattern"] == {"source": [EVENT_SOURCE], "detail-type": list(rule.detail_types)}
        (target,) = r["Targets"]
        assert target["Arn"] == {"Fn::GetAtt": [lid(synth, pipeline.queues[rule.queue]), "Arn"]}
        assert target["DeadLetterConfig"]["Arn"] == {"Fn::GetAtt": [lid(synth, pipeline.delivery_dlq), "Arn"]}


def test_the_state_machine_is_the_asl_file_with_function_arns(synth: Any) -> None:
    for name, spec in WORKFLOWS.items():
        machine = synth.stack.pipeline.state_machines[name]
        m = props(synth, machine)
        assert m["DefinitionSubstitutions"] == {
            placeholder: {"Fn::GetAtt": [lid(synth, synth.stack.functions.by_name[fn]), "Arn"]}
            for placeholder, fn in spec.substitutions.items()
        }
        with open(REPO_ROOT / spec.definition, encoding="utf-8") as f:
            assert json.loads(m["DefinitionString"]) == json.load(f)  # the file as is; CFN substitutes
        assert m["LoggingConfiguration"]["Level"] == "ALL"
        assert m["LoggingConfiguration"]["IncludeExecutionData"] is False
        assert m["TracingConfiguration"] == {"Enabled": True}
        for starter in spec.started_by:
            env = props(synth, synth.stack.functions.by_name[starter])["Environment"]["Variables"]
            assert json.dumps(env[arn_env(spec)]).endswith(f':stateMachine:{m["StateMachineName"]}"]]}}')


def test_who_may_start_and_what_the_machine_may_invoke(synth: Any) -> None:
    from tests.infra.test_functions import granted

    for name, spec in WORKFLOWS.items():
        machine = lid(synth, synth.stack.pipeline.state_machines[name])
        name_ = synth.resources[machine]["Properties"]["StateMachineName"]

        def may_start(function: str, name_: str = name_) -> bool:
            return any(json.dumps(arn).endswith(f':stateMachine:{name_}"]]}}')
                       for arn in granted(synth, function, "states:StartExecution"))

        assert {f for f in synth.stack.functions.by_name if may_start(f)} == set(spec.started_by)
        role = props(synth, synth.stack.pipeline.state_machines[name])["RoleArn"]["Fn::GetAtt"][0]
        statements = [s for p in synth.of_type("AWS::IAM::Policy").values() if {"Ref": role} in p["Properties"]["Roles"]
                      for s in p["Properties"]["PolicyDocument"]["Statement"]]
        invoke = [s for s in statements if s["Action"] == "lambda:InvokeFunction"]
        arns = [r["Fn::GetAtt"][0] for s in invoke for r in s["Resource"] if "Fn::GetAtt" in r]
        assert set(arns) == {lid(synth, synth.stack.functions.by_name[f]) for f in spec.task_functions}


def test_schedules_invoke_their_functions(synth: Any) -> None:
    for name, spec in SCHEDULES.items():
        r = props(synth, synth.stack.pipeline.schedules[name])
        assert r["ScheduleExpression"] == Schedule.rate(Duration.minutes(spec.rate_minutes)).expression_string
        (target,) = r["Targets"]
        assert target["Arn"] == {"Fn::GetAtt": [lid(synth, synth.stack.functions.by_name[spec.function]), "Arn"]}


def test_dead_letters_and_failed_workflows_alarm(synth: Any) -> None:
    alarms = [a["Properties"] for a in synth.of_type("AWS::CloudWatch::Alarm").values()]
    dlq_names = {lid(synth, q) for q in [*synth.stack.pipeline.dead_letter_queues.values(),
                                         synth.stack.pipeline.delivery_dlq]}
    visible = [a for a in alarms if a.get("MetricName") == "ApproximateNumberOfMessagesVisible"]
    watched = {d["Value"]["Fn::GetAtt"][0] for a in visible for d in a["Dimensions"]}
    assert dlq_names <= watched
    assert any(a.get("MetricName") == "ExecutionsFailed" for a in alarms)


def test_step_functions_is_reachable_from_the_isolated_app_tier(synth: Any) -> None:
    endpoints = [e["Properties"]["ServiceName"] for e in synth.of_type("AWS::EC2::VPCEndpoint").values()]
    assert any("states" in json.dumps(s) for s in endpoints)
