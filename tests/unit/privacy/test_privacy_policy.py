"""PrivacyPolicy validation and apply_policy: keep, mask, redact, hash; counts without values."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from context_engine.privacy import (
    DataClassification,
    EntityType,
    PrivacyAction,
    PrivacyOutcome,
    PrivacyPolicy,
    apply_policy,
    detect,
    merge_counts,
)
from context_engine.privacy.policy import MIN_HASH_KEY_BYTES, hash_token, mask_value

KEY = b"tenant-secret-0123456789abcdef"
OTHER_KEY = b"another-tenant-secret-987654321"

SAMPLE = (
    "Mail John.Doe@Example.com or call +44 20 7946 0958. "
    "Card 4111 1111 1111 1111, IBAN DE89 3704 0044 0532 0130 00, from 192.168.1.20 and 2001:db8::1."
)
SAMPLE_VALUES = [
    "John.Doe@Example.com",
    "+44 20 7946 0958",
    "4111 1111 1111 1111",
    "DE89 3704 0044 0532 0130 00",
    "192.168.1.20",
    "2001:db8::1",
]


# --- the policy model ---------------------------------------------------------------------


def test_default_policy_keeps_everything() -> None:
    policy = PrivacyPolicy()
    assert policy.is_noop and not policy.uses_hash
    out = apply_policy(SAMPLE, policy, hash_key=b"")
    assert out.text == SAMPLE
    assert out.summary() == {e.value: {"keep": 1} for e in EntityType if e is not EntityType.IP_ADDRESS} | {
        "ip_address": {"keep": 2}
    }


def test_policy_from_json_and_overrides() -> None:
    policy = PrivacyPolicy.model_validate_json(
        '{"default": "redact", "actions": {"email": "hash", "ip_address": "keep"}}'
    )
    assert policy.action_for(EntityType.EMAIL) is PrivacyAction.HASH
    assert policy.action_for(EntityType.IP_ADDRESS) is PrivacyAction.KEEP
    assert policy.action_for(EntityType.PHONE) is PrivacyAction.REDACT
    assert policy.uses_hash and not policy.is_noop
    assert PrivacyPolicy.model_validate(policy.model_dump(mode="json")) == policy


@pytest.mark.parametrize(
    "payload",
    [
        {"default": "scramble"},
        {"actions": {"passport": "redact"}},
        {"actions": {"email": "delete"}},
        {"default": "keep", "extra": 1},
        {"actions": ["email", "redact"]},
    ],
)
def test_invalid_policies_are_rejected(payload: object) -> None:
    with pytest.raises(ValidationError):
        PrivacyPolicy.model_validate(payload)


def test_policy_is_immutable() -> None:
    with pytest.raises(ValidationError):
        setattr(PrivacyPolicy(), "default", PrivacyAction.REDACT)  # noqa: B010


# --- actions ------------------------------------------------------------------------------


def test_mask() -> None:
    out = apply_policy(SAMPLE, PrivacyPolicy.uniform(PrivacyAction.MASK), hash_key=b"")
    assert out.text == (
        "Mail J***@Example.com or call +** ** **** **58. "
        "Card **** **** **** 1111, IBAN DE** **** **** **** **30 00, from 192.168.1.* and 2001:db8:0:*."
    )
    for value in SAMPLE_VALUES:
        assert value not in out.text


@pytest.mark.parametrize(
    ("entity", "value", "masked"),
    [
        (EntityType.PAYMENT_CARD, "378282246310005", "**** **** **** 0005"),
        (EntityType.PHONE, "(555) 123-4567", "(***) ***-**67"),
        (EntityType.IBAN, "NL91ABNA0417164300", "NL************4300"),
        (EntityType.IP_ADDRESS, "::1", "0:0:0:*"),
        (EntityType.EMAIL, "x@y.org", "x***@y.org"),
    ],
)
def test_mask_shapes(entity: EntityType, value: str, masked: str) -> None:
    assert mask_value(entity, value) == masked


def test_redact() -> None:
    out = apply_policy(SAMPLE, PrivacyPolicy.uniform(PrivacyAction.REDACT), hash_key=b"")
    assert out.text == ("Mail [EMAIL] or call [PHONE]. Card [CARD], IBAN [IBAN], from [IP] and [IP].")
    assert out.summary() == {
        "email": {"redact": 1},
        "iban": {"redact": 1},
        "ip_address": {"redact": 2},
        "payment_card": {"redact": 1},
        "phone": {"redact": 1},
    }


def test_hash_tokens_are_hmac_of_the_normalised_value() -> None:
    policy = PrivacyPolicy.uniform(PrivacyAction.HASH)
    out = apply_policy("write to John.Doe@Example.com", policy, hash_key=KEY)
    expected = hmac.new(KEY, b"email\x00john.doe@example.com", hashlib.sha256).hexdigest()[:12]
    assert out.text == f"write to [EMAIL:{expected}]"


def test_hash_is_joinable_across_spellings_and_separate_across_tenants() -> None:
    policy = PrivacyPolicy.uniform(PrivacyAction.HASH)

    def token(text: str, key: bytes = KEY) -> str:
        return apply_policy(text, policy, hash_key=key).text

    assert token("a.b@example.com") == token("A.B@EXAMPLE.COM")
    assert token("4111 1111 1111 1111") == token("4111-1111-1111-1111") == token("4111111111111111")
    assert token("(555) 123-4567") == token("555-123-4567")
    assert token("DE89 3704 0044 0532 0130 00") == token("de89370400440532013000")
    assert token("2001:db8::1") == token("2001:0db8:0000:0000:0000:0000:0000:0001")
    assert token("a.b@example.com") != token("c.d@example.com")
    assert token("a.b@example.com") != token("a.b@example.com", OTHER_KEY)
    out = token(SAMPLE)
    assert re.fullmatch(
        r"Mail \[EMAIL:[0-9a-f]{12}\] or call \[PHONE:[0-9a-f]{12}\]\. Card \[CARD:[0-9a-f]{12}\], "
        r"IBAN \[IBAN:[0-9a-f]{12}\], from \[IP:[0-9a-f]{12}\] and \[IP:[0-9a-f]{12}\]\.",
        out,
    )


def test_hash_tokens_are_typed() -> None:
    # The same digits as a card and as a phone never collide into one token.
    assert (
        hash_token(EntityType.PAYMENT_CARD, "4111111111111111", KEY)[6:]
        != hash_token(EntityType.PHONE, "4111111111111111", KEY)[7:]
    )


@pytest.mark.parametrize("key", [b"", b"short"])
def test_hash_needs_a_real_secret(key: bytes) -> None:
    assert len(key) < MIN_HASH_KEY_BYTES
    with pytest.raises(ValueError, match="hash_key"):
        apply_policy("a@b.io", PrivacyPolicy(actions={EntityType.EMAIL: PrivacyAction.HASH}), hash_key=key)


def test_per_entity_actions() -> None:
    policy = PrivacyPolicy(
        actions={
            EntityType.EMAIL: PrivacyAction.HASH,
            EntityType.PAYMENT_CARD: PrivacyAction.REDACT,
            EntityType.PHONE: PrivacyAction.MASK,
        }
    )
    out = apply_policy(SAMPLE, policy, hash_key=KEY)
    assert "[CARD]" in out.text and "**58" in out.text and "[EMAIL:" in out.text
    assert "DE89 3704 0044 0532 0130 00" in out.text and "192.168.1.20" in out.text
    assert out.counts[EntityType.IBAN] == {PrivacyAction.KEEP: 1}
    assert out.counts[EntityType.EMAIL] == {PrivacyAction.HASH: 1}


# --- the outcome --------------------------------------------------------------------------


def test_outcome_never_carries_the_values_outside_text() -> None:
    out = apply_policy(SAMPLE, PrivacyPolicy.uniform(PrivacyAction.HASH), hash_key=KEY)
    exposed = json.dumps(out.summary()) + repr(out) + str(out.counts)
    for value in SAMPLE_VALUES:
        assert value not in exposed
    assert "Mail" not in repr(out)  # the (rewritten) text is content too


def test_merge_counts() -> None:
    policy = PrivacyPolicy(actions={EntityType.EMAIL: PrivacyAction.REDACT})
    q = apply_policy("a@b.io and c@d.io", policy, hash_key=b"")
    a = apply_policy("e@f.io, 10.0.0.1", policy, hash_key=b"")
    merged = merge_counts([q, a])
    assert merged == {
        EntityType.EMAIL: {PrivacyAction.REDACT: 3},
        EntityType.IP_ADDRESS: {PrivacyAction.KEEP: 1},
    }
    assert PrivacyOutcome(text="", counts=merged).detected == 4


def test_data_classification_orders_by_sensitivity() -> None:
    c = DataClassification
    assert c.PUBLIC < c.INTERNAL < c.CONFIDENTIAL < c.RESTRICTED
    assert c.RESTRICTED >= c.CONFIDENTIAL and not c.PUBLIC > c.INTERNAL
    assert c.most_restrictive(c.INTERNAL, c.RESTRICTED, c.PUBLIC) is c.RESTRICTED
    assert c("confidential") is c.CONFIDENTIAL
    with pytest.raises(ValueError):
        c.most_restrictive()


# --- properties ---------------------------------------------------------------------------

_pii = st.sampled_from(SAMPLE_VALUES + ["x@y.dev", "(212) 555-0100", "5555 5555 5555 4444", "10.9.8.7"])
_filler = st.text(alphabet=string.ascii_letters + " ,.;\n", max_size=40)


@st.composite
def text_with_pii(draw: st.DrawFn) -> tuple[str, list[str]]:
    values = draw(st.lists(_pii, min_size=1, max_size=5))
    parts = []
    for v in values:
        parts.extend([draw(_filler), " ", v, " "])
    parts.append(draw(_filler))
    return "".join(parts), values


@given(
    sample=text_with_pii(),
    action=st.sampled_from([PrivacyAction.REDACT, PrivacyAction.HASH, PrivacyAction.MASK]),
)
def test_non_keep_actions_leave_no_value_and_no_detectable_pii(
    sample: tuple[str, list[str]], action: PrivacyAction
) -> None:
    text, values = sample
    out = apply_policy(text, PrivacyPolicy.uniform(action), hash_key=KEY)
    for v in values:
        assert v not in out.text
    assert detect(out.text) == []
    assert out.detected == len(values)
    # Applying the policy again finds nothing more and changes nothing.
    again = apply_policy(out.text, PrivacyPolicy.uniform(action), hash_key=KEY)
    assert again.text == out.text and again.counts == {}


@given(st.text(max_size=300))
def test_keep_never_changes_text(text: str) -> None:
    assert apply_policy(text, PrivacyPolicy(), hash_key=b"").text == text


@given(st.text(max_size=300))
def test_redaction_only_touches_detected_spans(text: str) -> None:
    out = apply_policy(text, PrivacyPolicy.uniform(PrivacyAction.REDACT), hash_key=b"")
    # Rebuild the expected output from the detected spans alone.
    expected, cursor = [], 0
    for m in detect(text):
        expected += [text[cursor : m.start], f"[{m.entity.label}]"]
        cursor = m.end
    expected.append(text[cursor:])
    assert out.text == "".join(expected)
