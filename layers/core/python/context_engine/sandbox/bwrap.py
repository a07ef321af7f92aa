"""The bubblewrap command line that wraps a local run.

Run as the per-run unprivileged uid (the runner drops privileges *before* exec'ing bwrap):
bwrap started by root with ``--uid 65534`` maps that uid to host root, and the child could
then read every root-owned file as its owner. Started unprivileged, bwrap creates a user
namespace in which 65534 maps to the fresh host uid, which owns nothing.
"""

from __future__ import annotations

import os

from context_engine.sandbox.host import SandboxHost


def _covered(path: str, roots: tuple[str, ...]) -> bool:
    return any(os.path.commonpath([path, root]) == root for root in roots)


def bwrap_argv(host: SandboxHost, inner: list[str], *, workdir: str) -> list[str]:
    """``inner`` wrapped in namespaces: no network, own pids, read-only allowlisted file system."""
    if not host.bwrap_path:
        raise ValueError("host has no bwrap_path")
    argv = [
        host.bwrap_path,
        "--unshare-all",  # net, pid, ipc, uts, cgroup: no network at all, only our own processes
        "--unshare-user",
        "--disable-userns",  # no nested user namespaces (kernel attack surface)
        "--die-with-parent",
        "--new-session",  # no TIOCSTI into a terminal of the host
        "--cap-drop", "ALL",
        "--uid", "65534",
        "--gid", "65534",
        "--hostname", "sandbox",
    ]
    paths = list(host.read_only_paths)
    if not _covered(host.interpreter_prefix, tuple(p for p in paths if os.path.isdir(p))):
        paths.append(host.interpreter_prefix)
    for path in paths:
        # Reproduce merged-/usr symlinks (/bin -> usr/bin) instead of binding them twice.
        if os.path.islink(path):
            argv += ["--symlink", os.readlink(path), path]
        elif os.path.exists(path):
            argv += ["--ro-bind", path, path]
    argv += [
        "--proc", "/proc",  # a fresh procfs of the new pid namespace: the host's processes are not in it
        "--dev", "/dev",
        "--size", str(host.shm_mb * 1024 * 1024), "--tmpfs", "/dev/shm",  # noqa: S108 - inside the namespace
        "--size", str(host.tmpfs_mb * 1024 * 1024), "--tmpfs", workdir,
        "--remount-ro", "/dev",  # the /dev tmpfs has no size limit: no files there
        "--remount-ro", "/",  # same for the root tmpfs bwrap builds the view on
        "--chdir", workdir,
        "--",
    ]
    return argv + inner
