"""The ASL files of ``statemachines/`` with their ``${Placeholder}`` substitutions — the same
rule CDK's ``DefinitionBody.from_file(..., definition_substitutions=...)`` applies."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from context_engine.wiring import WORKFLOWS, WorkflowSpec

PLACEHOLDER = re.compile(r"\$\{(\w+)\}")


def repo_root() -> Path:
    # layers/core/python/context_engine/pipeline/asl.py → repository root
    return Path(os.environ.get("CONTEXT_ENGINE_REPO_DIR") or Path(__file__).resolve().parents[5])


def definition_text(spec: WorkflowSpec) -> str:
    return (repo_root() / spec.definition).read_text(encoding="utf-8")


def placeholders(text: str) -> set[str]:
    return set(PLACEHOLDER.findall(text))


def render(spec: WorkflowSpec, function_arn: Callable[[str], str]) -> str:
    """The definition with every placeholder replaced by the ARN of the function the wiring
    names for it. Unknown or unused placeholders are errors: the file and the wiring agree."""
    text = definition_text(spec)
    found = placeholders(text)
    if found != set(spec.substitutions):
        raise ValueError(f"{spec.definition}: placeholders {sorted(found)} != wiring {sorted(spec.substitutions)}")
    return PLACEHOLDER.sub(lambda m: function_arn(spec.substitutions[m.group(1)]), text)


def load(name: str, function_arn: Callable[[str], str]) -> dict[str, Any]:
    return json.loads(render(WORKFLOWS[name], function_arn))
