"""Telegram gateway settings: the bot token and Bot API server, and NATS to store what it sees."""

from __future__ import annotations

from bridge_lib.settings import NatsSettings, TelegramSettings


class TelegramGatewaySettings(TelegramSettings, NatsSettings):
    pass
