"""Relay settings: NATS, MongoDB (effect records, outbox), Planfix and Telegram, Telegram's pace."""

from __future__ import annotations

from pydantic import Field

from bridge_lib.settings import MongoSettings, NatsSettings, PlanfixSettings, TelegramSettings


class RelaySettings(NatsSettings, MongoSettings, PlanfixSettings, TelegramSettings):
    # Telegram takes about 20 messages a minute in one group: at most this many per window.
    group_pace_messages: int = Field(default=20, alias="RELAY_GROUP_PACE_MESSAGES", ge=1)
    group_pace_window_s: float = Field(default=60.0, alias="RELAY_GROUP_PACE_WINDOW_S", gt=0)
    # And about 30 messages a second from one bot, across all groups and relay replicas.
    bot_pace_per_s: float = Field(default=30.0, alias="RELAY_BOT_PACE_PER_S", gt=0)
    # A message Telegram refuses (400/403) is tried this many times before it is set aside.
    send_max_attempts: int = Field(default=8, alias="RELAY_SEND_MAX_ATTEMPTS", ge=1)

    @property
    def planfix_web_url(self) -> str:
        """``https://acc.planfix.com/`` from ``https://acc.planfix.com/rest/``: where people open tasks."""
        base = self.planfix_base_url
        return base[: -len("rest/")] if base.endswith("rest/") else base
