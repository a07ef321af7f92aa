"""Sandbox failures that are the host's fault, not the user's code.

A run whose code crashes, times out or floods its output is a normal ``SandboxResult``;
these exceptions mean the sandbox itself could not be set up, so the caller should answer
with a server error (and retry elsewhere) instead of blaming the code.
"""


class SandboxError(Exception):
    """Base class of host-side sandbox failures."""


class SandboxUnavailableError(SandboxError):
    """No isolation of the requested kind can be provided on this machine."""


class SandboxSetupError(SandboxError):
    """The child could not be started or locked down; the user's code did not run."""
