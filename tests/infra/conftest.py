"""One CDK synth per test session, shared by every infra test (a synth costs ~10 s, ~0.5 GB).

The app is built exactly as ``infra_cdk/app.py`` builds it (cdk.json context), except that
the layer is the package-only fallback (tests must not depend on ``make layer``), the search
backend is OpenSearch (so its domain is in the template; the default is PostgreSQL) and cdk-nag
runs explicitly in test_security.py instead of failing the synth.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# Node 20's end-of-life banner is noise in test output; set before jsii starts.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


@dataclass(frozen=True)
class Synth:
    app: Any  # aws_cdk.App
    stack: Any  # infra_cdk.stack.ContextEngineStack
    template: Any  # aws_cdk.assertions.Template
    json: dict[str, Any]

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        resources: dict[str, dict[str, Any]] = self.json["Resources"]
        return resources

    def of_type(self, cfn_type: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.resources.items() if v["Type"] == cfn_type}

    def logical_id(self, construct: Any) -> str:
        """Logical ID of an L2 construct's CloudFormation resource (or of an L1 itself)."""
        element = getattr(construct.node, "default_child", None) or construct
        return str(self.stack.resolve(self.stack.get_logical_id(element)))


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    from aws_cdk.assertions import Template
    from infra_cdk.app import build_app

    # searchBackend=opensearch: the OpenSearch domain (constructs/search.py) is synthesized and
    # asserted too; with the default (postgres) the stack simply has no search construct.
    context = {"layerDir": "", "searchBackend": "opensearch"}
    app, stack = build_app(context, outdir=str(tmp_path_factory.mktemp("cdk.out")), nag=False)
    template = Template.from_stack(stack)
    return Synth(app=app, stack=stack, template=template, json=dict(template.to_json()))
