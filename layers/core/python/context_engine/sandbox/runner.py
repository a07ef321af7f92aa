"""The one sandbox runner, used by the local server and inside the Fargate task.

``run()`` starts the launcher (``_launcher.py``) in a fresh interpreter, wrapped by the host's
isolation, and watches it from outside: a wall-clock deadline that SIGKILLs the whole process
group, output read through bounded buffers (the run is killed as soon as a stream passes its
cap, so memory use stays bounded whatever the code prints), and a clean environment. Limits
that must hold inside the child (rlimits, Landlock, seccomp) are applied by the launcher.
"""

from __future__ import annotations

import contextlib
import fcntl
import marshal
import math
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

from context_engine.sandbox.bwrap import bwrap_argv
from context_engine.sandbox.errors import SandboxSetupError
from context_engine.sandbox.host import DEVICE_PATHS, SandboxHost
from context_engine.sandbox.models import Isolation, SandboxRequest, SandboxResult, SandboxStatus

SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"
BWRAP_WORKDIR = "/tmp"  # noqa: S108 - the private tmpfs inside the bubblewrap namespace
# After the process is gone, how long to wait for pipes held open by stragglers.
DRAIN_GRACE_S = 2.0
READ_CHUNK = 64 * 1024
POLL_INTERVAL_S = 0.01  # exit polling, only where pidfd_open is unavailable

_leased_uids: set[int] = set()
_lease_lock = threading.Lock()


@cache
def launcher_source() -> str:
    """Source of the child bootstrap, passed with ``-c`` so the child never imports this package."""
    return resources.files("context_engine.sandbox").joinpath("_launcher.py").read_text(encoding="utf-8")


@contextlib.contextmanager
def _lease_uid(host: SandboxHost) -> Iterator[int | None]:
    """A uid no other run of this process is using (random, so other processes rarely collide)."""
    if not host.drop_privileges:
        yield None
        return
    with _lease_lock:
        while True:
            uid = host.uid_base + secrets.randbelow(host.uid_count)
            if uid not in _leased_uids:
                _leased_uids.add(uid)
                break
    try:
        yield uid
    finally:
        with _lease_lock:
            _leased_uids.discard(uid)


@contextlib.contextmanager
def _work_dir(host: SandboxHost, uid: int | None) -> Iterator[str | None]:
    """Private cwd on the host for the non-bwrap modes; bwrap uses a tmpfs that dies with it."""
    if host.isolation is Isolation.BWRAP:
        yield None
        return
    path = tempfile.mkdtemp(prefix="sandbox-", dir=host.temp_root)
    try:
        if uid is not None:
            os.chown(path, uid, uid)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _memfd(name: str, data: bytes) -> int:
    """A sealed anonymous file holding ``data``: nothing on disk, and the child can only read it."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        if data:
            os.write(fd, data)
        os.lseek(fd, 0, os.SEEK_SET)
        seals = fcntl.F_SEAL_WRITE | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_SEAL
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _rlimits(request: SandboxRequest, host: SandboxHost) -> dict[str, list[int]]:
    cpu = math.ceil(request.limits.timeout_s) + 1  # CPU can only run out after the wall clock, barring threads
    memory = request.limits.memory_mb * 1024 * 1024
    file_size = host.max_file_mb * 1024 * 1024
    return {
        "RLIMIT_CPU": [cpu, cpu + 1],
        "RLIMIT_AS": [memory, memory],
        "RLIMIT_FSIZE": [file_size, file_size],
        "RLIMIT_NOFILE": [host.max_open_files, host.max_open_files],
        "RLIMIT_NPROC": [host.max_processes, host.max_processes],
        "RLIMIT_CORE": [0, 0],
    }


@dataclass
class _Stream:
    """Bounded capture of one output pipe."""

    fd: int
    cap: int
    data: bytearray = field(default_factory=bytearray)
    seen: int = 0
    closed: bool = False

    @property
    def truncated(self) -> bool:
        return self.seen > self.cap

    def read(self) -> None:
        try:
            chunk = os.read(self.fd, READ_CHUNK)
        except BlockingIOError:
            return
        if not chunk:
            self.closed = True
            return
        self.seen += len(chunk)
        room = self.cap - len(self.data)
        if room > 0:
            self.data += chunk[:room]

    def text(self) -> str:
        return self.data.decode("utf-8", "replace")


@dataclass
class _Outcome:
    killed_for: str | None = None  # "timeout" | "output"
    returncode: int | None = None
    words: list[str] = field(default_factory=list)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _exited_unreaped(pid: int) -> bool:
    """Whether ``pid`` has exited, leaving it a zombie (WNOWAIT) so its group id stays reserved."""
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def _pump(selector: selectors.BaseSelector, pid: int, polling: bool, deadline: float, outcome: _Outcome) -> None:
    """Read output until the process exits, the deadline passes or a stream exceeds its cap.

    Exit is signalled by the pidfd registered in ``selector``; where pidfd_open is refused (old
    kernels, strict container seccomp profiles) ``polling`` checks every POLL_INTERVAL_S instead.
    """
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            outcome.killed_for = "timeout"
            return
        exited = False
        for key, _ in selector.select(min(remaining, POLL_INTERVAL_S) if polling else remaining):
            if key.data is None:  # the pidfd: the launcher has exited
                exited = True
                continue
            stream = key.data
            stream.read()
            if stream.closed:
                selector.unregister(stream.fd)
            elif stream.truncated:
                outcome.killed_for = "output"
                return
        if exited or (polling and _exited_unreaped(pid)):
            return


def _drain(selector: selectors.BaseSelector, streams: list[_Stream]) -> None:
    """Collect what is still in the pipes; the group is dead, so EOF follows promptly."""
    for stream in streams:
        if stream.truncated and not stream.closed:
            selector.unregister(stream.fd)
    deadline = time.monotonic() + DRAIN_GRACE_S
    while any(not s.closed and not s.truncated for s in streams):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        for key, _ in selector.select(remaining):
            stream = key.data
            stream.read()
            if stream.closed or stream.truncated:
                selector.unregister(stream.fd)


def _watch(proc: subprocess.Popen[bytes], streams: list[_Stream], deadline: float) -> _Outcome:
    """Watch the run to its end; afterwards nothing it started is alive.

    The process group is killed before the leader is reaped: while the leader is an unreaped
    zombie its pid (= the group id) cannot be reused, so the kill cannot hit a stranger.
    """
    outcome = _Outcome()
    try:
        pidfd: int | None = os.pidfd_open(proc.pid)
    except OSError:
        pidfd = None
    try:
        with selectors.DefaultSelector() as selector:
            if pidfd is not None:
                selector.register(pidfd, selectors.EVENT_READ, None)
            for stream in streams:
                os.set_blocking(stream.fd, False)
                selector.register(stream.fd, selectors.EVENT_READ, stream)
            try:
                _pump(selector, proc.pid, pidfd is None, deadline, outcome)
            finally:  # also when we are interrupted: the run must not outlive the call
                _kill_group(proc.pid)
                outcome.returncode = proc.wait()
            if pidfd is not None:
                selector.unregister(pidfd)
            _drain(selector, streams)
    finally:
        if pidfd is not None:
            os.close(pidfd)
    if outcome.killed_for is None and any(s.truncated for s in streams):
        outcome.killed_for = "output"  # the cap was passed just before the exit: same verdict
    return outcome


def _read_words(fd: int) -> list[str]:
    os.set_blocking(fd, False)
    data = b""
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(fd, 4096):
            data += chunk
            if len(data) > 64 * 1024:  # the code may write here too; never buffer without bound
                break
    return data.decode("utf-8", "replace").splitlines()


def _signal_name(number: int) -> str:
    try:
        return f"killed by signal {number} ({signal.Signals(number).name})"
    except ValueError:
        return f"killed by signal {number}"


def _final_word(outcome: _Outcome) -> str:
    """How the code's process ended: the launcher's report if its own exit status confirms it.

    The code can write to the status pipe too; a word that does not match how the launcher
    actually exited (exit code N, or 128+N after signal N) is ignored, so forging is pointless.
    """
    rc = outcome.returncode if outcome.returncode is not None else -signal.SIGKILL
    for word in reversed(outcome.words):
        kind, _, value = word.partition(":")
        if kind in ("exit", "signal") and value.isdigit():
            expected = int(value) if kind == "exit" else 128 + int(value)
            if rc == expected:
                return word
            break
    return f"signal:{-rc}" if rc < 0 else f"exit:{rc}"  # the launcher itself was killed or lied


def _classify(outcome: _Outcome, timeout_s: float) -> tuple[SandboxStatus, int | None, str | None]:
    """Status, exit code and reason from what was observed."""
    if outcome.killed_for == "timeout":
        return SandboxStatus.TIMED_OUT, None, f"wall-clock timeout after {timeout_s:g} s"
    if outcome.killed_for == "output":
        return SandboxStatus.FAILED, None, "output limit"
    kind, _, value = _final_word(outcome).partition(":")
    number = int(value)
    if kind == "signal":
        if number == signal.SIGXCPU:
            return SandboxStatus.TIMED_OUT, None, "cpu time limit"
        return SandboxStatus.FAILED, None, _signal_name(number)
    if "memory" in outcome.words:
        return SandboxStatus.FAILED, number, "memory limit"
    if number == 0:
        return SandboxStatus.SUCCEEDED, 0, None
    return SandboxStatus.FAILED, number, None


def _environment(home: str) -> dict[str, str]:
    # Built from nothing: the host's variables (credentials, tokens, proxy settings) never reach
    # the child. TMPDIR points at the private dir because /tmp is not writable under Landlock.
    return {"PATH": SANDBOX_PATH, "LANG": "C.UTF-8", "HOME": home, "TMPDIR": home}


def run(request: SandboxRequest, *, host: SandboxHost) -> SandboxResult:
    """Run ``request.code`` under ``host``'s isolation and limits; never raises for the code's faults.

    Raises ``SandboxSetupError`` when the sandbox itself cannot start or lock down.
    """
    started = time.monotonic()
    with _lease_uid(host) as uid, _work_dir(host, uid) as work, contextlib.ExitStack() as fds:
        code_fd = _memfd("sandbox-code", request.code.encode("utf-8", "surrogatepass"))
        fds.callback(os.close, code_fd)
        stdin_fd: int | None = None
        if request.stdin is not None:
            stdin_fd = _memfd("sandbox-stdin", request.stdin.encode("utf-8", "surrogatepass"))
            fds.callback(os.close, stdin_fd)
        status_read, status_write = os.pipe()
        fds.callback(os.close, status_read)

        home = BWRAP_WORKDIR if host.isolation is Isolation.BWRAP else str(work)
        config: dict[str, object] = {
            "code_fd": code_fd,
            "status_fd": status_write,
            "rlimits": _rlimits(request, host),
            # Under bwrap the network namespace is empty; elsewhere seccomp keeps the code off it.
            "seccomp": host.isolation is not Isolation.BWRAP,
        }
        if host.landlock:
            config["landlock"] = {
                "read": [*host.read_only_paths, host.interpreter_prefix],
                "write": [home],
                "devices": list(DEVICE_PATHS),
            }
        # Built-in marshal (format 2: readable by any Python 3) costs the child no imports, unlike json.
        config_arg = marshal.dumps(config, 2).hex()
        argv = [host.interpreter, "-I", "-S", "-B", "-u", "-c", launcher_source(), config_arg]
        if host.isolation is Isolation.BWRAP:
            argv = bwrap_argv(host, argv, workdir=BWRAP_WORKDIR)
        try:
            proc = subprocess.Popen(  # noqa: S603 - argv is built here, never from the request
                argv,
                stdin=stdin_fd if stdin_fd is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(code_fd, status_write),
                close_fds=True,
                start_new_session=True,
                cwd=work or "/",
                env=_environment(home),
                umask=0o077,
                user=uid,
                group=uid,
                extra_groups=[] if uid is not None else None,  # drop root's supplementary groups too
            )
        except OSError as exc:
            os.close(status_write)
            raise SandboxSetupError(f"cannot start the sandbox: {exc}") from exc
        os.close(status_write)  # the child holds the only write end: EOF means it is gone
        assert proc.stdout is not None and proc.stderr is not None
        with proc.stdout, proc.stderr:
            cap = request.limits.output_bytes
            stdout, stderr = _Stream(proc.stdout.fileno(), cap), _Stream(proc.stderr.fileno(), cap)
            outcome = _watch(proc, [stdout, stderr], started + request.limits.timeout_s)
        outcome.words = _read_words(status_read)
    duration_ms = (time.monotonic() - started) * 1000

    # Only words written before "ready" come from the launcher alone; the code cannot fake a setup error.
    launcher_words = outcome.words[: outcome.words.index("ready")] if "ready" in outcome.words else outcome.words
    setup_error = next((w for w in launcher_words if w.startswith("setup:")), None)
    if setup_error is not None:
        raise SandboxSetupError(f"sandbox lock-down failed: {setup_error[6:]}")
    if "ready" not in outcome.words and outcome.killed_for != "timeout":
        # Neither the launcher's lock-down nor the code ran: bwrap or the interpreter failed.
        raise SandboxSetupError(f"sandbox did not start (exit {outcome.returncode}): {stderr.text()[:500]}")
    status, exit_code, reason = _classify(outcome, request.limits.timeout_s)
    return SandboxResult(
        status=status,
        stdout=stdout.text(),
        stderr=stderr.text(),
        exit_code=exit_code,
        duration_ms=round(duration_ms, 2),
        stdout_truncated=stdout.truncated,
        stderr_truncated=stderr.truncated,
        reason=reason,
        isolation=host.isolation,
    )
