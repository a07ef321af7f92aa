"""Data access: small functions over a tenant-scoped connection (``Database.tenant``).

Every statement filters by ``tenant_id`` explicitly; RLS backs that up. Functions
return domain models, never raw rows, so the layers above stay storage-agnostic.
"""
