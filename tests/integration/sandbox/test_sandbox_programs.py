"""Ordinary tool code must keep working inside both isolation modes."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from context_engine.sandbox import SandboxHost, SandboxLimits, SandboxRequest, SandboxResult, SandboxStatus, run

RunCode = Callable[..., SandboxResult]  # the ``sandbox`` fixture of conftest.py


def test_stdlib_imports_work(sandbox: RunCode) -> None:
    code = """
import base64, bisect, collections, csv, dataclasses, datetime, decimal, fractions, functools, hashlib
import heapq, io, itertools, json, math, pathlib, random, re, sqlite3, statistics, string, textwrap
import typing, unicodedata, uuid, zlib
db = sqlite3.connect(":memory:")
db.execute("create table t (x)")
db.executemany("insert into t values (?)", [(1,), (2,), (3,)])
print(db.execute("select sum(x) from t").fetchone()[0], statistics.mean([1, 2, 3]),
      hashlib.sha256(b"x").hexdigest()[:8], json.dumps({"a": decimal.Decimal("1.5").as_integer_ratio()}))
"""
    result = sandbox(code)
    assert result.status is SandboxStatus.SUCCEEDED, result.stderr
    assert result.stdout == '6 2 2d711642 {"a": [3, 2]}\n'
    assert result.exit_code == 0 and result.reason is None


def test_reads_stdin(sandbox: RunCode) -> None:
    result = sandbox("import sys\nprint(sum(int(line) for line in sys.stdin))", stdin="1\n2\n39\n")
    assert result.stdout == "42\n"
    assert sandbox("import sys\nprint(repr(sys.stdin.read()))").stdout == "''\n"


def test_writes_and_reads_files_in_its_temp_dir(sandbox: RunCode) -> None:
    code = """
import os, pathlib, tempfile
print(sorted(os.listdir(".")))
pathlib.Path("notes.txt").write_text("hello")
with tempfile.NamedTemporaryFile("w+", delete=False) as handle:
    handle.write("world")
home = pathlib.Path(os.path.expanduser("~"))
(home / "cache").mkdir()
(home / "cache" / "x").write_bytes(b"!")
print(pathlib.Path("notes.txt").read_text(), pathlib.Path(handle.name).read_text(), (home / "cache" / "x").read_bytes())
"""
    result = sandbox(code)
    assert result.status is SandboxStatus.SUCCEEDED, result.stderr
    assert result.stdout == "[]\nhello world b'!'\n"


def test_work_dir_is_private_to_each_run(sandbox: RunCode) -> None:
    first = sandbox("open('left-behind.txt', 'w').write('x')\nimport os\nprint(os.getcwd())")
    second = sandbox("import os\nprint(os.listdir('.'))")
    assert first.status is SandboxStatus.SUCCEEDED and second.stdout == "[]\n"


def test_exit_codes_and_tracebacks(sandbox: RunCode) -> None:
    exited = sandbox("import sys\nprint('partial')\nsys.exit(3)")
    assert (exited.status, exited.exit_code, exited.stdout) == (SandboxStatus.FAILED, 3, "partial\n")

    raised = sandbox("x = 1\nraise ValueError('boom')")
    assert (raised.status, raised.exit_code) == (SandboxStatus.FAILED, 1)
    assert 'File "main.py", line 2, in <module>' in raised.stderr
    assert "raise ValueError('boom')" in raised.stderr  # source lines are shown
    assert raised.stderr.rstrip().endswith("ValueError: boom")
    assert "_launcher" not in raised.stderr and "<string>" not in raised.stderr  # no frames of ours

    syntax = sandbox("def broken(:\n    pass")
    assert syntax.status is SandboxStatus.FAILED and "SyntaxError" in syntax.stderr


def test_unicode_threads_and_subprocesses(sandbox: RunCode) -> None:
    code = """
import subprocess, sys, threading
results = []
threads = [threading.Thread(target=results.append, args=(i * i,)) for i in range(4)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
child = subprocess.run([sys.executable, "-c", "print(6 * 7)"], capture_output=True, text=True, check=True)
print(sorted(results), child.stdout.strip(), "gr\\u00fc\\u00df dich \\u2713")
print("to stderr", file=sys.stderr)
"""
    result = sandbox(code)
    assert result.status is SandboxStatus.SUCCEEDED, result.stderr
    assert result.stdout == "[0, 1, 4, 9] 42 grüß dich ✓\n"
    assert result.stderr == "to stderr\n"


def test_output_exactly_at_the_cap_is_not_truncated(sandbox: RunCode) -> None:
    result = sandbox("import sys\nsys.stdout.write('y' * 1024)", output_kb=1)
    assert result.status is SandboxStatus.SUCCEEDED
    assert result.stdout == "y" * 1024 and not result.stdout_truncated


def test_output_just_past_the_cap_fails_even_when_the_code_exits_at_once(sandbox: RunCode) -> None:
    result = sandbox("import sys\nsys.stdout.write('y' * 1025)", output_kb=1)
    assert (result.status, result.reason) == (SandboxStatus.FAILED, "output limit")
    assert result.stdout == "y" * 1024 and result.stdout_truncated


def test_concurrent_runs_do_not_interfere(host: SandboxHost) -> None:
    def one(index: int) -> SandboxResult:
        code = f"import os, time\nopen('mine', 'w').write('{index}')\ntime.sleep(0.2)\nprint(open('mine').read())"
        return run(SandboxRequest(code=code, limits=SandboxLimits(timeout_s=10)), host=host)

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(one, range(8)))
    assert [r.stdout for r in results] == [f"{i}\n" for i in range(8)]
    assert all(r.isolation is host.isolation for r in results)
