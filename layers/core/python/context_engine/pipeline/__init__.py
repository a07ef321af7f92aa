"""The event pipeline: SQS consumers, the outbox relay, workflows (Step Functions, or the
same ASL run locally by moto's executor) and the local in-process dispatcher."""
