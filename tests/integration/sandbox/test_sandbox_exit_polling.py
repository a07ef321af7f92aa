"""Where pidfd_open is refused (old kernels, strict container seccomp profiles) the runner polls."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from context_engine.sandbox import SandboxResult, SandboxStatus

RunCode = Callable[..., SandboxResult]  # the ``sandbox`` fixture of conftest.py


@pytest.fixture
def no_pidfd(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(pid: int, flags: int = 0) -> int:
        raise PermissionError(1, "pidfd_open blocked by seccomp")

    monkeypatch.setattr("context_engine.sandbox.runner.os.pidfd_open", refuse)


@pytest.mark.usefixtures("no_pidfd")
def test_runs_end_normally_time_out_and_leave_nothing_behind(
    sandbox: RunCode, no_leftovers: Callable[[], None]
) -> None:
    assert sandbox("print('hi')").stdout == "hi\n"
    code = "import os, time\nif os.fork() == 0:\n    time.sleep(60)\nprint('parent done')"
    background = sandbox(code, timeout_s=10)
    assert background.status is SandboxStatus.SUCCEEDED and background.duration_ms < 5000
    assert sandbox("import time\ntime.sleep(30)", timeout_s=1).status is SandboxStatus.TIMED_OUT
    no_leftovers()
