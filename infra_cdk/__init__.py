"""The AWS deployment of Context Engine, defined in CDK (see docs/deploy.md)."""
