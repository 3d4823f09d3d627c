"""Telegram gateway settings: the bot token and Bot API server, NATS, and the optional webhook."""

from __future__ import annotations

import hashlib
import re
from typing import Annotated

from pydantic import Field, SecretStr, field_validator

from bridge_lib.redaction import register_secret
from bridge_lib.settings import HealthSettings, NatsSettings, TelegramSettings, shaped_secret

# What Telegram accepts as a webhook secret_token.
_SECRET_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}")
_WEBHOOK_SECRET = shaped_secret(_SECRET_TOKEN, "Telegram accepts 1-256 characters from A-Z a-z 0-9 _ -")


class TelegramGatewaySettings(TelegramSettings, NatsSettings, HealthSettings):
    health_port: int = Field(default=9101, alias="TELEGRAM_GATEWAY_HEALTH_PORT", ge=0, le=65535)
    # Set: Telegram POSTs updates to this public HTTPS URL (webhook mode); unset: long polling.
    telegram_webhook_url: str | None = Field(default=None, alias="TELEGRAM_WEBHOOK_URL")
    # The X-Telegram-Bot-Api-Secret-Token Telegram sends with each update. Unset: derived from
    # the bot token, so every gateway replica agrees without another secret to manage.
    telegram_webhook_secret: Annotated[SecretStr, _WEBHOOK_SECRET] | None = Field(
        default=None, alias="TELEGRAM_WEBHOOK_SECRET"
    )
    telegram_webhook_host: str = Field(default="0.0.0.0", alias="TELEGRAM_WEBHOOK_HOST")
    telegram_webhook_port: int = Field(default=8082, alias="TELEGRAM_WEBHOOK_PORT", ge=0, le=65535)
    # An update is a few kB; a body this large is not from Telegram.
    telegram_webhook_max_body: int = Field(default=1024 * 1024, alias="TELEGRAM_WEBHOOK_MAX_BODY", ge=1024)
    # How many updates Telegram may send at once; 1 keeps each group's updates in order.
    telegram_webhook_max_connections: int = Field(
        default=1, alias="TELEGRAM_WEBHOOK_MAX_CONNECTIONS", ge=1, le=100
    )

    # A webhook set to another address belongs to another program (Planfix's own integration,
    # another bridge): the gateway stops rather than take it over, unless this is true.
    telegram_take_over_webhook: bool = Field(default=False, alias="TELEGRAM_TAKE_OVER_WEBHOOK")
    # The bot leaves a group it is added to unless the binder admits it (a bound group, one on
    # BINDER_ALLOWED_CHATS, or added by someone who may bind under BINDER_BIND_POLICY).
    telegram_leave_unknown_groups: bool = Field(default=False, alias="TELEGRAM_LEAVE_UNKNOWN_GROUPS")

    @field_validator("telegram_webhook_url")
    @classmethod
    def _https(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not value.startswith(("https://", "http://")):
            raise ValueError("must be the public https:// address Telegram posts updates to")
        return value

    def webhook_secret(self) -> str:
        if self.telegram_webhook_secret is not None:
            return self.telegram_webhook_secret.get_secret_value()
        token = self.telegram_bot_token.get_secret_value()
        derived = hashlib.sha256(f"telegram-webhook:{token}".encode()).hexdigest()
        register_secret(derived)  # a secret like any other: never in a log line
        return derived
