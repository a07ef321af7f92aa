"""The embedded default: a local HTTP gateway in front of the same Lambda handlers, and the CLI."""
