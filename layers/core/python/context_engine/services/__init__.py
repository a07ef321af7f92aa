"""Use cases: one function per API operation, taking the runtime and the caller."""
