"""Code of the deploy-time functions the CDK app owns (not request handlers: those live in functions/)."""
