"""Logging, metrics and tracing (powertools) and log redaction."""
