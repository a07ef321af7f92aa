"""Sandboxed execution of tool code: one runner, a local host and the Fargate container host.

See docs/sandbox.md for the isolation layers and what each result status means.
"""

from context_engine.sandbox.errors import SandboxError, SandboxSetupError, SandboxUnavailableError
from context_engine.sandbox.host import SandboxHost
from context_engine.sandbox.models import (
    Isolation,
    SandboxLimits,
    SandboxRequest,
    SandboxResult,
    SandboxStatus,
)
from context_engine.sandbox.runner import run

__all__ = [
    "Isolation",
    "SandboxError",
    "SandboxHost",
    "SandboxLimits",
    "SandboxRequest",
    "SandboxResult",
    "SandboxSetupError",
    "SandboxStatus",
    "SandboxUnavailableError",
    "run",
]
