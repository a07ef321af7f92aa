"""The Fargate entrypoint against S3 (moto): request in, SandboxResult out, same runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from pydantic import ValidationError

from context_engine.sandbox import Isolation, SandboxResult, SandboxStatus
from context_engine.sandbox.container import (
    EXIT_BAD_REQUEST,
    EXIT_OK,
    MAX_REQUEST_BYTES,
    ContainerFailure,
    ContainerSettings,
    main,
)
from context_engine.sandbox.local import find_interpreter

REPO = Path(__file__).resolve().parents[3]
BUCKET = "sandbox-runs"


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing-secret-key",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


def _environ(run_id: str) -> dict[str, str]:
    # What the Step Functions task override sets. The interpreter override is only needed here:
    # the test process runs as root from a venv the dropped sandbox uid cannot enter.
    return {
        "SANDBOX_REQUEST_BUCKET": BUCKET,
        "SANDBOX_REQUEST_KEY": f"runs/{run_id}/request.json",
        "SANDBOX_RESULT_KEY": f"runs/{run_id}/result.json",
        "SANDBOX_PYTHON": find_interpreter()[0],
        "UNRELATED": "ignored",
    }


def _submit(s3: Any, body: bytes | str) -> tuple[int, dict[str, Any]]:
    environ = _environ(uuid.uuid4().hex)
    s3.put_object(Bucket=BUCKET, Key=environ["SANDBOX_REQUEST_KEY"], Body=body)
    exit_code = main(environ, s3=s3)
    stored = s3.get_object(Bucket=BUCKET, Key=environ["SANDBOX_RESULT_KEY"])
    assert stored["ContentType"] == "application/json"
    return exit_code, json.loads(stored["Body"].read())


def test_runs_the_request_from_s3_and_writes_the_result(s3: Any) -> None:
    request = {"language": "python", "code": "import sys\nprint(sys.stdin.read()[::-1])", "stdin": "olleh"}
    exit_code, stored = _submit(s3, json.dumps(request))
    assert exit_code == EXIT_OK
    result = SandboxResult.model_validate(stored)
    assert (result.status, result.stdout, result.isolation) == (SandboxStatus.SUCCEEDED, "hello\n", Isolation.CONTAINER)


def test_code_failures_are_results_not_task_failures(s3: Any) -> None:
    exit_code, stored = _submit(s3, json.dumps({"code": "while True: pass", "limits": {"timeout_s": 1}}))
    assert exit_code == EXIT_OK
    assert SandboxResult.model_validate(stored).status is SandboxStatus.TIMED_OUT


def test_child_gets_no_network_and_no_credentials(s3: Any) -> None:
    # This process holds AWS credentials and (in Fargate) can reach S3: the child must not.
    code = """
import os, socket
print(sorted(os.environ))
try:
    socket.create_connection(("127.0.0.1", 9), timeout=2)
except OSError as exc:
    print("BLOCKED", exc.errno)
"""
    exit_code, stored = _submit(s3, json.dumps({"code": code}))
    result = SandboxResult.model_validate(stored)
    assert exit_code == EXIT_OK and result.status is SandboxStatus.SUCCEEDED, result.stderr
    assert result.stdout == "['HOME', 'LANG', 'PATH', 'TMPDIR']\nBLOCKED 1\n"
    assert "testing-secret-key" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (json.dumps({"code": "print(1)", "limits": {"timeout_s": 3600}}), "limits.timeout_s"),
        (json.dumps({"language": "ruby", "code": "puts 1"}), "language"),
        ("{not json", "json"),
    ],
)
def test_invalid_requests_fail_the_task_with_an_error_object(s3: Any, body: str, message: str) -> None:
    exit_code, stored = _submit(s3, body)
    assert exit_code == EXIT_BAD_REQUEST
    failure = ContainerFailure.model_validate(stored)
    assert failure.error.code == "invalid_request"
    assert message in failure.error.message.lower()


def test_oversized_requests_are_refused_before_parsing(s3: Any) -> None:
    exit_code, stored = _submit(s3, b"x" * (MAX_REQUEST_BYTES + 1))
    assert exit_code == EXIT_BAD_REQUEST
    assert "larger than" in ContainerFailure.model_validate(stored).error.message


def test_settings_require_the_locations() -> None:
    with pytest.raises(ValidationError) as caught:
        ContainerSettings.from_environ({"SANDBOX_REQUEST_BUCKET": BUCKET, "SANDBOX_RESULT_KEY": "r.json"})
    assert "SANDBOX_REQUEST_KEY" in str(caught.value)
    settings = ContainerSettings.from_environ({**_environ("x"), "SANDBOX_RESULT_BUCKET": "other"})
    assert (settings.output_bucket, settings.request_key) == ("other", "runs/x/request.json")


SAME_UID_DRIVER = """
import os, sys
from context_engine.sandbox import SandboxRequest, run
from context_engine.sandbox.container import ContainerSettings, container_host, make_undumpable

make_undumpable()
settings = ContainerSettings.from_environ({"SANDBOX_REQUEST_BUCKET": "bucket", "SANDBOX_REQUEST_KEY": "k",
                                           "SANDBOX_RESULT_KEY": "r"})
host = container_host(settings)
assert not host.drop_privileges
code = '''
import os
found = []
for pid in [p for p in os.listdir("/proc") if p.isdigit()]:
    for name in ("environ", "mem"):
        try:
            with open(f"/proc/{pid}/{name}", "rb") as handle:
                found.append((pid, name, handle.read(4096)))
        except OSError:
            pass
print(found)
'''
result = run(SandboxRequest(code=code), host=host)
print(result.model_dump_json())
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to start the runner as an unprivileged uid")
def test_same_uid_child_cannot_read_the_runner_environment_or_memory(tmp_path: Path) -> None:
    """Inside the image the runner and the child share one non-root uid; /proc must not leak."""
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    uid = 2_099_999_001  # a plain unprivileged user, like the image's
    site_packages = next(p for p in sys.path if p.endswith("site-packages"))
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": f"{REPO / 'layers/core/python'}:{site_packages}",
        "AWS_SECRET_ACCESS_KEY": secret,
    }
    driver = subprocess.run(  # noqa: S603
        [find_interpreter()[0], "-c", textwrap.dedent(SAME_UID_DRIVER)],
        env=env, cwd="/", capture_output=True, text=True, timeout=60,
        user=uid, group=uid, extra_groups=[],
    )
    assert driver.returncode == 0, driver.stderr
    result = SandboxResult.model_validate_json(driver.stdout.splitlines()[-1])
    assert result.status is SandboxStatus.SUCCEEDED, result.stderr
    assert secret not in result.stdout + result.stderr
