"""The binder's decisions as tables: given a request, the group's binding and what Planfix said,
then this outcome and this event. No NATS, no store, no fakes."""

from __future__ import annotations

from typing import Any

import pytest

from contracts.bindings import Binding
from contracts.events import (
    BindingRejectionReason,
    BindRejected,
    BindRequested,
    TaskBound,
    TaskUnbound,
    TelegramUser,
    UnbindGroup,
    UnbindRejected,
    UnbindRequested,
    derived_key,
    event_id_for,
)
from services.binder.decide import (
    BindOutcome,
    BindRules,
    CreateTask,
    LookUpTask,
    PlanfixAnswer,
    PlanfixRefused,
    TaskFound,
    TaskNotVisible,
    announcement,
    decide,
    planfix_question,
)
from tests.support import binding, envelope

CHAT = -1001
ADMIN = TelegramUser(id=7, full_name="Anna", username="anna")
RULES = BindRules(account_url="https://acme.planfix.com", max_task_title=20, language="en")


def bind(*, admin: bool | None = True, **named: Any) -> BindRequested:
    """Anna's /task in the group, ``admin`` or not: what it names (``task_number``, ``task_title``,
    ``task_link``, ``thread_id``) comes in ``named``."""
    return BindRequested(
        **envelope("bind"),
        chat_id=CHAT,
        message_id=5,
        requested_by=ADMIN,
        requester_is_admin=admin,
        chat_title="Printers",
        **named,
    )


def unbind(*, admin: bool | None = True, thread: int | None = None) -> UnbindRequested:
    return UnbindRequested(
        **envelope("unbind"),
        chat_id=CHAT,
        message_id=6,
        requested_by=ADMIN,
        requester_is_admin=admin,
        thread_id=thread,
    )


def operator_unbind(task: int) -> UnbindGroup:
    return UnbindGroup(
        **envelope("ops"), chat_id=CHAT, task_number=task, operator="bridge-cli:ops", reason="moved"
    )


def bound_to(task: int, thread: int | None = None) -> Binding:
    return binding(CHAT, task, thread_id=thread, bound_by_user_id=ADMIN.id)


def shape(outcome: BindOutcome) -> tuple[str | None, int | None, str | None]:
    return outcome.decided, outcome.task_number, outcome.reason


@pytest.mark.parametrize(
    ("request_", "question"),
    [
        pytest.param(bind(task_number=42), LookUpTask(42), id="a number is looked up"),
        pytest.param(
            bind(task_link="https://acme.planfix.com/task/42?comment=3"), LookUpTask(42), id="so is our link"
        ),
        pytest.param(
            bind(task_title="  Printer   on floor three is out of toner "),
            CreateTask(
                "Printer on floor th…",
                "Created from Telegram group «Printers» by Anna (@anna).",
            ),
            id="a title creates a task, shortened",
        ),
        pytest.param(bind(task_number=42, admin=False), None, id="a refusal asks nothing"),
        pytest.param(bind(task_link="https://other.planfix.com/task/42"), None, id="another account's link"),
        pytest.param(bind(), None, id="nothing to bind"),
        pytest.param(unbind(), None, id="an unbind"),
        pytest.param(operator_unbind(1), None, id="an operator's unbind"),
    ],
)
def test_what_planfix_is_asked_first(request_: Any, question: Any) -> None:
    assert planfix_question(request_, RULES) == question


BIND_TABLE = [
    pytest.param(
        bind(task_number=42), None, TaskFound(number=42, title="Printer"), ("bound", 42, None), id="bind"
    ),
    pytest.param(
        bind(task_title="Printer"),
        None,
        TaskFound(number=77, title="Printer", created=True),
        ("bound", 77, None),
        id="bind a new task",
    ),
    pytest.param(
        bind(task_number=42, admin=False), None, None, ("rejected", None, "not_allowed"), id="not an admin"
    ),
    pytest.param(
        bind(task_number=42, admin=None), None, None, ("rejected", None, "not_allowed"), id="admin unknown"
    ),
    pytest.param(
        bind(task_link="https://example.com/x"),
        None,
        None,
        ("rejected", None, "invalid_request"),
        id="not planfix",
    ),
    pytest.param(bind(), None, None, ("rejected", None, "invalid_request"), id="nothing to bind"),
    pytest.param(
        bind(task_number=42),
        None,
        TaskNotVisible(42),
        ("rejected", 42, "task_not_found"),
        id="missing or hidden",
    ),
    pytest.param(
        bind(task_number=42),
        None,
        PlanfixRefused(42, 13),
        ("rejected", 42, "planfix_refused"),
        id="planfix refused",
    ),
    pytest.param(unbind(), bound_to(3), None, ("unbound", 3, None), id="unbind"),
    pytest.param(unbind(), None, None, ("rejected", None, "not_bound"), id="unbind of nothing"),
    pytest.param(
        unbind(admin=False), bound_to(3), None, ("rejected", None, "not_allowed"), id="unbind, no admin"
    ),
    pytest.param(operator_unbind(3), bound_to(3), None, ("unbound", 3, None), id="operator unbind"),
    pytest.param(
        operator_unbind(3),
        bound_to(4),
        None,
        ("rejected", 3, "not_bound"),
        id="operator late: bound to another task",
    ),
    pytest.param(
        operator_unbind(3), None, None, ("rejected", 3, "not_bound"), id="operator: not bound at all"
    ),
]


@pytest.mark.parametrize(("request_", "binding", "task", "expected"), BIND_TABLE)
def test_the_outcome_of_a_request(
    request_: Any, binding: Binding | None, task: PlanfixAnswer | None, expected: tuple[Any, ...]
) -> None:
    assert shape(decide(request_, binding, task, RULES)) == expected


def test_everyone_may_bind_when_the_rules_say_so() -> None:
    rules = BindRules(account_url=RULES.account_url, everyone_may_bind=True, language="en")
    outcome = decide(bind(task_number=42, admin=False), None, TaskFound(number=42, title="P"), rules)
    assert outcome.decided == "bound"


def test_a_rebind_names_the_task_it_replaces_and_a_created_task_is_remembered() -> None:
    outcome = decide(bind(task_title="P"), bound_to(3), TaskFound(number=77, title="P", created=True), RULES)
    assert (outcome.previous_task_number, outcome.created_task_number) == (3, 77)
    same = decide(bind(task_number=3), bound_to(3), TaskFound(number=3, title="T3"), RULES)
    assert same.previous_task_number is None


@pytest.mark.parametrize(
    ("request_", "binding", "task", "detail"),
    [
        pytest.param(
            bind(task_number=42, admin=False),
            None,
            None,
            "only the group's admins can bind it, sorry",
            id="not admin",
        ),
        pytest.param(
            bind(task_number=42),
            None,
            TaskNotVisible(42),
            "task #42 was not found in Planfix, or the bridge's Planfix user cannot see it",
            id="hidden like missing",
        ),
        pytest.param(unbind(thread=9), None, None, "this topic is not bound to a task", id="a topic"),
        pytest.param(
            operator_unbind(3),
            bound_to(4),
            None,
            "the group is not bound to task #3 (it is bound to task #4)",
            id="operator late",
        ),
    ],
)
def test_a_refusal_says_why(request_: Any, binding: Binding | None, task: Any, detail: str) -> None:
    assert decide(request_, binding, task, RULES).detail == detail


def test_each_outcome_is_announced_by_its_event_with_an_id_from_the_request() -> None:
    request = bind(task_number=42)
    event, subject, msg_id = announcement(
        request, decide(request, bound_to(3), TaskFound(number=42, title="P"), RULES)
    )
    assert isinstance(event, TaskBound)
    assert (event.task_number, event.previous_task_number, event.created_task) == (42, 3, False)
    assert (subject, msg_id) == (f"binding.bound.{CHAT}", derived_key(request, "bound"))
    assert event.event_id == event_id_for(msg_id)
    assert event.causation_id == request.event_id

    refused, subject, _ = announcement(request, decide(request, None, TaskNotVisible(42), RULES))
    assert isinstance(refused, BindRejected)
    assert (refused.reason, subject) == (BindingRejectionReason.TASK_NOT_FOUND, f"binding.rejected.{CHAT}")


def test_an_operators_unbind_is_announced_as_the_operators() -> None:
    command = operator_unbind(3)
    event, subject, msg_id = announcement(command, decide(command, bound_to(3), None, RULES))
    assert isinstance(event, TaskUnbound)
    assert (event.unbound_by, event.reason, event.requested_by) == ("bridge-cli:ops", "moved", None)
    assert (subject, msg_id) == (f"binding.unbound.{CHAT}", derived_key(command, "unbound"))

    late, subject, _ = announcement(command, decide(command, bound_to(4), None, RULES))
    assert isinstance(late, UnbindRejected)
    assert (late.reason, subject) == (BindingRejectionReason.NOT_BOUND, f"binding.unbind_rejected.{CHAT}")


def test_a_groups_unbind_is_announced_as_the_persons() -> None:
    request = unbind()
    event, _, _ = announcement(request, decide(request, bound_to(3), None, RULES))
    assert isinstance(event, TaskUnbound)
    assert (event.unbound_by, event.reason, event.requested_by) == (
        "telegram:7",
        "/unbind in the group",
        ADMIN,
    )
