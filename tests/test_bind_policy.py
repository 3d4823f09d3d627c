"""Who may bind a group to a task, as a table: no NATS, no store, no Planfix."""

from __future__ import annotations

import pytest

from bridge_lib.planfix import TaskPeople
from contracts.events import PersonLinkMethod
from contracts.people import Person
from services.binder.bind_policy import BindAsk, BindPolicy, BindRefusal, bind_refusal

OLGA = Person(telegram_user_id=1, planfix_id="user:7", name="Olga", how=PersonLinkMethod.PLANFIX_PROFILE)
IVAN = Person(telegram_user_id=2, planfix_id="user:8", name="Ivan", how=PersonLinkMethod.LINK_CODE)
CLIENT = Person(
    telegram_user_id=3, planfix_id="contact:9", name="Client", how=PersonLinkMethod.CONTACT_CREATED
)
TASK = TaskPeople(number=4821, assigner="user:1", assignees=frozenset({"user:7"}))
NEW_TASK = None

P, E, A = BindPolicy.PARTICIPANTS, BindPolicy.EMPLOYEES, BindPolicy.ADMINS


def ask(person: Person | None, task: TaskPeople | None = TASK, *, admin: bool = True, allowed: bool = True,
        bound: int = 0) -> BindAsk:  # fmt: skip
    return BindAsk(
        requester_is_admin=admin, person=person, task_people=task, chat_allowed=allowed, groups_on_task=bound
    )


@pytest.mark.parametrize(
    ("policy", "asked", "refusal"),
    [
        pytest.param(P, ask(OLGA), None, id="an assignee binds her task"),
        pytest.param(P, ask(IVAN), BindRefusal.NOT_ON_THE_TASK, id="an employee not on the task"),
        pytest.param(P, ask(None), BindRefusal.NOT_LINKED, id="a stranger in a new group"),
        pytest.param(P, ask(CLIENT), BindRefusal.NOT_AN_EMPLOYEE, id="a contact"),
        pytest.param(P, ask(OLGA, admin=False), BindRefusal.NOT_ADMIN, id="not a group admin"),
        pytest.param(P, ask(OLGA, allowed=False), BindRefusal.CHAT_NOT_ALLOWED, id="chat not allowed"),
        pytest.param(P, ask(OLGA, bound=1), BindRefusal.TASK_ALREADY_BOUND, id="task taken"),
        pytest.param(P, ask(IVAN, NEW_TASK), None, id="a linked employee creates a task"),
        pytest.param(P, ask(None, NEW_TASK), BindRefusal.NOT_LINKED, id="a stranger cannot create tasks"),
        pytest.param(E, ask(IVAN), None, id="employees: any linked employee"),
        pytest.param(E, ask(None), BindRefusal.NOT_LINKED, id="employees: not a stranger"),
        pytest.param(A, ask(None), None, id="admins: the old, unsafe behaviour"),
        pytest.param(A, ask(None, bound=1), BindRefusal.TASK_ALREADY_BOUND, id="admins: one group"),
    ],
)
def test_who_may_bind(policy: BindPolicy, asked: BindAsk, refusal: BindRefusal | None) -> None:
    assert bind_refusal(policy, asked) == refusal


def test_more_groups_per_task_by_setting() -> None:
    assert bind_refusal(P, ask(OLGA, bound=1), groups_per_task=2) is None
    assert bind_refusal(P, ask(OLGA, bound=2), groups_per_task=2) is BindRefusal.TASK_ALREADY_BOUND
