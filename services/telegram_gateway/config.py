"""Telegram gateway settings: the bot token and Bot API server, and NATS to store what it sees."""

from __future__ import annotations

from pydantic import Field

from bridge_lib.settings import HealthSettings, NatsSettings, TelegramSettings


class TelegramGatewaySettings(TelegramSettings, NatsSettings, HealthSettings):
    health_port: int = Field(default=9101, alias="TELEGRAM_GATEWAY_HEALTH_PORT", ge=0, le=65535)
