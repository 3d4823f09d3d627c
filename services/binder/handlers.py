"""The binder's handlers: load what a decision needs, decide (``decide``/``group_life``), store, publish.

Each outcome is stored under its cause before its event is published, and the event's id is
derived from the cause: a redelivery publishes the same event again (JetStream drops the repeat)
and, for ``/task <title>``, reuses the task created the first time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from bridge_lib.eventbus import Delivery, Publisher, TransientFailure
from bridge_lib.i18n import translator
from bridge_lib.planfix import (
    CODE_ACCESS_DENIED,
    PlanfixRejected,
    PlanfixTask,
    PlanfixUnavailable,
    TaskNotFound,
    TaskPeople,
)
from contracts.bindings import Binding, Bindings, group_key
from contracts.events import (
    BindingEvent,
    BindingStoreRebuilt,
    BindRequested,
    RebuildBindingStore,
    TaskBound,
    TaskUnbound,
    TelegramGroupEvent,
    UnbindRequested,
    envelope_after,
)
from contracts.people import Person
from services.binder import group_life
from services.binder.bind_policy import BindAsk, BindPolicy, BindRefusal, bind_refusal
from services.binder.decide import (
    BinderRequest,
    BindOutcome,
    BindRules,
    CreateTask,
    LookUpTask,
    PlanfixAnswer,
    PlanfixQuestion,
    PlanfixRefused,
    TaskFound,
    TaskNotVisible,
    announcement,
    decide,
    planfix_question,
    refused,
    request_key,
)
from services.binder.group_life import GroupChange
from services.binder.people import Requesters
from services.binder.rebuild import differences
from services.binder.task_notices import TaskNotices, notice_comments, who_did

log = structlog.get_logger("binder")
_DECIDED_LOG = {
    "bound": "group_bound",
    "unbound": "group_unbound",
    "rejected": "bind_rejected",
    "chosen": "group_language_chosen",
}


class Store(Protocol):
    """What the handlers need of the binder's store (``store.BindingStore``)."""

    async def binding_for(self, key: str) -> Binding | None: ...
    async def bindings_of_chat(self, chat_id: int) -> list[Binding]: ...
    async def bindings_of_task(self, task_number: int) -> list[Binding]: ...
    async def remember_title(self, chat_id: int, title: str) -> None: ...
    async def title_of(self, chat_id: int) -> str | None: ...
    async def language_of(self, chat_id: int) -> str | None: ...
    async def all_bindings(self) -> list[Binding]: ...
    async def apply(self, event: BindingEvent) -> None: ...
    async def bind(self, binding: Binding) -> None: ...
    async def unbind(self, key: str, *, task_number: int | None = None) -> bool: ...
    async def outcome_for(self, request_key: str) -> BindOutcome | None: ...
    async def save_outcome(self, outcome: BindOutcome) -> None: ...
    async def change_for(self, key: str) -> GroupChange | None: ...
    async def save_change(self, change: GroupChange) -> None: ...


class Tasks(Protocol):
    """What the binder asks Planfix about tasks (``bridge_lib.planfix.PlanfixClient``)."""

    async def get_task(self, number: int) -> PlanfixTask: ...
    async def get_task_people(self, number: int) -> TaskPeople: ...
    async def create_task(self, *, name: str, description: str = "", assigner: str | None = None) -> int: ...


@dataclass(frozen=True, slots=True)
class BindAccess:
    """Who may bind (``BINDER_BIND_POLICY``, ``BINDER_ALLOWED_CHATS``, ``BINDER_GROUPS_PER_TASK``)."""

    policy: BindPolicy = BindPolicy.PARTICIPANTS
    # Empty: every chat.
    allowed_chats: frozenset[int] = frozenset()
    groups_per_task: int = 1

    def chat_allowed(self, chat_id: int) -> bool:
        return not self.allowed_chats or chat_id in self.allowed_chats


@dataclass(frozen=True, kw_only=True, eq=False)
class Binder:
    """``/task``, ``/unbind`` and an operator's ``UnbindGroup``."""

    store: Store
    planfix: Tasks
    publisher: Publisher
    rules: BindRules
    access: BindAccess = field(default_factory=BindAccess)
    # None: nobody is known (every bind under participants/employees is refused as not linked).
    requesters: Requesters | None = None
    notices: TaskNotices | None = None

    async def handle(self, request: BinderRequest, delivery: Delivery) -> None:
        structlog.contextvars.bind_contextvars(chat_id=request.chat_id)
        key = request_key(request)
        outcome = await self.store.outcome_for(key)
        if outcome is None or outcome.decided is None:
            outcome = await self._decide(request, key, outcome)
            await self.store.save_outcome(outcome)
            log.info(
                _DECIDED_LOG[outcome.decided or ""],
                task_number=outcome.task_number,
                reason=outcome.reason,
                refusal=outcome.refusal,
            )
        event, subject, msg_id = announcement(request, outcome)
        await self.store.apply(event)
        await self.publisher.publish(event, subject=subject, msg_id=msg_id)
        if self.notices is not None and isinstance(event, TaskBound | TaskUnbound):
            await self._announce_in_task(event, request)

    async def _decide(self, request: BinderRequest, key: str, earlier: BindOutcome | None) -> BindOutcome:
        # The group's language words the refusals and the new task's description.
        language = await self.store.language_of(request.chat_id)
        question = planfix_question(request, self.rules, language=language)
        if question is None:
            binding = await self.store.binding_for(group_key(request.chat_id, request.thread_id))
            return decide(request, binding, None, self.rules, language=language)
        assert isinstance(request, BindRequested)  # only a bind asks Planfix
        asked = question.number if isinstance(question, LookUpTask) else None
        # Who asks, before Planfix hears of the task: a stranger learns nothing about it.
        person = await self._requester(request)
        spoken = language or self.rules.language
        if (refusal := self._refusal(request, person, None)) is not None:
            return refused(request, refusal, task_number=asked, language=spoken)
        assigner = person.planfix_id if person is not None and person.is_employee else None
        answer, people = await self._ask(question, key, earlier, assigner=assigner)
        if isinstance(answer, TaskFound) and not answer.created:
            others = {binding.chat_id for binding in await self.store.bindings_of_task(answer.number)} - {
                request.chat_id
            }
            task_people = people or TaskPeople(number=answer.number)
            if (refusal := self._refusal(request, person, task_people, len(others))) is not None:
                return refused(request, refusal, task_number=answer.number, language=spoken)
        binding = await self.store.binding_for(group_key(request.chat_id, request.thread_id))
        return decide(request, binding, answer, self.rules, language=language)

    async def _requester(self, request: BindRequested) -> Person | None:
        if self.access.policy is BindPolicy.ADMINS or self.requesters is None:
            return None
        return await self.requesters.person_for(request.requested_by, cause=request)

    def _refusal(
        self, request: BindRequested, person: Person | None, task_people: TaskPeople | None, groups: int = 0
    ) -> BindRefusal | None:
        # Admin-ness was settled by ``decide``'s own rules (BINDER_EVERYONE_MAY_BIND, Telegram
        # unsure) before Planfix was asked; the policy adds who the person is.
        ask = BindAsk(
            requester_is_admin=True,
            person=person,
            task_people=task_people,
            chat_allowed=self.access.chat_allowed(request.chat_id),
            groups_on_task=groups,
        )
        return bind_refusal(self.access.policy, ask, groups_per_task=self.access.groups_per_task)

    async def _ask(
        self, question: PlanfixQuestion, key: str, earlier: BindOutcome | None, *, assigner: str | None
    ) -> tuple[PlanfixAnswer, TaskPeople | None]:
        number = question.number if isinstance(question, LookUpTask) else None
        try:
            match question:
                case LookUpTask(number=asked):
                    task = await self.planfix.get_task(asked)
                    people = None
                    if self.access.policy is BindPolicy.PARTICIPANTS:
                        people = await self.planfix.get_task_people(asked)
                    return TaskFound(number=task.number, title=task.name or f"#{task.number}"), people
                case CreateTask(title=title, description=description):
                    created = earlier.created_task_number if earlier else None
                    if created is None:
                        created = await self.planfix.create_task(
                            name=title, description=description, assigner=assigner
                        )
                        # Remembered before anything else can fail, so a retry reuses the task.
                        await self.store.save_outcome(
                            BindOutcome(request_key=key, created_task_number=created)
                        )
                        log.info("task_created", task_number=created)
                    return TaskFound(number=created, title=title, created=True), None
        except TaskNotFound:
            return TaskNotVisible(number), None
        except PlanfixUnavailable as error:
            raise TransientFailure(str(error)) from error
        except PlanfixRejected as error:
            if error.code == CODE_ACCESS_DENIED:
                # Worded exactly like "not found": the group must not learn that the task exists.
                return TaskNotVisible(number), None
            log.warning("planfix_refused_bind", error=str(error), code=error.code)
            return PlanfixRefused(number, error.code), None

    async def _announce_in_task(self, event: TaskBound | TaskUnbound, request: BinderRequest) -> None:
        assert self.notices is not None
        if isinstance(request, BindRequested) and request.chat_title:
            await self.store.remember_title(request.chat_id, request.chat_title)
            title: str | None = request.chat_title
        else:
            title = await self.store.title_of(request.chat_id)
        user = request.requested_by if isinstance(request, BindRequested | UnbindRequested) else None
        person = self.requesters.known_person(user.id) if self.requesters and user else None
        operator = event.unbound_by if isinstance(event, TaskUnbound) else ""
        # Applied before: a first bind has given the group its binder's language by now.
        texts = translator(await self.store.language_of(request.chat_id) or self.rules.language)
        by = who_did(user, planfix_name=person.name if person else None, operator=operator, texts=texts)
        await self.notices.post(
            notice_comments(event, group_title=title or str(request.chat_id), by=by, texts=texts)
        )


@dataclass(frozen=True, kw_only=True, eq=False)
class GroupLife:
    """The bot's membership of a group and the group's migration to a supergroup."""

    store: Store
    publisher: Publisher

    async def handle(self, event: TelegramGroupEvent, delivery: Delivery) -> None:
        chats = group_life.chats_to_read(event)
        if not chats:
            return  # commands and anonymous admins are the relay's business
        structlog.contextvars.bind_contextvars(chat_id=event.chat_id)
        change = await self.store.change_for(event.event_id)
        if change is None:
            bindings = {chat_id: await self.store.bindings_of_chat(chat_id) for chat_id in chats}
            change = GroupChange(key=event.event_id, steps=group_life.plan(event, bindings))
            await self.store.save_change(change)
        for step in change.steps:
            log.info(f"binding_{step.kind}", task_number=step.binding.task_number)
            if (announced := group_life.announcement(event, step)) is not None:
                published, subject, msg_id = announced
                await self.store.apply(published)
                await self.publisher.publish(published, subject=subject, msg_id=msg_id)


@dataclass(frozen=True, kw_only=True, eq=False)
class StoreRebuilder:
    """``RebuildBindingStore``: the store made to say what the BINDING stream adds up to."""

    store: Store
    read_stream: Callable[[], Awaitable[tuple[Bindings, int]]]
    # One rebuild at a time in this process (a second operator's waits).
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)

    async def handle(self, command: RebuildBindingStore) -> BindingStoreRebuilt:
        async with self._lock:
            # The store first: a request handled meanwhile is then in the stream read after it, and
            # the repair only ever moves the store towards a newer fold.
            stored = await self.store.all_bindings()
            desired, events = await self.read_stream()
            found = differences(desired, stored)
            if not command.dry_run:
                have = {binding.key: binding for binding in stored}
                want = {binding.key: binding for binding in desired}
                for difference in found:
                    if difference.what == "removed":
                        await self.store.unbind(
                            difference.group_key, task_number=have[difference.group_key].task_number
                        )
                    else:
                        await self.store.bind(want[difference.group_key])
        log.info(
            "binding_store_rebuilt",
            differences=len(found),
            dry_run=command.dry_run,
            operator=command.operator,
        )
        return BindingStoreRebuilt(
            **envelope_after(command, f"rebuilt:{command.event_id}"),
            differences=found,
            bindings=len(desired),
            events=events,
            dry_run=command.dry_run,
        )
