"""One redaction step for everything the bridge writes down about itself: log lines (structlog
and the standard library's) and stored failure reasons (dead letters).

Two kinds of rules, applied together by ``redact``:

* the secrets this process was given (bot token, Planfix token, webhook secrets, passwords in
  ``NATS_URL``/``MONGODB_URL``), registered once at start by ``bridge_lib.settings.load_settings``
  from the settings' ``SecretStr`` fields and URLs: they are cut wherever they appear;
* shapes that are secret whoever wrote them, so a process that registered nothing (the CLI, a
  library's message) is covered too: a bot token in a Bot API or file URL (``/bot<id>:<key>/``),
  credentials in a URL (``scheme://user:password@``), ``Bearer`` tokens, ``token=``/``secret=``
  query parameters, the Planfix webhook path's secret.

Every pattern is linear (no nested quantifiers), so a hostile string costs one pass.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any
from urllib.parse import unquote, urlsplit

from pydantic import SecretStr
from pydantic_settings import BaseSettings

MASK = "[redacted]"
# Shorter values are not registered: cutting every "abc" out of the logs would hide more than it
# protects (the settings refuse secrets that short anyway).
MIN_SECRET_LENGTH = 6

_SHAPES: tuple[tuple[re.Pattern[str], str], ...] = (
    # https://api.telegram.org/bot123:AAE.../getMe and .../file/bot123:AAE.../photos/1.jpg
    (re.compile(r"(/bot)\d+:[^/\s'\"]+"), rf"\g<1>{MASK}"),
    # A bare bot token: digits, a colon, 30 or more of Telegram's letters.
    (re.compile(r"\b\d{5,}:[A-Za-z0-9_-]{30,}"), MASK),
    # scheme://user:password@host: the password, and the user with it.
    (re.compile(r"([A-Za-z][A-Za-z0-9+.-]{0,30}://)[^/\s@'\"]{1,512}@"), rf"\g<1>{MASK}@"),
    (re.compile(r"(Bearer\s+)[^\s'\",]+", re.IGNORECASE), rf"\g<1>{MASK}"),
    (
        re.compile(r"((?:token|secret|password|passwd|api_key|apikey)=)[^&\s'\"]+", re.IGNORECASE),
        rf"\g<1>{MASK}",
    ),
    (re.compile(r"(/planfix/webhook/)[^/\s?'\"]+"), rf"\g<1>{MASK}"),
)

# Every rule in one pass, to find out whether a text needs any: almost no log value does, and
# one search is several times cheaper than each rule's substitution in turn.
_ANY_SHAPE = re.compile(
    "|".join(f"(?{'i' if pattern.flags & re.IGNORECASE else ''}:{pattern.pattern})" for pattern, _ in _SHAPES)
)

_BEARER = re.compile(r"bearer\s", re.IGNORECASE)

_lock = threading.Lock()
_secrets: set[str] = set()
_known: re.Pattern[str] | None = None


def register_secret(value: str | SecretStr | None) -> None:
    """Cut ``value`` (and, for a bot token, its key half) out of everything ``redact`` sees."""
    if value is None:
        return
    text = value.get_secret_value() if isinstance(value, SecretStr) else value
    candidates = {text}
    # A bot token "<id>:<key>": the key alone is the secret part, it may appear without the id.
    head, colon, tail = text.partition(":")
    if colon and head.isdigit():
        candidates.add(tail)
    global _known
    with _lock:
        added = {c for c in candidates if len(c) >= MIN_SECRET_LENGTH} - _secrets
        if not added:
            return
        _secrets.update(added)
        # Longest first: a token is cut whole before its key half could leave the id behind.
        ordered = sorted(_secrets, key=len, reverse=True)
        _known = re.compile("|".join(re.escape(secret) for secret in ordered))


def register_url_credentials(url: str) -> None:
    """The password (and user) in each of ``url``'s comma-separated URLs."""
    for one in url.split(","):
        try:
            parts = urlsplit(one.strip())
        except ValueError:
            continue
        for part in (parts.password, parts.username):
            if part:
                register_secret(part)
                register_secret(unquote(part))


def register_settings_secrets(settings: BaseSettings) -> None:
    """Every ``SecretStr`` field of ``settings`` and the credentials in its URL fields."""
    for name in type(settings).model_fields:
        value = getattr(settings, name, None)
        if isinstance(value, SecretStr):
            register_secret(value)
        elif isinstance(value, str) and name.endswith("_url"):
            register_url_credentials(value)


def forget_registered_secrets() -> None:
    """For tests: back to the shape rules alone."""
    global _known
    with _lock:
        _secrets.clear()
        _known = None


def redact(text: str) -> str:
    """``text`` with every registered secret and every secret-shaped part replaced by a mask."""
    known = _known
    if known is not None:
        text = known.sub(MASK, text)
    # Every shape but a bare "Bearer x" holds one of these characters.
    if ":" not in text and "=" not in text and "/" not in text and _BEARER.search(text) is None:
        return text
    if _ANY_SHAPE.search(text) is None:
        return text
    for pattern, replacement in _SHAPES:
        text = pattern.sub(replacement, text)
    return text


def redact_value(value: Any) -> Any:
    """``redact`` through strings inside dicts, lists and tuples; anything else as it is."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {key: redact_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [redact_value(item) for item in value]
    if isinstance(value, tuple):
        return tuple(redact_value(item) for item in value)
    if isinstance(value, BaseException):
        return redact(f"{type(value).__name__}: {value}")
    return value


def redact_event_dict(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> dict[str, Any]:
    """structlog processor: after exceptions are rendered to text, before the renderer."""
    return {key: redact_value(value) for key, value in event_dict.items()}


class RedactingFormatter(logging.Formatter):
    """The standard library's lines (aiohttp, aiogram, motor...) through the same step."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def secrets_in(text: str, secrets: Iterable[str]) -> list[str]:
    """Which of ``secrets`` occur in ``text`` (for tests and ``bridge doctor``-style checks)."""
    return [secret for secret in secrets if secret and secret in text]
