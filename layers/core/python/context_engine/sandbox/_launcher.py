"""Child-side bootstrap: lock the process down, then run the user's code.

The runner starts ``python -I -S -B -u -c <source of this file> <config>``. Everything that
must happen *inside* the child (rlimits, Landlock, seccomp) is done here instead of in a
``preexec_fn``: ``preexec_fn`` is unsafe when the runner is called from several threads, and a
launcher keeps the set-up identical on every host. This file therefore stays stdlib-only and
compatible with any Python 3.8+: the child's interpreter (e.g. /usr/bin/python3 or the image's
python) cannot import this package.

The user's code arrives on an inherited file descriptor (a memfd), never on the command line
or in the working directory. A second descriptor carries short status words back to the
runner: "ready" once locked down, "setup:<detail>" when lock-down failed, "memory" when the
code died of MemoryError, and finally "exit:<code>" or "signal:<number>" from a small parent
that forks the code and waits for it.

Start-up time matters (a tool call waits for it), so only cheap modules are imported up front:
the config is marshal (built in) instead of json (which pulls in re, enum, ...), and traceback
and linecache are imported only when the code raised.
"""

from __future__ import annotations

import marshal
import os
import resource
import struct
import sys

# --- seccomp -----------------------------------------------------------------------------------

AUDIT_ARCH_X86_64 = 0xC000003E
AUDIT_ARCH_AARCH64 = 0xC00000B7
X32_SYSCALL_BIT = 0x40000000

SECCOMP_RET_KILL_PROCESS = 0x80000000
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_ALLOW = 0x7FFF0000
EPERM = 1
ENOSYS = 38

# Classic BPF opcodes used by the filter.
BPF_LD_W_ABS = 0x20
BPF_JEQ_K = 0x15
BPF_JGE_K = 0x35
BPF_JSET_K = 0x45
BPF_RET_K = 0x06

# Offsets into struct seccomp_data: nr (u32), arch (u32), instruction_pointer (u64), args[6] (u64).
SECCOMP_DATA_NR = 0
SECCOMP_DATA_ARCH = 4
SECCOMP_DATA_ARG0_LOW = 16  # little-endian on both supported architectures

# clone() flags that would create namespaces; plain fork/thread creation stays allowed.
CLONE_NAMESPACE_FLAGS = 0x7E020000

# Per architecture: the syscalls answered with EPERM, clone and clone3.
# socket: no network of any family (AF_UNIX too: host services listen on unix sockets);
# socketpair stays allowed (unnamed, used by asyncio and multiprocessing).
# setsid/setpgid: every descendant stays in the process group the runner kills on timeout.
# ptrace, process_vm_*: no peeking into other processes. io_uring: could open sockets
# behind seccomp's back. unshare/setns, bpf, perf_event_open, userfaultfd, keyrings: kernel
# attack surface no tool code needs.
# (audit arch, denied syscalls, clone, clone3) per machine.
SYSCALLS: dict[str, tuple[int, dict[str, int], int, int]] = {
    "x86_64": (
        AUDIT_ARCH_X86_64,
        {
            "socket": 41, "ptrace": 101, "setpgid": 109, "setsid": 112, "add_key": 248,
            "request_key": 249, "keyctl": 250, "unshare": 272, "perf_event_open": 298,
            "setns": 308, "process_vm_readv": 310, "process_vm_writev": 311, "bpf": 321,
            "userfaultfd": 323, "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
        },
        56,
        435,
    ),
    "aarch64": (
        AUDIT_ARCH_AARCH64,
        {
            "unshare": 97, "ptrace": 117, "setpgid": 154, "setsid": 157, "socket": 198,
            "add_key": 217, "request_key": 218, "keyctl": 219, "perf_event_open": 241,
            "setns": 268, "process_vm_readv": 270, "process_vm_writev": 271, "bpf": 280,
            "userfaultfd": 282, "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
        },
        220,
        435,
    ),
}
MACHINE_ALIASES = {"amd64": "x86_64", "arm64": "aarch64"}


def build_seccomp_filter(machine: str) -> bytes:
    """Assemble the classic BPF program (array of struct sock_filter) for ``machine``.

    A syscall from a foreign architecture kills the process (its numbers mean something
    else); on x86_64 the x32 ABI is refused for the same reason. clone3 answers ENOSYS so
    libc falls back to clone, whose flags (unlike clone3's) the filter can inspect.
    """
    arch, deny, clone, clone3 = SYSCALLS[MACHINE_ALIASES.get(machine, machine)]
    # Instructions as (code, jump-if-true label, jump-if-false label, k); labels resolve below.
    program: list[tuple[int, str | None, str | None, int]] = [
        (BPF_LD_W_ABS, None, None, SECCOMP_DATA_ARCH),
        (BPF_JEQ_K, None, "kill", arch),
        (BPF_LD_W_ABS, None, None, SECCOMP_DATA_NR),
    ]
    if arch == AUDIT_ARCH_X86_64:
        program.append((BPF_JGE_K, "eperm", None, X32_SYSCALL_BIT))
    for number in sorted(deny.values()):
        program.append((BPF_JEQ_K, "eperm", None, number))
    program += [
        (BPF_JEQ_K, "enosys", None, clone3),
        (BPF_JEQ_K, None, "allow", clone),
        (BPF_LD_W_ABS, None, None, SECCOMP_DATA_ARG0_LOW),
        (BPF_JSET_K, "eperm", "allow", CLONE_NAMESPACE_FLAGS),
    ]
    labels = {"allow": len(program), "eperm": len(program) + 1, "enosys": len(program) + 2,
              "kill": len(program) + 3}
    program += [
        (BPF_RET_K, None, None, SECCOMP_RET_ALLOW),
        (BPF_RET_K, None, None, SECCOMP_RET_ERRNO | EPERM),
        (BPF_RET_K, None, None, SECCOMP_RET_ERRNO | ENOSYS),
        (BPF_RET_K, None, None, SECCOMP_RET_KILL_PROCESS),
    ]
    out = bytearray()
    for index, (code, jt, jf, k) in enumerate(program):
        rel_t = labels[jt] - index - 1 if jt is not None else 0
        rel_f = labels[jf] - index - 1 if jf is not None else 0
        out += struct.pack("=HBBI", code, rel_t, rel_f, k)
    return bytes(out)


def _check(result: int, what: str) -> int:
    if result < 0:
        import ctypes

        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")
    return result


PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2


def apply_seccomp() -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    program = build_seccomp_filter(os.uname().machine)

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = SockFprog(len(program) // 8, ctypes.addressof(buffer))
    ulong = ctypes.c_ulong
    _check(libc.prctl(PR_SET_NO_NEW_PRIVS, ulong(1), ulong(0), ulong(0), ulong(0)), "no_new_privs")
    _check(libc.prctl(PR_SET_SECCOMP, ulong(SECCOMP_MODE_FILTER), ulong(ctypes.addressof(fprog)),
                      ulong(0), ulong(0)), "seccomp")


# --- Landlock ----------------------------------------------------------------------------------

NR_LANDLOCK_CREATE_RULESET = 444  # same numbers on x86_64 and aarch64
NR_LANDLOCK_ADD_RULE = 445
NR_LANDLOCK_RESTRICT_SELF = 446
LANDLOCK_CREATE_RULESET_VERSION = 1
LANDLOCK_RULE_PATH_BENEATH = 1

FS_EXECUTE, FS_WRITE_FILE, FS_READ_FILE, FS_READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
FS_ABI1 = (1 << 13) - 1  # execute .. make_sym
FS_REFER, FS_TRUNCATE, FS_IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
NET_BIND_TCP, NET_CONNECT_TCP = 1 << 0, 1 << 1
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1 << 0, 1 << 1


def landlock_abi() -> int:
    """Landlock ABI version of the running kernel, 0 when absent or disabled."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    version = libc.syscall(NR_LANDLOCK_CREATE_RULESET, None, 0, LANDLOCK_CREATE_RULESET_VERSION)
    return max(int(version), 0)


def apply_landlock(read_paths: list[str], write_paths: list[str], device_paths: list[str]) -> None:
    """Allow reading only ``read_paths``, writing only ``write_paths`` (and ``device_paths``).

    Everything else (the project tree, /home, /tmp, /proc of other processes) becomes
    invisible. From ABI 4 TCP is denied here too, from ABI 6 signals and abstract unix
    sockets outside the sandbox.
    """
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    abi = landlock_abi()
    if abi < 1:
        raise OSError(ENOSYS, "Landlock is not available in this kernel")
    handled_fs = FS_ABI1
    if abi >= 2:
        handled_fs |= FS_REFER
    if abi >= 3:
        handled_fs |= FS_TRUNCATE
    if abi >= 5:
        handled_fs |= FS_IOCTL_DEV

    class RulesetAttr(ctypes.Structure):
        _fields_ = [("fs", ctypes.c_uint64), ("net", ctypes.c_uint64), ("scoped", ctypes.c_uint64)]

    class PathBeneath(ctypes.Structure):
        _pack_ = 1
        _fields_ = [("allowed", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]

    attr = RulesetAttr(handled_fs, NET_BIND_TCP | NET_CONNECT_TCP if abi >= 4 else 0,
                       SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= 6 else 0)
    size = 24 if abi >= 6 else 16 if abi >= 4 else 8
    ruleset = _check(libc.syscall(NR_LANDLOCK_CREATE_RULESET, ctypes.byref(attr), size, 0), "landlock ruleset")
    read = FS_EXECUTE | FS_READ_FILE | FS_READ_DIR
    file_only = FS_EXECUTE | FS_READ_FILE | FS_WRITE_FILE | FS_TRUNCATE | FS_IOCTL_DEV
    grants = [(p, read) for p in read_paths] + [(p, handled_fs) for p in write_paths]
    grants += [(p, FS_READ_FILE | FS_WRITE_FILE) for p in device_paths]
    try:
        for path, allowed in grants:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                if not os.path.isdir(path):
                    allowed &= file_only  # directory rights on a file are EINVAL
                rule = PathBeneath(allowed & handled_fs, fd)
                _check(libc.syscall(NR_LANDLOCK_ADD_RULE, ruleset, LANDLOCK_RULE_PATH_BENEATH,
                                    ctypes.byref(rule), 0), f"landlock rule {path}")
            finally:
                os.close(fd)
        ulong = ctypes.c_ulong
        _check(libc.prctl(PR_SET_NO_NEW_PRIVS, ulong(1), ulong(0), ulong(0), ulong(0)), "no_new_privs")
        _check(libc.syscall(NR_LANDLOCK_RESTRICT_SELF, ruleset, 0), "landlock restrict")
    finally:
        os.close(ruleset)


# --- rlimits and the run -----------------------------------------------------------------------


def apply_rlimits(limits: dict[str, list[int]]) -> None:
    for name, (soft, hard) in limits.items():
        resource_id = getattr(resource, name)
        _, current_hard = resource.getrlimit(resource_id)
        if current_hard != resource.RLIM_INFINITY:  # only ever lower a limit, never ask for more
            hard = min(hard, current_hard)
            soft = min(soft, hard)
        resource.setrlimit(resource_id, (soft, hard))


def _read_fd(fd: int) -> bytes:
    chunks: list[bytes] = []
    while True:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _print_user_traceback(exc: BaseException, filename: str, text: str) -> None:
    import linecache
    import traceback

    linecache.cache[filename] = (len(text), None, text.splitlines(True), filename)
    traceback.print_exception(type(exc), exc, exc.__traceback__.tb_next if exc.__traceback__ else None)
    sys.stderr.flush()


def run_user_code(source: bytes, status_fd: int) -> None:
    """Run ``source`` as ``__main__`` (file name main.py); tracebacks show no frames of ours."""
    import builtins

    filename = "main.py"
    text = source.decode("utf-8", "replace")
    module = type(sys)("__main__")
    module.__dict__.update(__file__=filename, __builtins__=builtins)
    sys.modules["__main__"] = module
    sys.argv = [filename]
    memory_word = b"memory\n"  # allocated before the code runs: no allocation needed to report OOM
    try:
        exec(compile(text, filename, "exec"), module.__dict__)  # noqa: S102 - running it is the point
    except SystemExit:
        raise
    except BaseException as exc:  # noqa: BLE001 - report like the interpreter would
        if isinstance(exc, MemoryError):
            os.write(status_fd, memory_word)
            module.__dict__.clear()  # free the user's data so the traceback can be printed
        _print_user_traceback(exc, filename, text)
        sys.exit(1)


def wait_and_report(pid: int, status_fd: int) -> None:
    """Wait for the code's process and report how it ended, then end the same way.

    Reported here because an exit status seen from outside is ambiguous under bubblewrap,
    which turns "killed by signal N" into exit code 128+N.
    """
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        signal_number = os.WTERMSIG(status)
        os.write(status_fd, f"signal:{signal_number}\n".encode())
        os._exit(128 + signal_number)
    code = os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") else status >> 8
    os.write(status_fd, f"exit:{code}\n".encode())
    os._exit(code)


def main(argv: list[str]) -> None:
    config = marshal.loads(bytes.fromhex(argv[1]))  # noqa: S302 - written by the runner, not the user
    status_fd = int(config["status_fd"])
    try:
        source = _read_fd(int(config["code_fd"]))
        os.close(int(config["code_fd"]))
        apply_rlimits(config["rlimits"])
        landlock = config.get("landlock")
        if landlock:
            apply_landlock(landlock["read"], landlock["write"], landlock["devices"])
        if config.get("seccomp"):
            apply_seccomp()
    except Exception as exc:  # fail closed: never run the code half locked down
        os.write(status_fd, f"setup:{type(exc).__name__}: {exc}"[:300].encode() + b"\n")
        os._exit(125)
    os.write(status_fd, b"ready\n")
    del config, argv
    pid = os.fork()
    if pid:
        wait_and_report(pid, status_fd)
    run_user_code(source, status_fd)  # returns normally; the interpreter then exits with 0


if __name__ == "__main__":
    main(sys.argv)
