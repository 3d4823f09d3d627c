"""The binder's handlers: load what a decision needs, decide (``decide``/``group_life``), store, publish.

Each outcome is stored under its cause before its event is published, and the event's id is
derived from the cause: a redelivery publishes the same event again (JetStream drops the repeat)
and, for ``/task <title>``, reuses the task created the first time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol

import structlog

from bridge_lib.eventbus import Delivery, TransientFailure
from bridge_lib.planfix import (
    CODE_ACCESS_DENIED,
    PlanfixRejected,
    PlanfixTask,
    PlanfixUnavailable,
    TaskNotFound,
)
from contracts.bindings import Binding, Bindings, group_key
from contracts.events import (
    BindingEvent,
    BindingStoreRebuilt,
    Event,
    RebuildBindingStore,
    TelegramGroupEvent,
    envelope_after,
)
from services.binder import group_life
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
    request_key,
)
from services.binder.group_life import GroupChange
from services.binder.rebuild import differences

log = structlog.get_logger("binder")
_DECIDED_LOG = {"bound": "group_bound", "unbound": "group_unbound", "rejected": "bind_rejected"}


class Publisher(Protocol):
    async def publish(self, event: Event, *, subject: str, msg_id: str) -> bool: ...


class Store(Protocol):
    """What the handlers need of the binder's store (``store.BindingStore``)."""

    async def binding_for(self, key: str) -> Binding | None: ...
    async def bindings_of_chat(self, chat_id: int) -> list[Binding]: ...
    async def all_bindings(self) -> list[Binding]: ...
    async def apply(self, event: BindingEvent) -> None: ...
    async def bind(self, binding: Binding) -> None: ...
    async def unbind(self, key: str, *, task_number: int | None = None) -> bool: ...
    async def outcome_for(self, request_key: str) -> BindOutcome | None: ...
    async def save_outcome(self, outcome: BindOutcome) -> None: ...
    async def change_for(self, key: str) -> GroupChange | None: ...
    async def save_change(self, change: GroupChange) -> None: ...


class Tasks(Protocol):
    """What the binder asks Planfix (``bridge_lib.planfix.PlanfixClient``)."""

    async def get_task(self, number: int) -> PlanfixTask: ...
    async def create_task(self, *, name: str, description: str = "") -> int: ...


class Binder:
    """``/task``, ``/unbind`` and an operator's ``UnbindGroup``."""

    def __init__(self, *, store: Store, planfix: Tasks, publisher: Publisher, rules: BindRules) -> None:
        self._store = store
        self._planfix = planfix
        self._publisher = publisher
        self._rules = rules

    async def handle(self, request: BinderRequest, delivery: Delivery) -> None:
        structlog.contextvars.bind_contextvars(chat_id=request.chat_id)
        key = request_key(request)
        outcome = await self._store.outcome_for(key)
        if outcome is None or outcome.decided is None:
            question = planfix_question(request, self._rules)
            answer = await self._ask(question, key, outcome) if question is not None else None
            binding = await self._store.binding_for(group_key(request.chat_id, request.thread_id))
            outcome = decide(request, binding, answer, self._rules)
            await self._store.save_outcome(outcome)
            log.info(
                _DECIDED_LOG[outcome.decided or ""], task_number=outcome.task_number, reason=outcome.reason
            )
        event, subject, msg_id = announcement(request, outcome)
        await self._store.apply(event)
        await self._publisher.publish(event, subject=subject, msg_id=msg_id)

    async def _ask(self, question: PlanfixQuestion, key: str, earlier: BindOutcome | None) -> PlanfixAnswer:
        number = question.number if isinstance(question, LookUpTask) else None
        try:
            match question:
                case LookUpTask(number=asked):
                    task = await self._planfix.get_task(asked)
                    return TaskFound(number=task.number, title=task.name or f"#{task.number}")
                case CreateTask(title=title, description=description):
                    created = earlier.created_task_number if earlier else None
                    if created is None:
                        created = await self._planfix.create_task(name=title, description=description)
                        # Remembered before anything else can fail, so a retry reuses the task.
                        await self._store.save_outcome(
                            BindOutcome(request_key=key, created_task_number=created)
                        )
                        log.info("task_created", task_number=created)
                    return TaskFound(number=created, title=title, created=True)
        except TaskNotFound:
            return TaskNotVisible(number)
        except PlanfixUnavailable as error:
            raise TransientFailure(str(error)) from error
        except PlanfixRejected as error:
            if error.code == CODE_ACCESS_DENIED:
                # Worded exactly like "not found": the group must not learn that the task exists.
                return TaskNotVisible(number)
            log.warning("planfix_refused_bind", error=str(error), code=error.code)
            return PlanfixRefused(number, error.code)


class GroupLife:
    """The bot's membership of a group and the group's migration to a supergroup."""

    def __init__(self, *, store: Store, publisher: Publisher) -> None:
        self._store = store
        self._publisher = publisher

    async def handle(self, event: TelegramGroupEvent, delivery: Delivery) -> None:
        chats = group_life.chats_to_read(event)
        if not chats:
            return  # commands and anonymous admins are the relay's business
        structlog.contextvars.bind_contextvars(chat_id=event.chat_id)
        change = await self._store.change_for(event.event_id)
        if change is None:
            bindings = {chat_id: await self._store.bindings_of_chat(chat_id) for chat_id in chats}
            change = GroupChange(key=event.event_id, steps=group_life.plan(event, bindings))
            await self._store.save_change(change)
        for step in change.steps:
            log.info(f"binding_{step.kind}", task_number=step.binding.task_number)
            if (announced := group_life.announcement(event, step)) is not None:
                published, subject, msg_id = announced
                await self._store.apply(published)
                await self._publisher.publish(published, subject=subject, msg_id=msg_id)


class StoreRebuilder:
    """``RebuildBindingStore``: the store made to say what the BINDING stream adds up to."""

    def __init__(self, *, store: Store, read_stream: Callable[[], Awaitable[tuple[Bindings, int]]]) -> None:
        self._store = store
        self._read_stream = read_stream
        # One rebuild at a time in this process (a second operator's waits).
        self._lock = asyncio.Lock()

    async def handle(self, command: RebuildBindingStore) -> BindingStoreRebuilt:
        async with self._lock:
            # The store first: a request handled meanwhile is then in the stream read after it, and
            # the repair only ever moves the store towards a newer fold.
            stored = await self._store.all_bindings()
            desired, events = await self._read_stream()
            found = differences(desired, stored)
            if not command.dry_run:
                have = {binding.key: binding for binding in stored}
                want = {binding.key: binding for binding in desired}
                for difference in found:
                    if difference.what == "removed":
                        await self._store.unbind(
                            difference.group_key, task_number=have[difference.group_key].task_number
                        )
                    else:
                        await self._store.bind(want[difference.group_key])
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
