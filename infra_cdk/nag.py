"""cdk-nag 3.x acknowledgements: CDK's native ``Validations.of(scope).acknowledge``.

Every acknowledgement carries the reason it is safe; a finding with a bracketed suffix
(``AwsSolutions-IAM5[Resource::*]``) must be acknowledged under that exact id.
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Acknowledgment, Validations
from constructs import IConstruct


def acknowledge(scope: IConstruct, rules: Mapping[str, str]) -> None:
    """Acknowledge ``rule id → reason`` on ``scope`` and everything below it."""
    for rule_id, reason in rules.items():
        if not reason.strip():
            raise ValueError(f"acknowledging {rule_id} needs a reason")
    Validations.of(scope).acknowledge(*(Acknowledgment(id=i, reason=r) for i, r in rules.items()))
