"""The sandbox image copies only context_engine/sandbox: it must not import the rest of the core."""

import ast
from pathlib import Path

import context_engine.sandbox

PACKAGE = Path(context_engine.sandbox.__file__).parent
ALLOWED_THIRD_PARTY = {"boto3", "pydantic"}  # what sandbox_image/Dockerfile installs


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_sandbox_modules_import_only_the_stdlib_their_package_boto3_and_pydantic() -> None:
    import sys

    offenders = {}
    for path in sorted(PACKAGE.glob("*.py")):
        bad = {
            name
            for name in _imports(path)
            if not name.startswith("context_engine.sandbox")
            and name.split(".")[0] not in sys.stdlib_module_names | ALLOWED_THIRD_PARTY
        }
        if bad:
            offenders[path.name] = sorted(bad)
    assert offenders == {}


def test_the_launcher_is_stdlib_only() -> None:
    # It runs in the child's interpreter, which cannot import this package or its dependencies.
    import sys

    names = _imports(PACKAGE / "_launcher.py")
    assert {name.split(".")[0] for name in names} <= sys.stdlib_module_names
