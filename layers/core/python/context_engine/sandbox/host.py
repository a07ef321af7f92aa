"""Where and how a run is isolated: one frozen description per host.

The runner is the same everywhere; a ``SandboxHost`` says which interpreter the child uses
and which isolation layers wrap it. ``local.local_host()`` and ``container.container_host()``
build the two real ones; tests build them directly to force a mode.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from context_engine.sandbox.models import Isolation

# What the child may see of the host file system: the interpreter, shared libraries and the
# loader's cache. Everything else (/home, /root, /work, /run, /var, other processes' /proc)
# stays invisible under bubblewrap and unreadable under Landlock.
DEFAULT_READ_ONLY_PATHS: tuple[str, ...] = (
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
)
DEVICE_PATHS: tuple[str, ...] = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")

# Fresh unprivileged uids: each run gets its own, so concurrent runs can neither signal nor
# trace each other, and RLIMIT_NPROC counts only that run's processes. The range is far from
# login users, systemd dynamic users and the usual subuid ranges.
DEFAULT_UID_BASE = 2_100_000_000
DEFAULT_UID_COUNT = 100_000


class SandboxHost(BaseModel):
    """How runs are isolated on this machine."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    isolation: Isolation
    interpreter: str = Field(description="absolute path of the child's python")
    interpreter_prefix: str = Field(description="sys.base_prefix of that python, made readable")
    bwrap_path: str | None = None
    drop_privileges: bool = Field(description="root only: run each child as a fresh unprivileged uid")
    uid_base: int = Field(default=DEFAULT_UID_BASE, gt=1000, lt=2**31 - 1)
    uid_count: int = Field(default=DEFAULT_UID_COUNT, ge=16)
    landlock: bool = Field(default=False, description="seccomp mode: restrict the file system with Landlock")
    temp_root: str | None = Field(default=None, description="parent of per-run work dirs; None: system tmp")
    read_only_paths: tuple[str, ...] = DEFAULT_READ_ONLY_PATHS
    max_processes: int = Field(default=32, ge=4, description="RLIMIT_NPROC per run")
    max_open_files: int = Field(default=64, ge=16)
    max_file_mb: int = Field(default=16, ge=1, description="RLIMIT_FSIZE: largest file the code may write")
    tmpfs_mb: int = Field(default=64, ge=1, description="bwrap: size of the private /tmp")
    shm_mb: int = Field(default=16, ge=1, description="bwrap: size of /dev/shm")

    @model_validator(mode="after")
    def _consistent(self) -> SandboxHost:
        if self.isolation is Isolation.BWRAP and not self.bwrap_path:
            raise ValueError("bwrap isolation needs bwrap_path")
        if self.uid_base + self.uid_count > 2**31 - 1:
            raise ValueError("uid_base + uid_count must stay below 2**31 - 1")
        if self.isolation is not Isolation.SECCOMP and self.landlock:
            raise ValueError("landlock is only used by the seccomp isolation")
        return self
