"""CDK entry point: ``python infra_cdk/app.py`` (``make synth``) or ``cdk synth|deploy`` (cdk.json).

Synthesizes offline and without docker into ``cdk.out``. cdk-nag (AwsSolutions) runs as a
CDK policy-validation plugin: an unacknowledged finding fails the synth.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
# Run as a script, Python puts infra_cdk/ first on sys.path, where infra_cdk/constructs would
# shadow the `constructs` library: import from the repository root instead.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from aws_cdk import App, Validations  # noqa: E402
from cdk_nag import AwsSolutionsChecks  # noqa: E402

from infra_cdk.stack import ContextEngineStack  # noqa: E402

STACK_NAME = "ContextEngine"


def cdk_json_context() -> dict[str, Any]:
    """cdk.json's context, so a plain ``python infra_cdk/app.py`` synthesizes exactly what the
    CLI does (the CLI passes the same values, and its own take precedence)."""
    data: dict[str, Any] = json.loads((REPO_ROOT / "cdk.json").read_text(encoding="utf-8"))
    context: dict[str, Any] = data.get("context", {})
    return context


def build_app(
    context: Mapping[str, Any] | None = None, *, outdir: str | None = None, nag: bool = True
) -> tuple[App, ContextEngineStack]:
    app = App(
        context={**cdk_json_context(), **(context or {})},
        outdir=outdir or os.environ.get("CDK_OUTDIR") or str(REPO_ROOT / "cdk.out"),
        analytics_reporting=False,
    )
    stack = ContextEngineStack(app, STACK_NAME)
    if nag:
        Validations.of(app).add_plugins(AwsSolutionsChecks(app, verbose=True))
    return app, stack


def main() -> None:
    app, _ = build_app()
    app.synth()


if __name__ == "__main__":
    main()
