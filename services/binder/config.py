"""Binder settings: NATS, MongoDB (its own collections) and Planfix (to create and check tasks)."""

from __future__ import annotations

from pydantic import Field

from bridge_lib.retention import RetentionSettings
from bridge_lib.settings import (
    CommaSeparatedInts,
    HealthSettings,
    MongoSettings,
    NatsSettings,
    PlanfixSettings,
)
from services.binder.bind_policy import BindPolicy


class BinderSettings(NatsSettings, MongoSettings, PlanfixSettings, HealthSettings, RetentionSettings):
    health_port: int = Field(default=9103, alias="BINDER_HEALTH_PORT", ge=0, le=65535)
    # Longest task title the binder sends to Planfix; longer titles are cut with an ellipsis.
    max_task_title: int = Field(default=250, alias="BINDER_MAX_TASK_TITLE")
    # Who may /task and /unbind: the group's admins only (false), or every member (true).
    everyone_may_bind: bool = Field(default=False, alias="BINDER_EVERYONE_MAY_BIND")
    # Who may bind a task (issue 15): linked employees the task names (participants), any linked
    # employee (employees), or any group admin (admins: the old behaviour, unsafe for a public bot).
    bind_policy: BindPolicy = Field(default=BindPolicy.PARTICIPANTS, alias="BINDER_BIND_POLICY")
    # Chat ids that may bind at all, comma-separated; empty: every chat.
    allowed_chats: CommaSeparatedInts = Field(default=frozenset(), alias="BINDER_ALLOWED_CHATS")
    # How many groups may be bound to one task at once.
    groups_per_task: int = Field(default=1, alias="BINDER_GROUPS_PER_TASK", ge=1)
    # How often links are checked against Planfix (fired employees, changed profiles); 0: never.
    people_refresh_h: float = Field(default=24.0, alias="BINDER_PEOPLE_REFRESH_H", ge=0)
    # A task completed or cancelled in Planfix (a final status) unbinds its groups (true), or
    # they stay bound and the task card says the task is closed (false, the default).
    unbind_closed_tasks: bool = Field(default=False, alias="BINDER_UNBIND_CLOSED_TASKS")
