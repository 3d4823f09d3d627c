"""Relay settings: NATS, MongoDB (effect records), Planfix and Telegram credentials."""

from __future__ import annotations

from pydantic import Field

from bridge_lib.settings import HealthSettings, MongoSettings, NatsSettings, PlanfixSettings, TelegramSettings


class RelaySettings(NatsSettings, MongoSettings, PlanfixSettings, TelegramSettings, HealthSettings):
    health_port: int = Field(default=9104, alias="RELAY_HEALTH_PORT", ge=0, le=65535)

    @property
    def planfix_web_url(self) -> str:
        """``https://acc.planfix.com/`` from ``https://acc.planfix.com/rest/``: where people open tasks."""
        base = self.planfix_base_url
        return base[: -len("rest/")] if base.endswith("rest/") else base
