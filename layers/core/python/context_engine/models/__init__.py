"""Pydantic models: the domain (``domain``) and the HTTP API's requests/responses (``api``)."""
