"""Domain events: envelopes, publishing (EventBridge or in process) and the outbox."""
