"""Per-tenant privacy policy and its application to turn text before storage and indexing.

Actions per entity type:

- ``keep``: leave the value as written (the default, so existing tenants are unaffected);
- ``mask``: keep a recognisable hint (``j***@example.com``, ``**** **** **** 1234``);
- ``redact``: replace with a typed token (``[EMAIL]``);
- ``hash``: replace with ``[EMAIL:<12 hex>]``, the first 12 hex digits of
  HMAC-SHA256(tenant secret, entity type + normalised value). Equal values give equal
  tokens within a tenant (joinable), different tenants' tokens do not correlate, and
  without the secret the value cannot be brute-forced from the token.

``apply_policy`` returns the new text and counts per entity type and action; the counts
(never the values) are what goes into logs, metrics and audit records.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Iterable
from enum import StrEnum
from typing import Final

from pydantic import BaseModel, ConfigDict, Field

from context_engine.privacy.detectors import EntityType, PiiMatch, detect

MIN_HASH_KEY_BYTES: Final = 16  # a short secret would let someone enumerate phone numbers
HASH_HEX_CHARS: Final = 12


class PrivacyAction(StrEnum):
    KEEP = "keep"
    MASK = "mask"
    REDACT = "redact"
    HASH = "hash"


class PrivacyPolicy(BaseModel):
    """What to do with each PII entity type found in turn text.

    ``actions`` overrides ``default`` per entity type; unknown entity types or actions are
    rejected by validation, e.g. ``{"default": "keep", "actions": {"email": "hash"}}``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    default: PrivacyAction = PrivacyAction.KEEP
    actions: dict[EntityType, PrivacyAction] = Field(default_factory=dict)

    @classmethod
    def uniform(cls, action: PrivacyAction) -> PrivacyPolicy:
        """The same action for every entity type."""
        return cls(default=action)

    def action_for(self, entity: EntityType) -> PrivacyAction:
        return self.actions.get(entity, self.default)

    @property
    def is_noop(self) -> bool:
        """True when every entity type is kept: the text can never change."""
        return all(self.action_for(e) is PrivacyAction.KEEP for e in EntityType)

    @property
    def uses_hash(self) -> bool:
        return any(self.action_for(e) is PrivacyAction.HASH for e in EntityType)


PrivacyCounts = dict[EntityType, dict[PrivacyAction, int]]


class PrivacyOutcome(BaseModel):
    """The rewritten text and how many entities of each type got which action."""

    model_config = ConfigDict(frozen=True)

    # Still turn content: excluded from repr so logging the outcome does not log the text.
    text: str = Field(repr=False)
    counts: PrivacyCounts = Field(default_factory=dict)

    @property
    def detected(self) -> int:
        return sum(n for per_action in self.counts.values() for n in per_action.values())

    def summary(self) -> dict[str, dict[str, int]]:
        """JSON-ready counts, e.g. ``{"email": {"hash": 2}}`` for log fields and audit details."""
        return {
            entity.value: {action.value: n for action, n in sorted(per_action.items())}
            for entity, per_action in sorted(self.counts.items())
        }


def merge_counts(outcomes: Iterable[PrivacyOutcome]) -> PrivacyCounts:
    """Sum the counts of several outcomes (e.g. a turn's question and answer)."""
    merged: PrivacyCounts = {}
    for outcome in outcomes:
        for entity, per_action in outcome.counts.items():
            bucket = merged.setdefault(entity, {})
            for action, n in per_action.items():
                bucket[action] = bucket.get(action, 0) + n
    return merged


# --- transformations ---------------------------------------------------------------------


def normalise_value(entity: EntityType, value: str) -> str:
    """Canonical form for hashing, so formatting differences do not split equal values.

    Phone numbers keep a leading ``+`` when present: a national and an international
    spelling of one number hash differently (there is no reliable country inference).
    """
    if entity is EntityType.EMAIL:
        return value.strip().lower()
    if entity is EntityType.PHONE:
        digits = "".join(ch for ch in value if ch.isdigit())
        return "+" + digits if value.lstrip().startswith("+") else digits
    if entity is EntityType.PAYMENT_CARD:
        return "".join(ch for ch in value if ch.isdigit())
    if entity is EntityType.IBAN:
        return value.replace(" ", "").upper()
    if entity is EntityType.IP_ADDRESS:
        return ipaddress.ip_address(value).compressed
    raise ValueError(f"unknown entity type: {entity}")


def hash_token(entity: EntityType, value: str, hash_key: bytes) -> str:
    """``[EMAIL:0123456789ab]``; the entity type is part of the MAC input (domain separation)."""
    message = f"{entity.value}\x00{normalise_value(entity, value)}".encode()
    digest = hmac.new(hash_key, message, hashlib.sha256).hexdigest()
    return f"[{entity.label}:{digest[:HASH_HEX_CHARS]}]"


def redact_token(entity: EntityType) -> str:
    return f"[{entity.label}]"


def _mask_chars(value: str, *, keep_head: int, keep_tail: int) -> str:
    """Star every alphanumeric except the first ``keep_head`` and last ``keep_tail``,
    keeping separators so the shape stays recognisable."""
    positions = [i for i, ch in enumerate(value) if ch.isalnum()]
    hidden = set(positions[keep_head : max(keep_head, len(positions) - keep_tail)])
    return "".join("*" if i in hidden else ch for i, ch in enumerate(value))


def mask_value(entity: EntityType, value: str) -> str:
    if entity is EntityType.EMAIL:
        local, _, domain = value.partition("@")
        return f"{local[:1]}***@{domain}"
    if entity is EntityType.PHONE:
        return _mask_chars(value, keep_head=0, keep_tail=2)
    if entity is EntityType.PAYMENT_CARD:
        # Fixed shape: neither the length nor the issuer prefix is revealed.
        digits = "".join(ch for ch in value if ch.isdigit())
        return f"**** **** **** {digits[-4:]}"
    if entity is EntityType.IBAN:
        return _mask_chars(value, keep_head=2, keep_tail=4)
    if entity is EntityType.IP_ADDRESS:
        addr = ipaddress.ip_address(value)
        if addr.version == 4:
            return ".".join(str(addr).split(".")[:3]) + ".*"  # /24, as common IP anonymisation
        hextets = addr.exploded.split(":")[:3]  # the /48 routing prefix
        return ":".join(h.lstrip("0") or "0" for h in hextets) + ":*"
    raise ValueError(f"unknown entity type: {entity}")


def _replacement(match: PiiMatch, action: PrivacyAction, hash_key: bytes) -> str:
    if action is PrivacyAction.KEEP:
        return match.value
    if action is PrivacyAction.MASK:
        return mask_value(match.entity, match.value)
    if action is PrivacyAction.REDACT:
        return redact_token(match.entity)
    return hash_token(match.entity, match.value, hash_key)


def apply_policy(text: str, policy: PrivacyPolicy, *, hash_key: bytes) -> PrivacyOutcome:
    """Detect PII in ``text`` and apply ``policy``; ``hash_key`` is the tenant's secret.

    Detection runs even when everything is kept, so the counts still tell how much PII a
    tenant stores; callers on a hot path may skip the call when ``policy.is_noop``.
    """
    if policy.uses_hash and len(hash_key) < MIN_HASH_KEY_BYTES:
        raise ValueError(f"hash_key must be at least {MIN_HASH_KEY_BYTES} bytes for the hash action")
    parts: list[str] = []
    counts: PrivacyCounts = {}
    cursor = 0
    for match in detect(text):
        action = policy.action_for(match.entity)
        parts.append(text[cursor : match.start])
        parts.append(_replacement(match, action, hash_key))
        cursor = match.end
        per_action = counts.setdefault(match.entity, {})
        per_action[action] = per_action.get(action, 0) + 1
    parts.append(text[cursor:])
    return PrivacyOutcome(text="".join(parts), counts=counts)
