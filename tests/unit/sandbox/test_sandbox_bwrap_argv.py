"""The bubblewrap command line: what is shared, what is hidden, in which order."""

from pathlib import Path

from context_engine.sandbox.bwrap import bwrap_argv
from context_engine.sandbox.host import SandboxHost
from context_engine.sandbox.models import Isolation


def _host(tmp_path: Path, prefix: str, read_only: tuple[str, ...]) -> SandboxHost:
    return SandboxHost(
        isolation=Isolation.BWRAP,
        interpreter=f"{prefix}/bin/python3",
        interpreter_prefix=prefix,
        bwrap_path="/usr/bin/bwrap",
        drop_privileges=True,
        read_only_paths=read_only,
        tmpfs_mb=8,
        shm_mb=2,
    )


def _pairs(argv: list[str], flag: str) -> list[tuple[str, str]]:
    return [(argv[i + 1], argv[i + 2]) for i, arg in enumerate(argv) if arg == flag]


def test_namespaces_identity_and_capabilities(tmp_path: Path) -> None:
    argv = bwrap_argv(_host(tmp_path, "/usr", ("/usr",)), ["python3", "-c", "pass"], workdir="/tmp")
    assert argv[0] == "/usr/bin/bwrap"
    for flag in ("--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent", "--new-session"):
        assert flag in argv
    assert argv[argv.index("--cap-drop") + 1] == "ALL"
    assert argv[argv.index("--uid") + 1] == "65534" and argv[argv.index("--gid") + 1] == "65534"
    assert "--share-net" not in argv and "--bind" not in argv  # nothing of the host is writable
    assert argv[argv.index("--") + 1 :] == ["python3", "-c", "pass"]


def test_only_allowlisted_paths_are_visible_and_symlinks_are_reproduced(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to("real")
    missing = tmp_path / "missing"
    argv = bwrap_argv(_host(tmp_path, "/usr", ("/usr", str(real), str(link), str(missing))), ["x"], workdir="/tmp")
    assert _pairs(argv, "--ro-bind") == [("/usr", "/usr"), (str(real), str(real))]
    assert _pairs(argv, "--symlink") == [("real", str(link))]
    assert str(missing) not in argv
    assert "/" not in [src for src, _ in _pairs(argv, "--ro-bind")]  # never the whole host


def test_interpreter_outside_the_allowlist_gets_its_own_read_only_bind(tmp_path: Path) -> None:
    prefix = tmp_path / "opt-python"
    prefix.mkdir()
    argv = bwrap_argv(_host(tmp_path, str(prefix), ("/usr",)), ["x"], workdir="/tmp")
    assert (str(prefix), str(prefix)) in _pairs(argv, "--ro-bind")
    covered = bwrap_argv(_host(tmp_path, "/usr/local", ("/usr",)), ["x"], workdir="/tmp")
    assert _pairs(covered, "--ro-bind") == [("/usr", "/usr")]


def test_writable_space_is_size_capped_tmpfs_and_everything_else_is_read_only(tmp_path: Path) -> None:
    argv = bwrap_argv(_host(tmp_path, "/usr", ("/usr",)), ["x"], workdir="/tmp")
    tmpfs = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--tmpfs"]
    assert tmpfs == ["/dev/shm", "/tmp"]
    sizes = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--size"]
    assert sizes == [str(2 * 1024 * 1024), str(8 * 1024 * 1024)]
    remounts = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--remount-ro"]
    assert remounts == ["/dev", "/"]
    # The read-only remounts must come after every mount they protect.
    last_mount = max(i for i, arg in enumerate(argv) if arg in {"--tmpfs", "--ro-bind", "--symlink", "--dev"})
    assert argv.index("--remount-ro") > last_mount
    assert argv[argv.index("--proc") + 1] == "/proc"
    assert argv[argv.index("--chdir") + 1] == "/tmp"
