"""The seccomp program, evaluated by a small classic-BPF interpreter for both architectures.

The live filter is exercised by the integration tests on this machine's architecture; this
checks the decisions for every listed syscall on x86_64 *and* aarch64, which we cannot run here.
"""

import struct

import pytest

from context_engine.sandbox._launcher import (
    AUDIT_ARCH_AARCH64,
    AUDIT_ARCH_X86_64,
    SECCOMP_RET_ALLOW,
    SECCOMP_RET_ERRNO,
    SECCOMP_RET_KILL_PROCESS,
    build_seccomp_filter,
)

EPERM = SECCOMP_RET_ERRNO | 1
ENOSYS = SECCOMP_RET_ERRNO | 38
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
CLONE_THREAD_FLAGS = 0x003D0F00  # what glibc passes for pthread_create
SIGCHLD = 17

# Syscall numbers from the kernel headers (asm/unistd_64.h and asm-generic/unistd.h), kept here
# independently of the table in the launcher so a typo there shows up as a failure.
ARCHES = {
    "x86_64": {
        "arch": AUDIT_ARCH_X86_64,
        "denied": {"socket": 41, "ptrace": 101, "setsid": 112, "setpgid": 109, "unshare": 272,
                   "setns": 308, "process_vm_readv": 310, "io_uring_setup": 425, "bpf": 321},
        "allowed": {"read": 0, "write": 1, "openat": 257, "socketpair": 53, "mmap": 9, "exit_group": 231,
                    "kill": 62, "fork": 57, "wait4": 61},
        "clone": 56,
        "clone3": 435,
    },
    "aarch64": {
        "arch": AUDIT_ARCH_AARCH64,
        "denied": {"socket": 198, "ptrace": 117, "setsid": 157, "setpgid": 154, "unshare": 97,
                   "setns": 268, "process_vm_readv": 270, "io_uring_setup": 425, "bpf": 280},
        "allowed": {"read": 63, "write": 64, "openat": 56, "socketpair": 199, "mmap": 222,
                    "exit_group": 94, "kill": 129, "wait4": 260},
        "clone": 220,
        "clone3": 435,
    },
}


def evaluate(program: bytes, nr: int, arch: int, arg0: int = 0) -> int:
    """Run classic BPF over a struct seccomp_data, as the kernel would."""
    instructions = [struct.unpack_from("=HBBI", program, offset) for offset in range(0, len(program), 8)]
    data = struct.pack("<IIQ6Q", nr, arch, 0, arg0, 0, 0, 0, 0, 0)
    accumulator, pc = 0, 0
    for _ in range(len(instructions)):
        code, jt, jf, k = instructions[pc]
        if code == 0x20:  # ld [k]
            accumulator, pc = struct.unpack_from("<I", data, k)[0], pc + 1
        elif code == 0x15:  # jeq
            pc += 1 + (jt if accumulator == k else jf)
        elif code == 0x35:  # jge
            pc += 1 + (jt if accumulator >= k else jf)
        elif code == 0x45:  # jset
            pc += 1 + (jt if accumulator & k else jf)
        elif code == 0x06:  # ret
            return k
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")
    raise AssertionError("program did not return")


@pytest.mark.parametrize("machine", sorted(ARCHES))
def test_denied_syscalls_answer_eperm_and_ordinary_ones_pass(machine: str) -> None:
    table = ARCHES[machine]
    program = build_seccomp_filter(machine)
    for name, nr in table["denied"].items():
        assert evaluate(program, nr, table["arch"]) == EPERM, name
    for name, nr in table["allowed"].items():
        assert evaluate(program, nr, table["arch"]) == SECCOMP_RET_ALLOW, name


@pytest.mark.parametrize("machine", sorted(ARCHES))
def test_clone_may_fork_and_spawn_threads_but_not_create_namespaces(machine: str) -> None:
    table = ARCHES[machine]
    program = build_seccomp_filter(machine)
    assert evaluate(program, table["clone"], table["arch"], SIGCHLD) == SECCOMP_RET_ALLOW
    assert evaluate(program, table["clone"], table["arch"], CLONE_THREAD_FLAGS) == SECCOMP_RET_ALLOW
    assert evaluate(program, table["clone"], table["arch"], SIGCHLD | CLONE_NEWUSER) == EPERM
    assert evaluate(program, table["clone"], table["arch"], CLONE_NEWNET) == EPERM
    # clone3 passes its flags in memory the filter cannot read: ENOSYS makes libc use clone.
    assert evaluate(program, table["clone3"], table["arch"]) == ENOSYS


@pytest.mark.parametrize("machine", sorted(ARCHES))
def test_syscalls_of_a_foreign_architecture_kill_the_process(machine: str) -> None:
    other = AUDIT_ARCH_AARCH64 if machine == "x86_64" else AUDIT_ARCH_X86_64
    assert evaluate(build_seccomp_filter(machine), 0, other) == SECCOMP_RET_KILL_PROCESS
    assert evaluate(build_seccomp_filter(machine), 0, 0x40000003) == SECCOMP_RET_KILL_PROCESS  # i386


def test_x32_syscalls_are_refused_on_x86_64() -> None:
    program = build_seccomp_filter("x86_64")
    assert evaluate(program, 0x40000000 | 41, AUDIT_ARCH_X86_64) == EPERM
    assert evaluate(program, 0x40000000, AUDIT_ARCH_X86_64) == EPERM


def test_machine_aliases_and_unknown_machines() -> None:
    assert build_seccomp_filter("arm64") == build_seccomp_filter("aarch64")
    with pytest.raises(KeyError):
        build_seccomp_filter("riscv64")
