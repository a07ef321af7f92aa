"""Database administration at deploy time: migrations (a custom resource) and ``ce_app`` rotation.

Deployed as one Lambda asset (this folder) next to the core layer, which provides
``context_engine``, psycopg and boto3. Both entry points connect to the Aurora writer
directly, with the owner secret, over TLS; nothing here goes through RDS Proxy.
"""
