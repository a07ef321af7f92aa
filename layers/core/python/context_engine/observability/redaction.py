"""Keep turn content, API keys and secrets out of logs.

Two layers, both pure:

- by key: values under content or credential names (``question``, ``answer``, ``code``,
  ``authorization``, ``api_key``, ``db_password``, ...; see ``privacy.sensitive``) are
  replaced with ``[REDACTED]`` at any depth of dicts and lists;
- by shape: inside any string, ``Bearer``/``Basic`` credentials, our API keys
  (``privacy.keys.API_KEY_PATTERN``), JWTs, AWS access key ids, passwords in URLs and
  ``password=...``-style pairs are masked.

Hooks:

- ``RedactionFilter``: a ``logging.Filter`` for stdlib handlers (attach it to the
  *handlers*, see ``install_redaction_filter``; a logger's own filters do not see records
  propagated from child loggers);
- ``redacting_json_serializer``: pass as ``Logger(json_serializer=...)`` to a powertools
  Logger; it scrubs the complete structured entry, including keys added with
  ``append_keys`` (which never pass through a filter) and the formatted exception;
- ``redacting_json_default``: the ``json_default`` hook for objects json cannot encode.

Free text logged positionally (``logger.info("q: %s", question)``) cannot be recognised
as content; log content-bearing values only under their field names, or not at all.
"""

from __future__ import annotations

import json
import logging
import numbers
import re
from collections.abc import Mapping
from typing import Any, Final

from pydantic import BaseModel

from context_engine.privacy.keys import API_KEY_PATTERN
from context_engine.privacy.sensitive import is_sensitive_key

REDACTED: Final = "[REDACTED]"
REDACTED_API_KEY: Final = "[REDACTED_API_KEY]"
_TRUNCATED: Final = "[TRUNCATED]"
_MAX_DEPTH: Final = 32

# Bounded repetitions (and a scheme that starts a token) keep every pattern linear on long
# inputs such as "a.a.a.a..." that would otherwise backtrack quadratically.
_URL_CREDENTIALS = re.compile(
    r"(?i)(?<![a-z0-9+.\-])"  # the scheme starts a token
    r"([a-z][a-z0-9+.\-]{0,30}://[^\s:/@]{1,256}:)[^\s@/]{1,256}@"
)
# "Bearer" in any case (header values vary); "Basic" only capitalised so prose like "basic setup" survives.
_AUTH_SCHEME = re.compile(r"\b((?i:bearer)|Basic)(\s+)[A-Za-z0-9._~+/=\-]{8,}")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*")
_AWS_ACCESS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")
# name=value, name: value, "name": "value" for credential-like names inside free text.
_SECRET_PAIR = re.compile(
    r"(?i)(?<![\w\-])([\w\-]{0,40}(?:password|passwd|secret|token|api[_\-]?key|authorization))"
    r"([\"']?\s*[=:]\s*[\"']?)"
    r"(?!\[REDACTED)[^\s\"',;&}]+"
)

# Attributes every LogRecord has; anything else on a record came in through `extra=`.
_STANDARD_RECORD_ATTRS: Final[frozenset[str]] = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__.keys() | {"message", "asctime", "taskName"}
)


def scrub_text(text: str) -> str:
    """Mask credentials that can be recognised by their shape inside free text."""
    text = _URL_CREDENTIALS.sub(rf"\1{REDACTED}@", text)
    text = _AUTH_SCHEME.sub(rf"\1\2{REDACTED}", text)
    text = _JWT.sub(REDACTED, text)
    text = API_KEY_PATTERN.sub(REDACTED_API_KEY, text)
    text = _AWS_ACCESS_KEY_ID.sub(REDACTED, text)
    return _SECRET_PAIR.sub(rf"\1\2{REDACTED}", text)


def scrub(value: Any, _depth: int = 0) -> Any:
    """A copy of ``value`` safe to log: sensitive keys redacted, strings scrubbed.

    Containers come back as plain dicts and lists; scalars other than strings unchanged.
    """
    if _depth > _MAX_DEPTH:
        return _TRUNCATED
    if isinstance(value, str):
        return scrub_text(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, Mapping):
        out: dict[Any, Any] = {}
        for key, item in value.items():
            if isinstance(key, str) and is_sensitive_key(key):
                out[key] = REDACTED if item is not None else None
            else:
                out[key] = scrub(item, _depth + 1)
        return out
    if isinstance(value, list | tuple | set | frozenset):
        return [scrub(item, _depth + 1) for item in value]
    if isinstance(value, BaseModel):
        return scrub(value.model_dump(mode="json"), _depth + 1)
    if isinstance(value, bytes | bytearray):
        return scrub_text(bytes(value).decode("utf-8", "replace"))
    return value


def redacting_json_default(obj: Any) -> Any:
    """``json_default`` hook: what json cannot encode is dumped (models) or str()-ed, then scrubbed."""
    if isinstance(obj, BaseModel):
        return scrub(obj.model_dump(mode="json"))
    return scrub_text(str(obj))


def redacting_json_serializer(log: Mapping[str, Any]) -> str:
    """``json_serializer`` hook for a powertools Logger: scrub the whole entry, then encode."""
    return json.dumps(scrub(log), default=redacting_json_default, separators=(",", ":"), ensure_ascii=False)


def _scrub_arg(arg: Any) -> Any:
    """A %-format argument: numbers stay numbers (for %d), anything else is scrubbed, and
    objects such as exceptions are rendered with str() first because their text may hold
    a DSN or a token."""
    if arg is None or isinstance(arg, numbers.Number):
        return arg
    if isinstance(arg, str):
        return scrub_text(arg)
    cleaned = scrub(arg)
    return scrub_text(str(cleaned)) if cleaned is arg else cleaned


class RedactionFilter(logging.Filter):
    """Scrubs message, arguments, ``extra`` fields and exception text of every record.

    It never drops a record (always returns True): losing the log line would hide the
    event; only the sensitive values go.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = scrub_text(record.msg)
        elif isinstance(record.msg, Mapping | list | tuple | BaseModel):
            record.msg = scrub(record.msg)
        if isinstance(record.args, Mapping):
            record.args = scrub(record.args)
        elif isinstance(record.args, tuple):
            record.args = tuple(_scrub_arg(arg) for arg in record.args)
        for key in list(record.__dict__):
            if key in _STANDARD_RECORD_ATTRS:
                continue
            record.__dict__[key] = REDACTED if is_sensitive_key(key) else scrub(record.__dict__[key])
        if record.exc_info and not record.exc_text:
            # Formatters reuse exc_text when it is set, so the scrubbed traceback is what gets printed.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub_text(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub_text(record.stack_info)
        return True


def install_redaction_filter(logger: logging.Logger | None = None) -> RedactionFilter:
    """Attach one ``RedactionFilter`` to ``logger`` (root by default) and all its handlers."""
    target = logger if logger is not None else logging.getLogger()
    flt = RedactionFilter()
    target.addFilter(flt)
    for handler in target.handlers:
        handler.addFilter(flt)
    return flt
