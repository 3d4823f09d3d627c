"""``/done``, ``/deadline <date>`` and ``/assign @user`` in a bound group (issue 18): decided
under the binding policy, made in Planfix, answered in the group (``TaskCommandAnswered``).

Who may: the same rule as binding (``bind_policy``): with ``participants`` (the default) a
linked employee whom the task names, with ``employees`` any linked employee, with ``admins``
the group's admins. What it costs in Planfix, within the shared pacing: ``/done`` one read of
the task, one of its process's statuses and one change; ``/deadline`` and ``/assign`` one read
and one change; a command refused before Planfix is asked (not bound, not linked, a date that
does not read) costs nothing.

The completed status: the document says nothing about which status "completes" a task. It is
taken to be the process's status whose name (in any language Planfix keeps) is Planfix's
"Completed"/"Завершенная" (or "Done"/"Выполненная"), preferring one marked ``isActive: false``;
a process without such a status refuses /done rather than guess.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta

import structlog

from bridge_lib.eventbus import Delivery, Publisher, TransientFailure
from bridge_lib.planfix import PlanfixClient, PlanfixRejected, PlanfixUnavailable, TaskNotFound, TaskPeople
from bridge_lib.planfix_tasks import TaskStatusInfo
from contracts import subjects
from contracts.bindings import group_key
from contracts.events import (
    PlanfixTaskState,
    PlanfixTaskStateChanged,
    TaskCommand,
    TaskCommandAnswered,
    TaskCommandRequested,
    TaskUnbound,
    derived_key,
    envelope_after,
)
from contracts.people import Person
from services.binder.bind_policy import BindAsk, BindPolicy, bind_refusal
from services.binder.people import Known, Requesters
from services.binder.store import BindingStore

log = structlog.get_logger("binder.task_commands")

# --- dates ------------------------------------------------------------------------------------

_MONTHS = {
    # Russian, in the genitive ("15 декабря") and the nominative, and their short forms.
    **dict.fromkeys(("января", "январь", "янв"), 1),
    **dict.fromkeys(("февраля", "февраль", "фев"), 2),
    **dict.fromkeys(("марта", "март", "мар"), 3),
    **dict.fromkeys(("апреля", "апрель", "апр"), 4),
    **dict.fromkeys(("мая", "май"), 5),
    **dict.fromkeys(("июня", "июнь", "июн"), 6),
    **dict.fromkeys(("июля", "июль", "июл"), 7),
    **dict.fromkeys(("августа", "август", "авг"), 8),
    **dict.fromkeys(("сентября", "сентябрь", "сен", "сент"), 9),
    **dict.fromkeys(("октября", "октябрь", "окт"), 10),
    **dict.fromkeys(("ноября", "ноябрь", "ноя"), 11),
    **dict.fromkeys(("декабря", "декабрь", "дек"), 12),
    # English, long and short.
    **dict.fromkeys(("january", "jan"), 1),
    **dict.fromkeys(("february", "feb"), 2),
    **dict.fromkeys(("march", "mar"), 3),
    **dict.fromkeys(("april", "apr"), 4),
    **dict.fromkeys(("may",), 5),
    **dict.fromkeys(("june", "jun"), 6),
    **dict.fromkeys(("july", "jul"), 7),
    **dict.fromkeys(("august", "aug"), 8),
    **dict.fromkeys(("september", "sep", "sept"), 9),
    **dict.fromkeys(("october", "oct"), 10),
    **dict.fromkeys(("november", "nov"), 11),
    **dict.fromkeys(("december", "dec"), 12),
}
_NUMERIC = re.compile(r"(\d{1,2})[./-](\d{1,2})(?:[./-](\d{2}|\d{4}))?")
_ISO = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})")
_DAY_MONTH = re.compile(r"(\d{1,2})\s+([^\W\d_]+)\.?(?:\s+(\d{4}))?(?:\s*г\.?)?")
_MONTH_DAY = re.compile(r"([^\W\d_]+)\.?\s+(\d{1,2})(?:st|nd|rd|th)?(?:,?\s+(\d{4}))?")
_RELATIVE = {"today": 0, "сегодня": 0, "tomorrow": 1, "завтра": 1}


def parse_deadline(text: str, *, today: date) -> date | None:
    """A date as people write it: ``15.12``, ``15.12.2026``, ``2026-12-15``, ``15 декабря``,
    ``Dec 15``, ``December 15, 2026``, ``15 Dec``, ``завтра``/``tomorrow``. Without a year: the
    next such day from ``today`` on (``15.12`` written on 20 December is next year's)."""
    written = " ".join(text.strip().lower().split())
    if written in _RELATIVE:
        return today + timedelta(days=_RELATIVE[written])
    day: int | None = None
    month: int | None = None
    year: int | None = None
    if found := _ISO.fullmatch(written):
        year, month, day = int(found[1]), int(found[2]), int(found[3])
    elif found := _NUMERIC.fullmatch(written):
        day, month = int(found[1]), int(found[2])
        year = _year(found[3])
    elif (found := _DAY_MONTH.fullmatch(written)) and found[2] in _MONTHS:
        day, month, year = int(found[1]), _MONTHS[found[2]], _year(found[3])
    elif (found := _MONTH_DAY.fullmatch(written)) and found[1] in _MONTHS:
        month, day, year = _MONTHS[found[1]], int(found[2]), _year(found[3])
    if day is None or month is None:
        return None
    try:
        if year is not None:
            return date(year, month, day)
        this_year = date(today.year, month, day)
    except ValueError:
        return None
    if this_year >= today:
        return this_year
    try:
        return date(today.year + 1, month, day)
    except ValueError:  # 29 February
        return None


def _year(text: str | None) -> int | None:
    if not text:
        return None
    return int(text) + 2000 if len(text) == 2 else int(text)


# --- statuses ----------------------------------------------------------------------------------

_COMPLETED_NAMES = (
    "completed",
    "завершенная",
    "завершённая",
    "завершена",
    "done",
    "выполненная",
    "выполнена",
)


def completed_status(statuses: list[TaskStatusInfo]) -> TaskStatusInfo | None:
    """The status that completes a task in its process (see the module's note), or None."""

    def named_completed(status: TaskStatusInfo) -> bool:
        return any(name.strip().lower() in _COMPLETED_NAMES for name in (status.name, *status.names))

    candidates = [status for status in statuses if named_completed(status)]
    candidates.sort(key=lambda status: status.is_active is not False)
    return candidates[0] if candidates else None


# --- the decision ------------------------------------------------------------------------------


def refusal(
    policy: BindPolicy,
    *,
    requester_is_admin: bool | None,
    person: Person | None,
    task_people: TaskPeople | None,
) -> str | None:
    """Why the person may not change the task (the bind policy's words), or None.
    ``task_people`` None: the task is not read yet (the checks that need it wait)."""
    if policy is BindPolicy.ADMINS and requester_is_admin is not True:
        return "not_admin"
    ask = BindAsk(
        requester_is_admin=True,
        person=person,
        # An empty task names nobody: for the checks before the task is read, only the person counts.
        task_people=task_people,
        chat_allowed=True,
    )
    found = bind_refusal(policy, ask, groups_per_task=1_000_000)
    return str(found) if found is not None else None


class _Refused(Exception):
    def __init__(self, outcome: str, detail: str = "") -> None:
        super().__init__(outcome)
        self.outcome = outcome
        self.detail = detail


@dataclass(frozen=True, kw_only=True, eq=False)
class TaskCommands:
    store: BindingStore
    planfix: PlanfixClient
    publisher: Publisher
    requesters: Requesters
    known: Known
    policy: BindPolicy
    today: Callable[[], date] = date.today

    async def handle(self, event: TaskCommandRequested, delivery: Delivery) -> None:
        structlog.contextvars.bind_contextvars(chat_id=event.chat_id, command=str(event.command))
        task_number: int | None = None
        who = event.requested_by.display
        try:
            binding = await self.store.binding_for(group_key(event.chat_id, event.thread_id))
            if binding is None:
                raise _Refused("not_bound")
            task_number = binding.task_number
            person = None
            if self.policy is not BindPolicy.ADMINS:
                person = await self.requesters.person_for(event.requested_by, cause=event)
            if person is not None:
                who = person.name or who
            why = refusal(
                self.policy, requester_is_admin=event.requester_is_admin, person=person, task_people=None
            )
            if why is not None:
                raise _Refused(why)
            done, detail = await self._carry_out(event, task_number, person)
        except _Refused as refused:
            await self._answer(
                event, task_number, who, done=False, outcome=refused.outcome, detail=refused.detail
            )
            return
        await self._answer(event, task_number, who, done=True, outcome=done, detail=detail)

    async def _carry_out(
        self, event: TaskCommandRequested, task: int, person: Person | None
    ) -> tuple[str, str]:
        # What the command asks for, read before Planfix is asked: a bad date costs nothing.
        deadline = None
        assignee = None
        if event.command is TaskCommand.DEADLINE:
            deadline = parse_deadline(event.argument, today=self.today())
            if deadline is None:
                raise _Refused("bad_date", event.argument)
        if event.command is TaskCommand.ASSIGN:
            assignee = self._assignee(event.argument)
        try:
            state, people = await self.planfix.get_task_state(task)
            why = refusal(
                self.policy, requester_is_admin=event.requester_is_admin, person=person, task_people=people
            )
            if why is not None:
                raise _Refused(why)
            if event.command is TaskCommand.DONE:
                return await self._done(task, state)
            if deadline is not None:
                await self.planfix.update_task(task, deadline=deadline)
                return "deadline_set", deadline.strftime("%d.%m.%Y")
            assert assignee is not None
            wanted = TaskPeople(
                number=task,
                assignees=people.assignees | {assignee.planfix_id},
                assignee_groups=people.assignee_groups,
            )
            await self.planfix.update_task(task, assignees=wanted)
            return "assigned", assignee.name
        except PlanfixUnavailable as error:
            raise TransientFailure(f"Planfix unavailable for a task command: {error}") from error
        except TaskNotFound as error:
            raise _Refused("task_not_found") from error
        except PlanfixRejected as error:
            log.warning("task_command_refused_by_planfix", code=error.code, error=str(error))
            raise _Refused(
                "planfix_refused", f"code {error.code}" if error.code is not None else ""
            ) from error

    async def _done(self, task: int, state: PlanfixTaskState) -> tuple[str, str]:
        if state.process_id is None:
            raise _Refused("no_completed_status")
        completed = completed_status(await self.planfix.get_task_statuses(state.process_id))
        if completed is None:
            raise _Refused("no_completed_status")
        if state.status_id == completed.id:
            raise _Refused("already_done", completed.name)
        await self.planfix.update_task(task, status_id=completed.id)
        return "completed", completed.name

    def _assignee(self, argument: str) -> Person:
        username = argument.strip().split()[0] if argument.strip() else ""
        if not username.startswith("@") or len(username) < 2:
            raise _Refused("no_person")
        found = self.known.people.by_username(username)
        if found is None or not found.is_employee:
            raise _Refused("unknown_person", username)
        return found

    async def _answer(
        self,
        event: TaskCommandRequested,
        task: int | None,
        who: str,
        *,
        done: bool,
        outcome: str,
        detail: str,
    ) -> None:
        key = derived_key(event, "task-command-answered")
        answer = TaskCommandAnswered(
            **envelope_after(event, key),
            chat_id=event.chat_id,
            message_id=event.message_id,
            command=event.command,
            done=done,
            outcome=outcome,
            detail=detail,
            task_number=task,
            thread_id=event.thread_id,
            requested_by=who,
        )
        stored = await self.publisher.publish(
            answer, subject=subjects.binding_task_command_answered(event.chat_id), msg_id=key
        )
        log.info("task_command_answered", done=done, outcome=outcome, task_number=task, duplicate=not stored)


# --- a task closed in Planfix ---------------------------------------------------------------------


def closed_now(event: PlanfixTaskStateChanged) -> bool:
    """The change put the task in a final status (completed, cancelled...), or deleted it."""
    before = event.previous
    was_open = before is None or (before.status_active is not False and not before.is_deleted)
    return was_open and (event.state.status_active is False or event.state.is_deleted)


@dataclass(frozen=True, kw_only=True, eq=False)
class ClosedTasks:
    """With ``BINDER_UNBIND_CLOSED_TASKS=true``: the groups of a task closed in Planfix are
    unbound (``TaskUnbound``, by ``planfix:task_closed``); the relay tells each group."""

    store: BindingStore
    publisher: Publisher
    # Off (the default): the consumer still exists (``bridge doctor`` expects every declared
    # one) and acknowledges each change at once.
    enabled: bool

    async def handle(self, event: PlanfixTaskStateChanged, delivery: Delivery) -> None:
        if not self.enabled or not closed_now(event):
            return
        for binding in await self.store.bindings_of_task(event.task_number):
            key = derived_key(event, f"closed-unbind:{group_key(binding.chat_id, binding.thread_id)}")
            unbound = TaskUnbound(
                **envelope_after(event, key),
                chat_id=binding.chat_id,
                task_number=event.task_number,
                unbound_by="planfix:task_closed",
                reason=f"the task is {event.state.status_name or 'closed'} in Planfix",
                thread_id=binding.thread_id,
            )
            await self.store.apply(unbound)
            await self.publisher.publish(
                unbound, subject=subjects.binding_unbound(binding.chat_id), msg_id=key
            )
            log.info("closed_task_unbound", task_number=event.task_number, chat_id=binding.chat_id)
