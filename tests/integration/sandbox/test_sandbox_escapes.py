"""Escape attempts against the local sandbox; each runs under bubblewrap and the seccomp fallback.

Every attempt must end with the documented status and nothing may leak: where a secret is
involved, it must never appear in stdout or stderr.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from context_engine.sandbox import Isolation, SandboxHost, SandboxResult, SandboxStatus

RunCode = Callable[..., SandboxResult]  # the ``sandbox`` fixture of conftest.py

REPO = Path(__file__).resolve().parents[3]
OUTSIDE_ADDRESS = ("1.1.1.1", 53)


def assert_no_leak(result: SandboxResult, secret: str) -> None:
    assert secret not in result.stdout
    assert secret not in result.stderr


def blocked_errno(host: SandboxHost, under_bwrap: int) -> int:
    """The errno that proves the *sandbox* refused: seccomp answers EPERM to socket()."""
    return under_bwrap if host.isolation is Isolation.BWRAP else errno.EPERM


@pytest.fixture
def secret() -> str:
    return f"s3cr3t-{uuid.uuid4().hex}"


@pytest.fixture
def shared_tmp_dir() -> Iterator[Path]:
    """A directory in the host's /tmp that file permissions alone would NOT protect (0777)."""
    path = Path(tempfile.mkdtemp(prefix="sandbox-escape-", dir="/tmp"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


class Listener:
    """Accepts connections in a thread, records them and hands each the secret."""

    def __init__(self, sock: socket.socket, secret: str) -> None:
        self.sock, self.secret, self.accepted = sock, secret, 0
        sock.listen(8)
        sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.accepted += 1
            with conn:
                conn.sendall(self.secret.encode())

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@pytest.fixture
def listen(secret: str) -> Iterator[Callable[[socket.socket], Listener]]:
    listeners: list[Listener] = []

    def _listen(sock: socket.socket) -> Listener:
        listeners.append(Listener(sock, secret))
        return listeners[-1]

    yield _listen
    for listener in listeners:
        listener.close()


CONNECT = """
import socket
try:
    conn = socket.create_connection(({host!r}, {port}), timeout=3)
    print("CONNECTED", conn.recv(100))
except OSError as exc:
    print("BLOCKED", exc.errno)
"""


def test_no_tcp_connection_to_an_outside_address(sandbox: RunCode, host: SandboxHost) -> None:
    result = sandbox(CONNECT.format(host=OUTSIDE_ADDRESS[0], port=OUTSIDE_ADDRESS[1]))
    assert result.status is SandboxStatus.SUCCEEDED, result.stderr
    assert result.stdout == f"BLOCKED {blocked_errno(host, errno.ENETUNREACH)}\n"


def test_no_tcp_connection_to_a_host_service_on_loopback(
    sandbox: RunCode, host: SandboxHost, listen: Callable[[socket.socket], Listener], secret: str
) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    listener = listen(server)
    port = server.getsockname()[1]
    with socket.create_connection(("127.0.0.1", port), timeout=2) as control:  # reachable from the host
        assert control.recv(100) == secret.encode()

    result = sandbox(CONNECT.format(host="127.0.0.1", port=port))
    assert result.stdout == f"BLOCKED {blocked_errno(host, errno.ECONNREFUSED)}\n"
    assert listener.accepted == 1  # only the control connection
    assert_no_leak(result, secret)


def test_no_connection_to_host_unix_sockets(
    sandbox: RunCode, listen: Callable[[socket.socket], Listener], shared_tmp_dir: Path, secret: str
) -> None:
    # Local services (PostgreSQL, Redis, docker) listen on unix sockets; both kinds must be out of reach.
    path = shared_tmp_dir / "service.sock"
    named = socket.socket(socket.AF_UNIX)
    named.bind(str(path))
    path.chmod(0o777)
    abstract_name = f"\0sandbox-test-{uuid.uuid4().hex}"
    abstract = socket.socket(socket.AF_UNIX)
    abstract.bind(abstract_name)
    listeners = [listen(named), listen(abstract)]

    code = f"""
import socket
for address in ({str(path)!r}, {abstract_name!r}):
    try:
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(address)
        print("CONNECTED", sock.recv(100))
    except OSError as exc:
        print("BLOCKED", type(exc).__name__)
"""
    result = sandbox(code)
    assert result.status is SandboxStatus.SUCCEEDED, result.stderr
    assert result.stdout.count("BLOCKED") == 2 and "CONNECTED" not in result.stdout
    assert [listener.accepted for listener in listeners] == [0, 0]
    assert_no_leak(result, secret)


def test_dns_resolution_fails(sandbox: RunCode) -> None:
    code = """
import socket
try:
    print("RESOLVED", socket.getaddrinfo("pypi.org", 443))
except OSError as exc:
    print("FAILED", type(exc).__name__)
"""
    result = sandbox(code)
    assert result.status is SandboxStatus.SUCCEEDED, result.stderr
    assert result.stdout.startswith("FAILED")


def test_cannot_write_outside_its_temp_dir(sandbox: RunCode, shared_tmp_dir: Path) -> None:
    marker = f"escape-{uuid.uuid4().hex}"
    targets = [
        shared_tmp_dir / marker,  # world-writable: only the sandbox stands in the way
        Path("/tmp") / marker,
        Path("/var/tmp") / marker,
        Path("/dev/shm") / marker,
        REPO / marker,
    ]
    code = f"""
import os
for target in {[str(t) for t in targets]!r}:
    try:
        with open(target, "w") as handle:
            handle.write("escaped")
    except OSError as exc:
        print("BLOCKED", type(exc).__name__)
with open("inside.txt", "w") as handle:
    handle.write("fine")
print("INSIDE", open(os.path.join(os.getcwd(), "inside.txt")).read())
"""
    try:
        result = sandbox(code)
        assert result.status is SandboxStatus.SUCCEEDED, result.stderr
        assert "INSIDE fine" in result.stdout
        leaked = [str(t) for t in targets if t.exists()]
        assert leaked == [], f"the sandbox wrote on the host: {leaked}"
    finally:
        for target in targets:
            target.unlink(missing_ok=True)


def test_parent_environment_and_processes_stay_hidden(
    sandbox: RunCode, host: SandboxHost, secret: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONTEXT_ENGINE_TEST_SECRET", secret)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    code = f"""
import json, os
print(json.dumps(sorted(os.environ)))
try:
    pids = [p for p in os.listdir("/proc") if p.isdigit()]
except OSError as exc:
    pids = []
    print("NO /proc", type(exc).__name__)
for pid in pids + ["{os.getpid()}", "{os.getppid()}"]:
    for name in ("environ", "cmdline"):
        try:
            print(pid, name, open(f"/proc/{{pid}}/{{name}}", "rb").read())
        except OSError as exc:
            pass
"""
    result = sandbox(code)
    assert result.status is SandboxStatus.SUCCEEDED, result.stderr
    expected = ["HOME", "LANG", "PATH", "TMPDIR"] + (["PWD"] if host.isolation is Isolation.BWRAP else [])
    assert json.loads(result.stdout.splitlines()[0]) == sorted(expected)  # bwrap adds PWD for --chdir
    assert_no_leak(result, secret)
    assert "pytest" not in result.stdout  # not even the test runner's command line


def test_secret_files_stay_unreadable(sandbox: RunCode, shared_tmp_dir: Path, secret: str) -> None:
    data_dir = shared_tmp_dir / "data"
    data_dir.mkdir(mode=0o755)
    private = data_dir / "credentials"
    private.write_text(secret)
    private.chmod(0o600)
    # A world-readable file (like a project data dir): file permissions would allow reading it.
    readable = data_dir / "world-readable.json"
    readable.write_text(secret)
    readable.chmod(0o644)
    targets = [private, readable, REPO / "pyproject.toml", Path("/root/.bashrc"), Path("/etc/passwd")]
    code = f"""
import os
for target in {[str(t) for t in targets]!r}:
    try:
        print("READ", target, open(target).read())
    except OSError as exc:
        print("BLOCKED", target, type(exc).__name__)
try:
    print("LISTED", os.listdir({str(data_dir)!r}))
except OSError as exc:
    print("BLOCKED listing", type(exc).__name__)
"""
    result = sandbox(code)
    assert result.status is SandboxStatus.SUCCEEDED, result.stderr
    assert "READ" not in result.stdout and "LISTED" not in result.stdout
    assert result.stdout.count("BLOCKED") == len(targets) + 1
    assert_no_leak(result, secret)


def test_fork_bomb_is_contained_and_killed(sandbox: RunCode, no_leftovers: Callable[[], None]) -> None:
    code = """
import os
while True:
    try:
        os.fork()
    except OSError:
        pass
"""
    result = sandbox(code, timeout_s=2)
    assert result.status is SandboxStatus.TIMED_OUT
    assert result.reason == "wall-clock timeout after 2 s"
    assert result.duration_ms < 2000 + 3000
    no_leftovers()


def test_process_count_is_capped(sandbox: RunCode, host: SandboxHost, no_leftovers: Callable[[], None]) -> None:
    code = """
import os, time
children = 0
for _ in range(200):
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    children += 1
print(children)
"""
    result = sandbox(code, timeout_s=10)
    assert result.status is SandboxStatus.SUCCEEDED, result.stderr
    assert 0 < int(result.stdout) < host.max_processes
    assert result.duration_ms < 5000  # the sleeping children did not keep the run alive
    no_leftovers()


@pytest.mark.parametrize(
    "code",
    [
        "block = bytearray(10**9)",
        "blocks = []\nwhile True:\n    blocks.append(bytearray(1 << 20))",
    ],
    ids=["one-big-allocation", "many-small-allocations"],
)
def test_memory_bomb_fails_with_memory_limit(sandbox: RunCode, code: str) -> None:
    result = sandbox(code, memory_mb=128)
    assert result.status is SandboxStatus.FAILED
    assert result.reason == "memory limit"
    assert result.exit_code == 1
    assert "MemoryError" in result.stderr


def test_cpu_loop_times_out(sandbox: RunCode, no_leftovers: Callable[[], None]) -> None:
    result = sandbox("while True:\n    pass", timeout_s=1)
    assert result.status is SandboxStatus.TIMED_OUT
    assert result.exit_code is None
    assert 1000 <= result.duration_ms < 1000 + 2000
    no_leftovers()


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_ten_megabytes_of_output_are_cut_at_the_cap(sandbox: RunCode, stream: str) -> None:
    result = sandbox(f"import sys\nsys.{stream}.write('x' * 10_000_000)\nprint('after')", output_kb=64)
    assert result.status is SandboxStatus.FAILED
    assert result.reason == "output limit"
    assert getattr(result, stream) == "x" * 64 * 1024
    assert getattr(result, f"{stream}_truncated") is True
    other = "stderr" if stream == "stdout" else "stdout"
    assert getattr(result, f"{other}_truncated") is False
    assert result.duration_ms < 3000  # killed at the cap, not at the 5 s timeout


def test_sleeping_past_the_timeout_keeps_earlier_output(sandbox: RunCode, no_leftovers: Callable[[], None]) -> None:
    result = sandbox("import time\nprint('before', flush=True)\ntime.sleep(30)\nprint('after')", timeout_s=1)
    assert result.status is SandboxStatus.TIMED_OUT
    assert result.stdout == "before\n"
    assert result.duration_ms < 1000 + 2000
    no_leftovers()


def test_background_processes_do_not_outlive_the_run(sandbox: RunCode, no_leftovers: Callable[[], None]) -> None:
    code = """
import os, time
if os.fork() == 0:
    try:
        os.setsid()  # try to leave the process group the runner kills
    except OSError:
        pass
    time.sleep(60)
    os._exit(0)
print("parent done")
"""
    result = sandbox(code, timeout_s=10)
    assert result.status is SandboxStatus.SUCCEEDED, result.stderr
    assert result.stdout == "parent done\n"
    assert result.duration_ms < 5000
    no_leftovers()


def test_rlimits_are_in_force_inside(sandbox: RunCode, host: SandboxHost) -> None:
    code = """
import resource
for name in ("RLIMIT_AS", "RLIMIT_CPU", "RLIMIT_NPROC", "RLIMIT_NOFILE", "RLIMIT_FSIZE", "RLIMIT_CORE"):
    print(name, *resource.getrlimit(getattr(resource, name)))
"""
    result = sandbox(code, timeout_s=2.5, memory_mb=200)
    mib = 1024 * 1024
    assert result.stdout.splitlines() == [
        f"RLIMIT_AS {200 * mib} {200 * mib}",
        "RLIMIT_CPU 4 5",
        f"RLIMIT_NPROC {host.max_processes} {host.max_processes}",
        f"RLIMIT_NOFILE {host.max_open_files} {host.max_open_files}",
        f"RLIMIT_FSIZE {host.max_file_mb * mib} {host.max_file_mb * mib}",
        "RLIMIT_CORE 0 0",
    ]


def test_files_larger_than_the_file_size_limit_cannot_be_written(sandbox: RunCode, host: SandboxHost) -> None:
    code = f"""
import errno
try:
    with open("big.bin", "wb") as handle:
        handle.write(b"x" * ({host.max_file_mb} * 1024 * 1024 + 1))
except OSError as exc:
    print("REFUSED", errno.errorcode[exc.errno])
"""
    result = sandbox(code)
    assert result.status is SandboxStatus.SUCCEEDED, result.stderr
    assert result.stdout == "REFUSED EFBIG\n"


def test_cpu_time_limit_signal_is_reported_as_timed_out(sandbox: RunCode) -> None:
    # What the kernel sends when RLIMIT_CPU runs out (reached first only by multi-threaded C code).
    result = sandbox("import os, signal\nos.kill(os.getpid(), signal.SIGXCPU)")
    assert (result.status, result.exit_code, result.reason) == (SandboxStatus.TIMED_OUT, None, "cpu time limit")


def test_stdin_is_a_sealed_read_only_file(sandbox: RunCode) -> None:
    code = """
import os, sys
print(sys.stdin.read())
for attempt in (lambda: os.write(0, b"rewritten"), lambda: os.ftruncate(0, 0)):
    try:
        attempt()
        print("CHANGED")
    except OSError as exc:
        print("SEALED", exc.errno)
"""
    result = sandbox(code, stdin="input")
    assert result.stdout == "input\nSEALED 1\nSEALED 1\n"


def test_code_cannot_forge_the_launcher_reports(sandbox: RunCode) -> None:
    # The status pipe is inherited by the code; what it writes there must not change the verdict.
    code = """
import os
for fd in range(3, 64):
    try:
        os.write(fd, b"setup:forged\\nexit:0\\nsignal:24\\n")
    except OSError:
        pass
raise SystemExit(7)
"""
    result = sandbox(code)
    assert (result.status, result.exit_code, result.reason) == (SandboxStatus.FAILED, 7, None)
