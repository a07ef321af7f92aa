"""The shared Lambda layer: third-party runtime dependencies plus the ``context_engine`` package.

``scripts/build_layer.py`` (``make layer``) pip-installs the dependencies for the Lambda
platform into ``build/layer/python`` and needs PyPI; synth never does. At synth:

- ``build/layer`` exists: the package inside it is refreshed from ``layers/core/python``
  (a millisecond copy), so a code change never needs a rebuild and a deploy never ships a
  stale core. A warning says when ``layers/core/requirements.txt`` changed since the build.
- it does not: the layer falls back to ``layers/core`` (the package only) with a warning,
  so ``make synth`` and the infra tests work offline. Such an assembly is not deployable
  (no psycopg, pydantic, ...); docs/deploy.md says to run ``make layer`` first.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

from aws_cdk import Annotations
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGE_LAYER = REPO_ROOT / "layers" / "core"  # python/context_engine: the Lambda layer layout
REQUIREMENTS = PACKAGE_LAYER / "requirements.txt"
BUILD_INFO = "layer-build.json"  # written by scripts/build_layer.py next to the layer folder
_IGNORE = ("__pycache__", "*.pyc", ".mypy_cache", ".pytest_cache")


def requirements_digest() -> str:
    return hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()


def refresh_package(layer_dir: Path) -> None:
    """Replace the package copy in a built layer with the working tree's package."""
    target = layer_dir / "python" / "context_engine"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(PACKAGE_LAYER / "python" / "context_engine", target, ignore=shutil.ignore_patterns(*_IGNORE))


def stale_build_reason(layer_dir: Path) -> str | None:
    """Why the built dependencies may not match requirements.txt, or None."""
    info_file = layer_dir.parent / BUILD_INFO
    if not info_file.is_file():
        return f"{info_file} is missing"
    info = json.loads(info_file.read_text(encoding="utf-8"))
    if info.get("requirements_sha256") != requirements_digest():
        return "layers/core/requirements.txt changed since the layer was built"
    return None


class CoreLayer(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, built_dir: Path | None) -> None:
        """``built_dir``: the folder ``scripts/build_layer.py`` fills; None forces the package-only layer."""
        super().__init__(scope, construct_id)
        self.complete = built_dir is not None and (built_dir / "python").is_dir()
        if self.complete:
            assert built_dir is not None
            refresh_package(built_dir)
            source = built_dir
            stale = stale_build_reason(built_dir)
            if stale:
                self._warn(f"{stale}: run `make layer` before deploying")
        else:
            source = PACKAGE_LAYER
            missing = f"{built_dir} not found" if built_dir else "no layer build configured (layerDir is empty)"
            self._warn(
                f"{missing}: the core layer holds only the context_engine package "
                "(synth and tests work; run `make layer` before `cdk deploy`)"
            )
        self.layer = lambda_.LayerVersion(
            self,
            "Layer",
            code=lambda_.Code.from_asset(str(source), exclude=["requirements.txt", *_IGNORE]),
            compatible_runtimes=[lambda_.Runtime.PYTHON_3_12],
            compatible_architectures=[lambda_.Architecture.ARM_64],
            description="context_engine core package and its runtime dependencies (AWS: Bedrock embeddings, no ONNX)",
        )

    def _warn(self, message: str) -> None:
        log.warning("core layer: %s", message)
        Annotations.of(self).add_warning_v2("context-engine:core-layer", message)
