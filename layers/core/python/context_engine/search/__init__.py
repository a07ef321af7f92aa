"""Search backends (PostgreSQL full text + pgvector; OpenSearch in AWS) behind one interface."""
