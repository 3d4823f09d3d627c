"""Binder settings: NATS, MongoDB (its own collections) and Planfix (to create and check tasks)."""

from __future__ import annotations

from pydantic import Field

from bridge_lib.settings import HealthSettings, MongoSettings, NatsSettings, PlanfixSettings


class BinderSettings(NatsSettings, MongoSettings, PlanfixSettings, HealthSettings):
    health_port: int = Field(default=9103, alias="BINDER_HEALTH_PORT", ge=0, le=65535)
    # Longest task title the binder sends to Planfix; longer titles are cut with an ellipsis.
    max_task_title: int = Field(default=250, alias="BINDER_MAX_TASK_TITLE")
    # Who may /task and /unbind: the group's admins only (false), or every member (true).
    everyone_may_bind: bool = Field(default=False, alias="BINDER_EVERYONE_MAY_BIND")
