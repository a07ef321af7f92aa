"""One construct per concern; the stack (``infra_cdk.stack``) composes them."""
