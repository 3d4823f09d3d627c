"""Relay settings: NATS, MongoDB (effect records, outbox), Planfix and Telegram, Telegram's pace."""

from __future__ import annotations

import math
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator

from bridge_lib.retention import RetentionSettings
from bridge_lib.settings import HealthSettings, MongoSettings, NatsSettings, PlanfixSettings, TelegramSettings


class RelaySettings(
    NatsSettings, MongoSettings, PlanfixSettings, TelegramSettings, HealthSettings, RetentionSettings
):
    health_port: int = Field(default=9104, alias="RELAY_HEALTH_PORT", ge=0, le=65535)
    # How long the parts of a Telegram album are awaited after the last one came, to post them
    # as one comment; a part arriving later still is added to that comment.
    relay_album_window_s: float = Field(default=1.5, alias="RELAY_ALBUM_WINDOW_S", ge=0)
    # How long after a /task the group's next messages wait for the binder's decision rather than
    # being let go as from an unbound group.
    relay_bind_wait_s: float = Field(default=30.0, alias="RELAY_BIND_WAIT_S", ge=0, le=300)
    # At most this many waiting messages are combined into one Planfix comment.
    relay_combine_max_messages: int = Field(default=50, alias="RELAY_COMBINE_MAX_MESSAGES", ge=1)
    # Comments of this many different tasks posted to Planfix at once (each task's in order);
    # with Planfix's pacing on, fewer (``planfix_concurrency``).
    relay_planfix_concurrency: int = Field(default=16, alias="RELAY_PLANFIX_CONCURRENCY", ge=1, le=100)
    # Time zone of the times written on each message's author line in Planfix.
    relay_timezone: str = Field(default="UTC", alias="RELAY_TIMEZONE")
    # Telegram takes about 20 messages a minute in one group: at most this many per window.
    group_pace_messages: int = Field(default=20, alias="RELAY_GROUP_PACE_MESSAGES", ge=1)
    group_pace_window_s: float = Field(default=60.0, alias="RELAY_GROUP_PACE_WINDOW_S", gt=0)
    # And about 30 messages a second from one bot, across all groups and relay replicas.
    bot_pace_per_s: float = Field(default=30.0, alias="RELAY_BOT_PACE_PER_S", gt=0)
    # How long a relay replica keeps a group after its last call: after a crash, the group's
    # messages wait this long before another replica (or the restarted one) takes the group over.
    group_lease_ttl_s: float = Field(default=120.0, alias="RELAY_GROUP_LEASE_TTL_S", gt=0)
    # A message Telegram refuses (400/403) is tried this many times before it is set aside.
    send_max_attempts: int = Field(default=8, alias="RELAY_SEND_MAX_ATTEMPTS", ge=1)
    # Each bound group gets its task's card, pinned and kept current (issue 18); false: the
    # group gets the change lines only.
    task_cards: bool = Field(default=True, alias="RELAY_TASK_CARDS")

    @field_validator("relay_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ValueError("unknown time zone (use a name like Europe/Moscow or UTC)") from error
        return value

    @property
    def planfix_concurrency(self) -> int:
        """How many comments the relay posts at once. With pacing on, each one books a turn in
        the account's budget before it waits for it: no more than about a second's worth, so the
        binder and the planfix_gateway, which share the budget, never queue behind many of them."""
        if not self.planfix_pacing_enabled:
            return self.relay_planfix_concurrency
        second_of_budget = math.ceil(self.planfix_rate_per_s) + self.planfix_burst
        return max(1, min(self.relay_planfix_concurrency, second_of_budget))

    @property
    def planfix_web_url(self) -> str:
        """``https://acc.planfix.com/`` from ``https://acc.planfix.com/rest/``: where people open tasks."""
        base = self.planfix_base_url
        return base[: -len("rest/")] if base.endswith("rest/") else base
