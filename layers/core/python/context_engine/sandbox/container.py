"""Fargate entrypoint: ``python -m context_engine.sandbox.container``.

The Step Functions task override sets where the request is and where the result goes
(``SANDBOX_REQUEST_BUCKET``/``SANDBOX_REQUEST_KEY``, ``SANDBOX_RESULT_BUCKET``/``SANDBOX_RESULT_KEY``);
the code itself never travels on the command line, where it would end up in ECS task
descriptions and logs.

Contract for the workflow: exit 0 means the result object holds a ``SandboxResult`` (whatever
the code's own status); a non-zero exit means the run could not happen and the result object,
when it could be written, holds ``{"error": {"code", "message"}}``.

The task definition is the outer isolation (read-only root file system, non-root user, no
egress except the S3 endpoint). Because this process *does* hold AWS credentials and can reach
S3, the child additionally gets the seccomp socket ban (so it cannot use that route) and this
process makes itself non-dumpable (so the child, running as the same uid, cannot read our
environment or memory through /proc).
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Mapping
from typing import Any, Literal

import boto3
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from context_engine.sandbox.errors import SandboxError
from context_engine.sandbox.host import SandboxHost
from context_engine.sandbox.models import MAX_CODE_BYTES, MAX_STDIN_BYTES, Isolation, SandboxRequest
from context_engine.sandbox.runner import run

# A valid request is code + stdin + a little JSON around them (escaping can double the size).
MAX_REQUEST_BYTES = 2 * (MAX_CODE_BYTES + MAX_STDIN_BYTES) + 16 * 1024
PR_SET_DUMPABLE = 4

EXIT_OK = 0
EXIT_BAD_REQUEST = 2
EXIT_SANDBOX_FAILED = 3


class ContainerSettings(BaseModel):
    """Environment of the task, parsed once."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    request_bucket: str = Field(alias="SANDBOX_REQUEST_BUCKET", min_length=3)
    request_key: str = Field(alias="SANDBOX_REQUEST_KEY", min_length=1)
    result_bucket: str | None = Field(default=None, alias="SANDBOX_RESULT_BUCKET")
    result_key: str = Field(alias="SANDBOX_RESULT_KEY", min_length=1)
    python: str | None = Field(default=None, alias="SANDBOX_PYTHON", description="child interpreter")
    temp_dir: str | None = Field(default=None, alias="SANDBOX_TEMP_DIR", description="writable volume")

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> ContainerSettings:
        return cls.model_validate({k: v for k, v in environ.items() if k.startswith("SANDBOX_")})

    @property
    def output_bucket(self) -> str:
        return self.result_bucket or self.request_bucket


class ContainerError(BaseModel):
    code: Literal["invalid_request", "sandbox_failed"]
    message: str


class ContainerFailure(BaseModel):
    """What the result object holds when the run could not happen."""

    error: ContainerError


def container_host(settings: ContainerSettings) -> SandboxHost:
    """The task is the isolation; the image's own python runs the code (no bwrap, no Landlock)."""
    interpreter = os.path.realpath(settings.python or sys.executable)
    return SandboxHost(
        isolation=Isolation.CONTAINER,
        interpreter=interpreter,
        interpreter_prefix=os.path.dirname(os.path.dirname(interpreter)),
        drop_privileges=os.geteuid() == 0,  # only if someone runs the image as root after all
        temp_root=settings.temp_dir,
    )


def make_undumpable() -> None:
    """Hide this process's /proc/<pid>/{environ,mem} and ptrace from same-uid processes."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_DUMPABLE, ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0)):
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE) failed")


def _put(s3: Any, settings: ContainerSettings, model: BaseModel) -> None:
    s3.put_object(
        Bucket=settings.output_bucket,
        Key=settings.result_key,
        Body=model.model_dump_json().encode(),
        ContentType="application/json",
    )


def _fail(s3: Any, settings: ContainerSettings, code: str, message: str, exit_code: int) -> int:
    print(f"sandbox {code}: {message}", file=sys.stderr)
    _put(s3, settings, ContainerFailure(error=ContainerError.model_validate({"code": code, "message": message})))
    return exit_code


def main(environ: Mapping[str, str] | None = None, s3: Any = None) -> int:
    make_undumpable()  # first, before boto3 loads any credentials into this process
    settings = ContainerSettings.from_environ(os.environ if environ is None else environ)
    return execute(settings, s3 if s3 is not None else boto3.client("s3"), container_host(settings))


def execute(settings: ContainerSettings, s3: Any, host: SandboxHost) -> int:
    """Read the request object, run it on ``host``, write the result object; the exit code
    tells the workflow how it went. The local Fargate stand-in calls this with the local host."""
    body = s3.get_object(Bucket=settings.request_bucket, Key=settings.request_key)["Body"].read(
        MAX_REQUEST_BYTES + 1
    )
    if len(body) > MAX_REQUEST_BYTES:
        return _fail(s3, settings, "invalid_request", f"request is larger than {MAX_REQUEST_BYTES} bytes",
                     EXIT_BAD_REQUEST)
    try:
        request = SandboxRequest.model_validate_json(body)
    except ValidationError as exc:
        details = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return _fail(s3, settings, "invalid_request", details, EXIT_BAD_REQUEST)
    try:
        result = run(request, host=host)
    except SandboxError as exc:
        return _fail(s3, settings, "sandbox_failed", str(exc), EXIT_SANDBOX_FAILED)
    _put(s3, settings, result)
    print(f"sandbox run {result.status}: exit={result.exit_code} reason={result.reason} "
          f"duration_ms={result.duration_ms}", file=sys.stderr)
    return EXIT_OK

if __name__ == "__main__":
    sys.exit(main())
