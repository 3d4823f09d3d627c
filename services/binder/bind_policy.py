"""Who may bind a group to a task: a pure decision over what the binder knows.

A group admin alone is not enough: anyone can make a group of their own and be its admin. By
default (``participants``) the person must also be linked to a Planfix employee whom the task
names (assigner, assignee, participant or auditor), as Planfix's own integration lets people act
in Telegram with their own rights; a new task needs a linked employee (it is created with them
as assigner). ``employees`` lets any linked employee bind; ``admins`` is the old behaviour, unsafe
for a bot anyone can add to a group.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from bridge_lib.planfix import TaskPeople
from contracts.people import Person


class BindPolicy(enum.StrEnum):
    PARTICIPANTS = "participants"
    EMPLOYEES = "employees"
    ADMINS = "admins"


class BindRefusal(enum.StrEnum):
    NOT_ADMIN = "not_admin"
    CHAT_NOT_ALLOWED = "chat_not_allowed"
    NOT_LINKED = "not_linked"
    NOT_AN_EMPLOYEE = "not_an_employee"
    NOT_ON_THE_TASK = "not_on_the_task"
    TASK_ALREADY_BOUND = "task_already_bound"


@dataclass(frozen=True, slots=True)
class BindAsk:
    """What a ``/task`` asks, with what the binder learned around it."""

    requester_is_admin: bool
    # The requester as the PEOPLE fold knows them (None: not linked).
    person: Person | None
    # An existing task's people (``/task <number>``); None for a new task (``/task <title>``).
    task_people: TaskPeople | None
    chat_allowed: bool
    # Other groups already bound to that task.
    groups_on_task: int = 0


def bind_refusal(policy: BindPolicy, ask: BindAsk, *, groups_per_task: int = 1) -> BindRefusal | None:
    """Why the bind must be refused, or None when it may go ahead."""
    if not ask.chat_allowed:
        return BindRefusal.CHAT_NOT_ALLOWED
    if not ask.requester_is_admin:
        return BindRefusal.NOT_ADMIN
    if ask.task_people is not None and ask.groups_on_task >= groups_per_task:
        return BindRefusal.TASK_ALREADY_BOUND
    if policy is BindPolicy.ADMINS:
        return None
    if ask.person is None:
        return BindRefusal.NOT_LINKED
    if not ask.person.is_employee:
        return BindRefusal.NOT_AN_EMPLOYEE
    on_the_task = ask.task_people is None or ask.person.planfix_id in ask.task_people.everyone
    if policy is BindPolicy.PARTICIPANTS and not on_the_task:
        return BindRefusal.NOT_ON_THE_TASK
    return None
