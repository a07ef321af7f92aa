"""Fixtures for running real code in the local sandbox under each isolation mode."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from context_engine.sandbox import (
    Isolation,
    SandboxHost,
    SandboxLimits,
    SandboxRequest,
    SandboxResult,
    SandboxUnavailableError,
    run,
)
from context_engine.sandbox.local import local_host

RunCode = Callable[..., SandboxResult]


@pytest.fixture(scope="session", params=[Isolation.BWRAP, Isolation.SECCOMP], ids=["bwrap", "seccomp"])
def host(request: pytest.FixtureRequest) -> SandboxHost:
    """Every escape test runs once under bubblewrap and once under the seccomp fallback."""
    try:
        return local_host(request.param)
    except SandboxUnavailableError as exc:
        if request.param is Isolation.BWRAP:
            pytest.skip(f"bubblewrap unavailable here: {exc} (apt-get install bubblewrap)")
        raise


@pytest.fixture
def sandbox(host: SandboxHost) -> RunCode:
    """``sandbox(code, stdin=None, **limits)`` runs code on the parametrized host."""

    def _run(code: str, stdin: str | None = None, **limits: float) -> SandboxResult:
        return run(SandboxRequest(code=code, stdin=stdin, limits=SandboxLimits(**limits)), host=host)

    return _run


LAUNCHER_MARK = b"Child-side bootstrap"  # first words of _launcher.py, on every sandbox command line


def sandbox_processes(host: SandboxHost) -> list[int]:
    """Live processes of the sandbox: owned by a per-run uid, or running the launcher (bwrap too)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            status = Path(f"/proc/{entry}/status").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if fields.get("State", "").split()[:1] == ["Z"]:
            continue
        uids = [int(value) for value in fields.get("Uid", "").split()]
        per_run_uid = any(host.uid_base <= uid < host.uid_base + host.uid_count for uid in uids)
        if per_run_uid or LAUNCHER_MARK in cmdline:
            pids.append(int(entry))
    return pids


@pytest.fixture
def no_leftovers(host: SandboxHost) -> Callable[[], None]:
    """Call to assert that nothing of a run survives it (pid-namespace teardown is asynchronous)."""

    def _check() -> None:
        deadline = time.monotonic() + 3
        while (left := sandbox_processes(host)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert left == [], f"sandbox processes survived the run: {left}"

    return _check
