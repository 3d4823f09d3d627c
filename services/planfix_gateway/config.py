"""Planfix gateway settings: Planfix REST (to fetch comments), NATS, and the webhook listener."""

from __future__ import annotations

import re

from pydantic import Field, SecretStr, field_validator

from bridge_lib.settings import HealthSettings, NatsSettings, PlanfixSettings

MIN_SECRET_LENGTH = 16
# Characters that survive a URL path untouched (RFC 3986 "unreserved").
_URL_SAFE = re.compile(r"[A-Za-z0-9._~-]+")


class PlanfixGatewaySettings(NatsSettings, PlanfixSettings, HealthSettings):
    health_port: int = Field(default=9102, alias="PLANFIX_GATEWAY_HEALTH_PORT", ge=0, le=65535)
    # The URL path token the Planfix scenario calls (/planfix/webhook/<secret>): Planfix cannot
    # sign its requests, so this secret is the only thing keeping strangers out.
    planfix_webhook_secret: SecretStr = Field(alias="PLANFIX_WEBHOOK_SECRET")
    planfix_webhook_host: str = Field(default="0.0.0.0", alias="PLANFIX_WEBHOOK_HOST")
    planfix_webhook_port: int = Field(default=8081, alias="PLANFIX_WEBHOOK_PORT", ge=0, le=65535)
    # A scenario body holds two ids; anything near this size is not from our scenario.
    planfix_webhook_max_body: int = Field(default=64 * 1024, alias="PLANFIX_WEBHOOK_MAX_BODY", ge=256)
    # Hidden comments (isHidden) are internal to Planfix; relay them to the group only if asked.
    planfix_relay_hidden_comments: bool = Field(default=False, alias="PLANFIX_RELAY_HIDDEN_COMMENTS")

    @field_validator("planfix_webhook_secret")
    @classmethod
    def _secret_shape(cls, value: SecretStr) -> SecretStr:
        secret = value.get_secret_value()
        if len(secret) < MIN_SECRET_LENGTH:
            raise ValueError(f"must be at least {MIN_SECRET_LENGTH} characters long")
        if not _URL_SAFE.fullmatch(secret):
            raise ValueError("may only contain letters, digits and - _ . ~ (it is part of a URL path)")
        return value
