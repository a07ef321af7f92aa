"""The sandbox's Fargate task on one machine: the ``ecs:runTask.sync`` state of
``statemachines/sandbox_run.asl.json`` runs on moto, and the task it starts runs the real
sandbox runner on the local sandbox host (bubblewrap, or the seccomp fallback).

moto 5.2's Step Functions executor does dispatch ``arn:aws:states:::ecs:runTask.sync`` to
moto's ECS backend, but as shipped that path cannot work, so this module completes it:

- The state's PascalCase parameters reach boto3 unconverted (``_normalise_parameters`` and
  ``_normalise_response`` are stubs in moto), so every such state fails with ``KeyError:
  'Cluster'``. The patch converts them with botocore's shapes, as Step Functions does.
- moto's ECS tasks run nothing and never stop. ``run_task`` on the local sandbox task
  definition now runs the container's job (read the request object, ``run()`` it, write the
  result object; see ``context_engine.sandbox.container``) and stops the task with its exit code.
- Step Functions fails a ``runTask.sync`` state with ``States.TaskFailed`` (cause: the task
  description) when the essential container did not exit 0 or never started, and names ECS API
  errors ``ECS.<Exception>``; moto reported success and ``States.Runtime``. The patches make
  the local runs take the same Retry/Catch paths as in AWS.

Nothing here interprets ASL. The resources (bucket, VPC, cluster, task definition) are
created in moto once per ``LocalStepFunctions`` engine, the first time a run needs them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any
from uuid import UUID

from context_engine.errors import DependencyUnavailable
from context_engine.pipeline.sfn_local import ACCOUNT, REGION, LocalStepFunctions
from context_engine.pipeline.workflows import get_workflow_starter
from context_engine.sandbox.container import (
    ContainerSettings,
)
from context_engine.services.sandbox import SandboxObjects, SandboxSettings, TaskTarget

log = logging.getLogger(__name__)

LOCAL_NAME = "context-engine-sandbox-local"  # bucket, cluster and task definition family
CONTAINER = "sandbox"
# Runs in flight at once on this machine; more wait for a slot (as Fargate tasks would queue
# behind the account's task quota), so a burst cannot overload a laptop.
LOCAL_TASK_SLOTS = 8
_CREDENTIALS = {"aws_access_key_id": "local", "aws_secret_access_key": "local"}  # noqa: S106 - moto only


class TaskStartFailure(Exception):
    """The task stopped before its container ran (what Fargate reports as TaskFailedToStart)."""


# --- the container's job, on the local sandbox host -------------------------------------------
def run_container(environ: dict[str, str], s3: Any) -> int:
    """``context_engine.sandbox.container.main`` with the local host instead of the container
    host: same environment contract, same objects, same exit codes."""
    from context_engine.sandbox.container import execute
    from context_engine.sandbox.local import local_host

    return execute(ContainerSettings.from_environ(environ), s3, local_host())


_slots = threading.BoundedSemaphore(LOCAL_TASK_SLOTS)


@cache
def _s3() -> Any:
    import boto3

    return boto3.client("s3", region_name=REGION, **_CREDENTIALS)


def _execute(task: Any) -> None:
    """Run one moto ECS task of the local sandbox task definition to completion."""
    environ = {e["name"]: e["value"]
               for o in task.overrides.get("containerOverrides", []) if o.get("name") == CONTAINER
               for e in o.get("environment", [])}
    container = task.containers[0]
    try:
        with _slots:
            exit_code = run_container(environ, _s3())
        container.exitCode = exit_code
        task.stop_code, task.stopped_reason = "EssentialContainerExited", "Essential container in task exited"
    except TaskStartFailure as failure:
        container.exitCode = None
        task.stop_code, task.stopped_reason = "TaskFailedToStart", str(failure)
    except Exception as err:  # the entrypoint crashed: the task stops without a result object
        log.exception("local sandbox task crashed", extra={"task": task.task_arn})
        container.exitCode = 1
        task.stop_code, task.stopped_reason = "EssentialContainerExited", f"{type(err).__name__}: {err}"
    container.last_status = "STOPPED"
    task.last_status = task.desired_status = "STOPPED"


# --- moto patches ----------------------------------------------------------------------------
_patch_lock = threading.Lock()
_patched = False


@cache
def _operation(service: str, action: str) -> Any:
    import botocore.session
    from moto.stepfunctions.parser.utils import camel_to_snake_case

    model = botocore.session.get_session().get_service_model(service)
    by_action = {camel_to_snake_case(name): name for name in model.operation_names}
    return model.operation_model(by_action[action])


def install_moto_patches() -> None:
    """Idempotent; the patches stay for the life of the process and only change moto."""
    global _patched
    with _patch_lock:
        if _patched:
            return
        from moto.ecs.models import EC2ContainerServiceBackend
        from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_ecs import (
            StateTaskServiceEcs,
        )

        StateTaskServiceEcs._normalise_parameters = _normalise_parameters  # type: ignore[method-assign]
        StateTaskServiceEcs._normalise_response = _normalise_response  # type: ignore[method-assign]
        StateTaskServiceEcs._build_sync_resolver = _failing_sync_resolver(  # type: ignore[method-assign]
            StateTaskServiceEcs._build_sync_resolver)
        StateTaskServiceEcs._from_error = _ecs_error_names(StateTaskServiceEcs._from_error)  # type: ignore[method-assign]
        EC2ContainerServiceBackend.run_task = _running_run_task(  # type: ignore[method-assign]
            EC2ContainerServiceBackend.run_task)
        _patched = True


def _normalise_parameters(self: Any, parameters: dict[str, Any], boto_service_name: str | None = None,
                          service_action_name: str | None = None) -> None:
    op = _operation(self._get_boto_service_name(boto_service_name), self._get_boto_service_action(service_action_name))
    if op.input_shape is not None:
        self._to_boto_request(parameters, op.input_shape)


def _normalise_response(self: Any, response: Any, boto_service_name: str | None = None,
                        service_action_name: str | None = None) -> None:
    op = _operation(self._get_boto_service_name(boto_service_name), self._get_boto_service_action(service_action_name))
    if op.output_shape is not None:
        self._from_boto_response(response, op.output_shape)


def _task_failure_event(state: Any, env: Any, error: str, cause: str) -> Any:
    from moto.stepfunctions.parser.api import HistoryEventType, TaskFailedEventDetails
    from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import CustomErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import FailureEvent
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import StatesErrorNameType
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails

    name = (StatesErrorName(typ=StatesErrorNameType.from_name(error)) if error.startswith("States.")
            else CustomErrorName(error_name=error))
    return FailureEvent(env=env, error_name=name, event_type=HistoryEventType.TaskFailed,
                        event_details=EventDetails(taskFailedEventDetails=TaskFailedEventDetails(  # type: ignore[typeddict-item]
                            resource=state._get_sfn_resource(), resourceType=state._get_sfn_resource_type(),
                            error=error, cause=cause)))


def _failing_sync_resolver(original: Callable[..., Any]) -> Callable[..., Any]:
    def build(self: Any, env: Any, resource_runtime_part: Any, normalised_parameters: dict[str, Any],
              state_credentials: Any) -> Callable[[], Any]:
        from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import FailureEventException

        resolver = original(self, env, resource_runtime_part, normalised_parameters, state_credentials)

        def resolve() -> Any:
            task = resolver()
            containers = (task or {}).get("Containers") or [{}]
            if task is not None and containers[0].get("ExitCode") != 0:
                cause = json.dumps(task, default=str, separators=(",", ":"))
                raise FailureEventException(failure_event=_task_failure_event(self, env, "States.TaskFailed", cause))
            return task

        return resolve

    return build


def _ecs_error_names(original: Callable[..., Any]) -> Callable[..., Any]:
    def from_error(self: Any, env: Any, ex: Exception) -> Any:
        from botocore.exceptions import ClientError

        if isinstance(ex, ClientError):
            error = ex.response.get("Error", {})
            return _task_failure_event(self, env, f"ECS.{error.get('Code', 'AmazonECSException')}",
                                       str(error.get("Message", "")))
        return original(self, env, ex)

    return from_error


def _running_run_task(original: Callable[..., Any]) -> Callable[..., Any]:
    def run_task(backend: Any, *args: Any, **kwargs: Any) -> Any:
        tasks = original(backend, *args, **kwargs)
        for task in tasks:
            # arn:aws:ecs:region:account:task-definition/<family>:<revision>
            if task.task_definition_arn.rsplit("/", 1)[-1].rsplit(":", 1)[0] == LOCAL_NAME:
                _execute(task)
        return tasks

    return run_task


# --- the local backend of services.sandbox ---------------------------------------------------------
@dataclass
class LocalSandboxBackend:
    objects: SandboxObjects
    cluster: str
    task_definition: str
    subnets: list[str]
    security_groups: list[str]

    def target(self, run_id: UUID) -> TaskTarget:
        return TaskTarget(cluster=self.cluster, task_definition=self.task_definition, container=CONTAINER,
                          subnets=self.subnets, security_groups=self.security_groups, bucket=self.objects.bucket,
                          request_key=self.objects.request_key(run_id), result_key=self.objects.result_key(run_id))


_backends: weakref.WeakKeyDictionary[LocalStepFunctions, LocalSandboxBackend] = weakref.WeakKeyDictionary()
_backends_lock = threading.Lock()


def local_backend(settings: SandboxSettings) -> LocalSandboxBackend:
    """The backend of the running local workflow engine, provisioned in its moto on first use."""
    try:
        engine = get_workflow_starter()
    except RuntimeError as err:
        raise DependencyUnavailable("no sandbox backend: configure CONTEXT_ENGINE_SANDBOX_* (AWS) or run "
                                    "the local dispatcher (context-engine serve)") from err
    if not isinstance(engine, LocalStepFunctions):
        raise DependencyUnavailable("the local sandbox needs the local workflow engine (LocalStepFunctions)")
    with _backends_lock:
        backend = _backends.get(engine)
        if backend is None:
            install_moto_patches()
            backend = _backends[engine] = _provision(settings)
        return backend


def _provision(settings: SandboxSettings) -> LocalSandboxBackend:
    import boto3

    s3 = boto3.client("s3", region_name=REGION, **_CREDENTIALS)
    ec2 = boto3.client("ec2", region_name=REGION, **_CREDENTIALS)
    ecs = boto3.client("ecs", region_name=REGION, **_CREDENTIALS)
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(Bucket=LOCAL_NAME)
    vpc = ec2.create_vpc(CidrBlock="10.99.0.0/16")["Vpc"]["VpcId"]
    # moto's ECS needs DNS hostnames to describe a task's network interface.
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.99.0.0/20")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName=LOCAL_NAME, Description="local sandbox task", VpcId=vpc)["GroupId"]
    cluster = ecs.create_cluster(clusterName=LOCAL_NAME)["cluster"]["clusterArn"]
    task_definition = ecs.register_task_definition(
        family=LOCAL_NAME, networkMode="awsvpc", requiresCompatibilities=["FARGATE"], cpu="1024", memory="3072",
        containerDefinitions=[{"name": CONTAINER, "image": "context-engine-sandbox:local", "essential": True,
                               "memory": 3072, "readonlyRootFilesystem": True, "user": "10001:10001"}],
    )["taskDefinition"]["taskDefinitionArn"]
    log.info("local sandbox task provisioned in moto", extra={"cluster": cluster, "account": ACCOUNT})
    return LocalSandboxBackend(
        objects=SandboxObjects(s3, LOCAL_NAME, settings.request_prefix, settings.result_prefix),
        cluster=cluster, task_definition=task_definition, subnets=[subnet], security_groups=[group])
