"""Privacy building blocks: PII detection, per-tenant policies, classification, API keys.

Pure functions and models only; storage and handlers wire them in.
"""

from context_engine.privacy.classification import DataClassification
from context_engine.privacy.detectors import EntityType, PiiMatch, detect
from context_engine.privacy.keys import API_KEY_PATTERN, generate_api_key, hash_api_key, verify_api_key
from context_engine.privacy.policy import (
    PrivacyAction,
    PrivacyOutcome,
    PrivacyPolicy,
    apply_policy,
    merge_counts,
)

__all__ = [
    "API_KEY_PATTERN",
    "DataClassification",
    "EntityType",
    "PiiMatch",
    "PrivacyAction",
    "PrivacyOutcome",
    "PrivacyPolicy",
    "apply_policy",
    "detect",
    "generate_api_key",
    "hash_api_key",
    "merge_counts",
    "verify_api_key",
]
