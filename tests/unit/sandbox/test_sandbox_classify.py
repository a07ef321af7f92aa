"""How observations become a status: the launcher's last word, kills, and limits."""

import os
import signal

import pytest

from context_engine.sandbox.host import SandboxHost
from context_engine.sandbox.models import Isolation, SandboxLimits, SandboxRequest, SandboxStatus
from context_engine.sandbox.runner import _classify, _Outcome, _rlimits, _Stream


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        (_Outcome(returncode=0, words=["ready", "exit:0"]), (SandboxStatus.SUCCEEDED, 0, None)),
        (_Outcome(returncode=3, words=["ready", "exit:3"]), (SandboxStatus.FAILED, 3, None)),
        (_Outcome(returncode=1, words=["ready", "memory", "exit:1"]), (SandboxStatus.FAILED, 1, "memory limit")),
        (_Outcome(returncode=137, words=["ready", "signal:9"]),
         (SandboxStatus.FAILED, None, "killed by signal 9 (SIGKILL)")),
        (_Outcome(returncode=152, words=["ready", f"signal:{int(signal.SIGXCPU)}"]),
         (SandboxStatus.TIMED_OUT, None, "cpu time limit")),
        # The code forged a word, then the launcher reported the real end: the last word wins.
        (_Outcome(returncode=0, words=["ready", "signal:9", "exit:0"]), (SandboxStatus.SUCCEEDED, 0, None)),
        # bwrap turns signal 9 into exit 137; the launcher's word tells a real exit 137 apart.
        (_Outcome(returncode=137, words=["ready", "exit:137"]), (SandboxStatus.FAILED, 137, None)),
        # The launcher itself was killed (no final word): fall back to the wait status.
        (_Outcome(returncode=-9, words=["ready"]), (SandboxStatus.FAILED, None, "killed by signal 9 (SIGKILL)")),
        # The code killed the launcher and forged a success: the word contradicts the wait status.
        (_Outcome(returncode=-9, words=["ready", "exit:0"]),
         (SandboxStatus.FAILED, None, "killed by signal 9 (SIGKILL)")),
        (_Outcome(returncode=3, words=["ready", "exit:0"]), (SandboxStatus.FAILED, 3, None)),
        (_Outcome(killed_for="output", returncode=-9, words=["ready"]), (SandboxStatus.FAILED, None, "output limit")),
    ],
)
def test_classify(outcome: _Outcome, expected: tuple[SandboxStatus, int | None, str | None]) -> None:
    assert _classify(outcome, 5.0) == expected


def test_timeout_wins_over_everything_else() -> None:
    outcome = _Outcome(killed_for="timeout", returncode=-9, words=["ready", "memory", "exit:0"])
    assert _classify(outcome, 1.5) == (SandboxStatus.TIMED_OUT, None, "wall-clock timeout after 1.5 s")


def test_stream_keeps_at_most_its_cap_and_counts_the_rest() -> None:
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, b"a" * 70)
        os.close(write_end)
        stream = _Stream(read_end, cap=64)
        while not stream.closed:
            stream.read()
        assert bytes(stream.data) == b"a" * 64
        assert stream.seen == 70 and stream.truncated
    finally:
        os.close(read_end)


def test_rlimits_follow_the_request_and_the_host() -> None:
    host = SandboxHost(isolation=Isolation.SECCOMP, interpreter="/usr/bin/python3", interpreter_prefix="/usr",
                       drop_privileges=True, max_processes=16, max_open_files=32, max_file_mb=2)
    limits = _rlimits(SandboxRequest(code="1", limits=SandboxLimits(timeout_s=2.5, memory_mb=128)), host)
    assert limits["RLIMIT_AS"] == [128 * 1024 * 1024] * 2
    assert limits["RLIMIT_CPU"] == [4, 5]  # ceil(2.5) + 1: the wall clock fires first
    assert limits["RLIMIT_NPROC"] == [16, 16]
    assert limits["RLIMIT_NOFILE"] == [32, 32]
    assert limits["RLIMIT_FSIZE"] == [2 * 1024 * 1024] * 2
    assert limits["RLIMIT_CORE"] == [0, 0]


def test_host_rejects_inconsistent_settings() -> None:
    with pytest.raises(ValueError, match="bwrap_path"):
        SandboxHost(isolation=Isolation.BWRAP, interpreter="/usr/bin/python3", interpreter_prefix="/usr",
                    drop_privileges=True)
    with pytest.raises(ValueError, match="landlock"):
        SandboxHost(isolation=Isolation.CONTAINER, interpreter="/usr/bin/python3", interpreter_prefix="/usr",
                    drop_privileges=False, landlock=True)
    with pytest.raises(ValueError, match="uid_base"):
        SandboxHost(isolation=Isolation.SECCOMP, interpreter="/usr/bin/python3", interpreter_prefix="/usr",
                    drop_privileges=True, uid_base=2**31 - 100, uid_count=1000)
