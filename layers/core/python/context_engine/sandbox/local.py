"""The local host: bubblewrap when it works on this machine, else the seccomp fallback.

Detection runs real probes (an unprivileged interpreter start, a sandboxed ``pass``) once per
process, because "bwrap is on PATH" does not mean user namespaces are allowed here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from functools import cache

from context_engine.sandbox._launcher import landlock_abi
from context_engine.sandbox.errors import SandboxError, SandboxUnavailableError
from context_engine.sandbox.host import DEFAULT_UID_BASE, SandboxHost
from context_engine.sandbox.models import Isolation, SandboxRequest, SandboxStatus

# Tried in order. The venv's python often lives under a home directory the unprivileged
# sandbox uid cannot enter (e.g. pyenv in /root), so a system python is the usual answer.
FALLBACK_INTERPRETERS = ("/usr/local/bin/python3", "/usr/bin/python3")
PROBE_CODE = "import sys; assert sys.version_info >= (3, 8); print(sys.base_prefix)"


def _is_root() -> bool:
    return os.geteuid() == 0


@cache
def find_interpreter() -> tuple[str, str]:
    """(interpreter, its base prefix) for the child: the first python the sandbox uid can run."""
    candidates = dict.fromkeys([os.path.realpath(sys.executable), *FALLBACK_INTERPRETERS])
    probe_uid = DEFAULT_UID_BASE if _is_root() else None
    for candidate in candidates:
        if not os.path.isfile(candidate):
            continue
        try:
            probe = subprocess.run(  # noqa: S603 - fixed argv
                [candidate, "-I", "-S", "-c", PROBE_CODE],
                capture_output=True, text=True, timeout=20, env={"PATH": "/usr/bin:/bin"}, cwd="/",
                user=probe_uid, group=probe_uid, extra_groups=[] if probe_uid is not None else None,
            )
        except (OSError, subprocess.SubprocessError):
            continue
        if probe.returncode == 0 and probe.stdout.strip():
            return os.path.realpath(candidate), probe.stdout.strip()
    raise SandboxUnavailableError("no python interpreter that an unprivileged sandbox user can run")


def _works(host: SandboxHost) -> bool:
    from context_engine.sandbox.runner import run  # the runner imports this package's bwrap module

    try:
        result = run(SandboxRequest(code="print('ok')"), host=host)
    except SandboxError:
        return False
    return result.status is SandboxStatus.SUCCEEDED and result.stdout == "ok\n"


@cache
def _bwrap_host(bwrap: str, interpreter: str, prefix: str) -> SandboxHost | None:
    host = SandboxHost(
        isolation=Isolation.BWRAP,
        interpreter=interpreter,
        interpreter_prefix=prefix,
        bwrap_path=bwrap,
        drop_privileges=_is_root(),
    )
    return host if _works(host) else None


def local_host(isolation: Isolation | None = None) -> SandboxHost:
    """The strongest isolation available here, or exactly ``isolation`` when given.

    Raises ``SandboxUnavailableError`` rather than running code with weaker isolation than
    asked for, or with none that keeps the host's files private.
    """
    if isolation is Isolation.CONTAINER:
        raise SandboxUnavailableError("container isolation exists only inside the sandbox image")
    interpreter, prefix = find_interpreter()
    if isolation in (None, Isolation.BWRAP):
        bwrap = shutil.which("bwrap")
        host = _bwrap_host(bwrap, interpreter, prefix) if bwrap else None
        if host is not None:
            return host
        if isolation is Isolation.BWRAP:
            reason = "not installed" if not bwrap else "cannot create its namespaces here (needs bwrap >= 0.8)"
            raise SandboxUnavailableError(f"bubblewrap is {reason}")
    landlock = landlock_abi() >= 1
    if not _is_root() and not landlock:
        # Without a uid drop or Landlock the code could read every file of the server's user.
        raise SandboxUnavailableError("the seccomp fallback needs root (to drop to a sandbox uid) or Landlock")
    return SandboxHost(
        isolation=Isolation.SECCOMP,
        interpreter=interpreter,
        interpreter_prefix=prefix,
        drop_privileges=_is_root(),
        landlock=landlock,
    )
