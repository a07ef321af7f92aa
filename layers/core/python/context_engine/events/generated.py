"""Files generated from the code (event JSON Schemas, sample events): render, check, write.

One implementation for both generators, so "is the checked-in copy up to date?" means the
same thing everywhere: a file is stale when it is missing, different, or no longer generated.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def render(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def _present(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*.json")} if folder.exists() else set()


def stale(folder: Path, expected: dict[str, str]) -> list[str]:
    present = _present(folder)
    out = [n for n, text in expected.items() if n not in present or (folder / n).read_text() != text]
    return sorted(out + [n for n in present if n not in expected])


def write(folder: Path, expected: dict[str, str]) -> list[str]:
    for name in _present(folder) - set(expected):
        (folder / name).unlink()
    for name, text in expected.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return sorted(expected)


def cli(argv: list[str] | None, *, doc: str | None, what: str, module: str,
        write_fn: Callable[[], list[str]], stale_fn: Callable[[], list[str]]) -> int:
    """``--write`` regenerates; otherwise (or with ``--check``) exit 1 when out of date."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--write", action="store_true", help=f"regenerate {what}")
    p.add_argument("--check", action="store_true", help="exit 1 if the files are out of date (the default)")
    args = p.parse_args(argv)
    if args.write:
        for name in write_fn():
            print(f"wrote {what}/{name}")
        return 0
    out_of_date = stale_fn()
    if out_of_date:
        print("out of date: " + ", ".join(out_of_date) + f" (run: python -m {module} --write)", file=sys.stderr)
        return 1
    print(f"{what} are up to date")
    return 0
