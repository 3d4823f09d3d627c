"""Planfix gateway settings: Planfix REST (to fetch comments), NATS, and the webhook listener."""

from __future__ import annotations

import re
from typing import Annotated, Self

from pydantic import Field, SecretStr, field_validator, model_validator

from bridge_lib.settings import HealthSettings, NatsSettings, PlanfixSettings, shaped_secret

# Characters that survive a URL path untouched (RFC 3986 "unreserved").
_URL_SAFE = re.compile(r"[A-Za-z0-9._~-]+")
# An HTTP field name (RFC 9110 "token"), and a value of visible ASCII with inner spaces only.
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_HEADER_VALUE = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")
# Headers that HTTP itself or a proxy sets or rewrites: a scenario's value there would not last.
_RESERVED_HEADERS = frozenset(
    {
        "host",
        "content-type",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "upgrade",
        "te",
        "trailer",
        "expect",
        "forwarded",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-real-ip",
    }
)
_URL_SAFE_SECRET = shaped_secret(
    _URL_SAFE, "may only contain letters, digits and - _ . ~ (it is part of a URL path)"
)
_HEADER_VALUE_SECRET = shaped_secret(
    _HEADER_VALUE, "may only contain printable ASCII, without spaces at either end"
)


class PlanfixGatewaySettings(NatsSettings, PlanfixSettings, HealthSettings):
    health_port: int = Field(default=9102, alias="PLANFIX_GATEWAY_HEALTH_PORT", ge=0, le=65535)
    # The URL path token the Planfix scenario calls (/planfix/webhook/<secret>): Planfix cannot
    # sign its requests, so this secret is the only thing keeping strangers out.
    planfix_webhook_secret: Annotated[SecretStr, _URL_SAFE_SECRET] = Field(alias="PLANFIX_WEBHOOK_SECRET")
    planfix_webhook_host: str = Field(default="0.0.0.0", alias="PLANFIX_WEBHOOK_HOST")
    planfix_webhook_port: int = Field(default=8081, alias="PLANFIX_WEBHOOK_PORT", ge=0, le=65535)
    # A scenario body holds two ids; anything near this size is not from our scenario.
    planfix_webhook_max_body: int = Field(default=64 * 1024, alias="PLANFIX_WEBHOOK_MAX_BODY", ge=256)
    # Requests with the right secret answered per second (a token bucket per replica; 429 and
    # Retry-After beyond it): each costs a Planfix request, and a leaked secret must not turn
    # into a flood against the account's budget. Planfix sends one at a time and waits for each
    # answer, far below it (a 429 would stall its queue for minutes). 0: no limit (benchmarks).
    planfix_webhook_rate_per_s: float = Field(default=50.0, alias="PLANFIX_WEBHOOK_RATE_PER_S", ge=0)
    planfix_webhook_burst: int = Field(default=100, alias="PLANFIX_WEBHOOK_BURST", ge=1)
    # Hidden comments (isHidden) are internal to Planfix; relay them to the group only if asked.
    planfix_relay_hidden_comments: bool = Field(default=False, alias="PLANFIX_RELAY_HIDDEN_COMMENTS")
    # Optional second factor: a header the scenario's HTTP request sets (Planfix lets a scenario
    # add headers), checked after the path; both set or neither.
    planfix_webhook_header_name: str | None = Field(default=None, alias="PLANFIX_WEBHOOK_HEADER_NAME")
    planfix_webhook_header_value: Annotated[SecretStr, _HEADER_VALUE_SECRET] | None = Field(
        default=None, alias="PLANFIX_WEBHOOK_HEADER_VALUE"
    )
    # Edits and deletions noticed by re-reading: every this many minutes, the newest page of
    # comments of each bound task with recent comments (one request per task per period; 0: off).
    planfix_reread_interval_min: float = Field(default=10.0, alias="PLANFIX_REREAD_INTERVAL_MIN", ge=0)
    # A comment is watched for edits for this long after it was relayed; a task with no comment
    # that recent is not re-read at all.
    planfix_reread_active_h: float = Field(default=24.0, alias="PLANFIX_REREAD_ACTIVE_H", gt=0)
    # Comments watched at most (about 0.5 kB each), the oldest let go first; a task's newest 100
    # at most (what a pass reads of it).
    planfix_reread_watch_max: int = Field(default=20_000, alias="PLANFIX_REREAD_WATCH_MAX", ge=100)
    # Requests a day the re-read may spend at most (of the account's 20,000-100,000): with more
    # active tasks than a period's share, each is read in turn, less often.
    planfix_reread_max_per_day: int = Field(default=5000, alias="PLANFIX_REREAD_MAX_PER_DAY", ge=1)
    # Reconciliation (comments no webhook announced), in the same passes and budget: bound tasks
    # without recent comments are read this often (active ones every PLANFIX_REREAD_INTERVAL_MIN),
    # and every bound task's state (task changes no notice announced).
    planfix_reconcile_quiet_interval_min: float = Field(
        default=60.0, alias="PLANFIX_RECONCILE_QUIET_INTERVAL_MIN", gt=0
    )
    # A comment seen missing is carried once it has been missing this long (its webhook may
    # still be on its way) and no webhook notice waits for the fetcher.
    planfix_reconcile_grace_s: float = Field(default=60.0, alias="PLANFIX_RECONCILE_GRACE_S", ge=0)
    # false: the re-read only watches edits and deletions, nothing missed is carried.
    planfix_reconcile: bool = Field(default=True, alias="PLANFIX_RECONCILE")

    @field_validator("planfix_webhook_header_name")
    @classmethod
    def _header_name_shape(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not _HEADER_NAME.fullmatch(value):
            raise ValueError("must be an HTTP header name: letters, digits and - (e.g. X-Bridge-Key)")
        if value.lower() in _RESERVED_HEADERS:
            raise ValueError(f"{value} is set by HTTP or a proxy; choose your own, e.g. X-Bridge-Key")
        return value

    @model_validator(mode="after")
    def _header_both_or_neither(self) -> Self:
        if (self.planfix_webhook_header_name is None) != (self.planfix_webhook_header_value is None):
            raise ValueError(
                "PLANFIX_WEBHOOK_HEADER_NAME and PLANFIX_WEBHOOK_HEADER_VALUE go together: "
                "set both or neither"
            )
        return self

    @property
    def planfix_webhook_header(self) -> tuple[str, str] | None:
        """(name, value) every webhook request must carry, or None when not asked for."""
        if self.planfix_webhook_header_name is None or self.planfix_webhook_header_value is None:
            return None
        return self.planfix_webhook_header_name, self.planfix_webhook_header_value.get_secret_value()
