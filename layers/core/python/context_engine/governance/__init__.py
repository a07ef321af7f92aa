"""Governance: GDPR export and erase, retention purges, privacy keys and tenant settings.

Core logic only; ``services.governance`` and ``services.tenants`` are the use cases the API
and the governance function call.
"""
