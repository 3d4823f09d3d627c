"""Relay settings: NATS, MongoDB (effect records), Planfix and Telegram credentials."""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator

from bridge_lib.settings import HealthSettings, MongoSettings, NatsSettings, PlanfixSettings, TelegramSettings


class RelaySettings(NatsSettings, MongoSettings, PlanfixSettings, TelegramSettings, HealthSettings):
    health_port: int = Field(default=9104, alias="RELAY_HEALTH_PORT", ge=0, le=65535)
    # How long the parts of a Telegram album are awaited after the last one came, to post them
    # as one comment; a part arriving later still is added to that comment.
    relay_album_window_s: float = Field(default=1.5, alias="RELAY_ALBUM_WINDOW_S", ge=0)
    # At most this many waiting messages are combined into one Planfix comment.
    relay_combine_max_messages: int = Field(default=50, alias="RELAY_COMBINE_MAX_MESSAGES", ge=1)
    # Time zone of the times written on each message's author line in Planfix.
    relay_timezone: str = Field(default="UTC", alias="RELAY_TIMEZONE")

    @field_validator("relay_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ValueError("unknown time zone (use a name like Europe/Moscow or UTC)") from error
        return value

    @property
    def planfix_web_url(self) -> str:
        """``https://acc.planfix.com/`` from ``https://acc.planfix.com/rest/``: where people open tasks."""
        base = self.planfix_base_url
        return base[: -len("rest/")] if base.endswith("rest/") else base
